package message

import (
	"fmt"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"unicode/utf8"
)

// Request is a send request, version 1 (DESIGN.md §3). Either the composed
// fields (to … references) or Raw describe the message; Account,
// IdempotencyKey and ThreadID apply to both. The json tags give the wire
// names; Decode, not encoding/json, is the strict reader.
type Request struct {
	Account string `json:"account"`
	// From is the address the message is sent as, with FromName as its
	// display name; empty means Account. It must be Account or one of the
	// account's registered send-as aliases: Gmail silently replaces any
	// other From with the account's address. The aliases live in the
	// registry, so Validate checks only its form and CheckSender the rest.
	From        string            `json:"from,omitempty"`
	FromName    string            `json:"from_name,omitempty"`
	To          []string          `json:"to,omitempty"`
	Cc          []string          `json:"cc,omitempty"`
	Bcc         []string          `json:"bcc,omitempty"`
	ReplyTo     []string          `json:"reply_to,omitempty"`
	Subject     string            `json:"subject,omitempty"`
	Text        string            `json:"text,omitempty"`
	HTML        string            `json:"html,omitempty"`
	Attachments []Attachment      `json:"attachments,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	InReplyTo   string            `json:"in_reply_to,omitempty"`
	References  []string          `json:"references,omitempty"`
	ThreadID    string            `json:"thread_id,omitempty"`
	// Raw is a complete RFC 5322 message. In JSON it is standard base64 with
	// padding (RFC 4648 §4), as encoding/json writes a []byte.
	Raw            []byte `json:"raw,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`

	// dropped counts, by wire name, the entries of a list (or headers) that
	// Decode read past the field's limit and did not keep: Validate refuses
	// on the count, so the entries are never kept or parsed.
	dropped map[string]int
}

// count is how many entries field had: those kept and those dropped.
func (r *Request) count(field string, kept int) int { return kept + r.dropped[field] }

// Attachment is a file sent with a composed message. With ContentID set it is
// an inline part, which the html body shows through a cid: URL.
//
// The file is either Data, carried in the request, or the Cloud Storage
// object GCSURI names, which the sender reads itself: a Pub/Sub message
// holds at most 10 MB, Gmail takes a message of 35 MB. A by-reference
// attachment may leave Filename and ContentType out; the sender fills them
// from the object (ObjectDefaults), and Size, before it composes, and
// ComposeOptions.Open streams its bytes.
type Attachment struct {
	Filename    string `json:"filename,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	// Data is the file. In JSON it is standard base64 with padding.
	Data []byte `json:"data,omitempty"`
	// GCSURI is gs://BUCKET/OBJECT, in place of Data.
	GCSURI string `json:"gcs_uri,omitempty"`
	// Generation, when not 0, is the object generation the publisher
	// uploaded: a different one (the object was replaced since) is refused
	// rather than sent.
	Generation int64  `json:"generation,omitempty"`
	ContentID  string `json:"content_id,omitempty"`
	// Size is a by-reference attachment's length in bytes, from the
	// object's metadata, for ComposedSize. JSON never carries it.
	Size int64 `json:"-"`
}

// ByReference reports whether the file is a Cloud Storage object.
func (a *Attachment) ByReference() bool { return a.GCSURI != "" }

// Recipients returns the bare addresses of every recipient, to then cc then
// bcc, read from the raw message's headers when Raw is set. Entries that do
// not parse are left out, so call it on a validated request.
func (r *Request) Recipients() []string {
	if len(r.Raw) > 0 {
		h, err := readRawHeader(r.Raw)
		if err != nil {
			return nil
		}
		var out []string
		for _, key := range recipientHeaders {
			list, _ := parseRawAddressList(h.Get(key))
			for _, a := range list {
				out = append(out, a.Address)
			}
		}
		return out
	}
	out := make([]string, 0, len(r.To)+len(r.Cc)+len(r.Bcc))
	for _, list := range [][]string{r.To, r.Cc, r.Bcc} {
		for _, s := range list {
			if a, err := mail.ParseAddress(s); err == nil {
				out = append(out, a.Address)
			}
		}
	}
	return out
}

// Validate checks every rule of DESIGN.md §3 and the limits above but one:
// who the message is sent as (from, or raw's From) needs the account's
// registered aliases, so CheckSender checks it, as Compose and CheckRaw do.
// It returns a *ValidationError listing all problems, or a *SizeError when
// Raw is over MaxMessageSize, in which case nothing else is examined.
func (r *Request) Validate() error {
	if len(r.Raw) > MaxMessageSize {
		return &SizeError{What: "raw message", Size: int64(len(r.Raw)), Limit: MaxMessageSize}
	}
	var p problems
	p.account(r.Account)
	p.idempotencyKey(r.IdempotencyKey)
	p.threadID(r.ThreadID)
	if len(r.Raw) > 0 {
		for _, field := range r.composedFields() {
			p.add(field, "cannot be combined with raw: raw is the complete message, so this belongs in its headers or body")
		}
		// Who the message is sent as needs the account's aliases, which
		// CheckSender (through Compose or CheckRaw) is given.
		checkRawInto(&p, r.Raw, nil)
		return p.err()
	}
	p.composed(r)
	return p.err()
}

// composedFields names the composed fields that are set, in wire order.
func (r *Request) composedFields() []string {
	var set []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"from", r.From != ""},
		{"from_name", r.FromName != ""},
		{"to", len(r.To) > 0},
		{"cc", len(r.Cc) > 0},
		{"bcc", len(r.Bcc) > 0},
		{"reply_to", len(r.ReplyTo) > 0},
		{"subject", r.Subject != ""},
		{"text", r.Text != ""},
		{"html", r.HTML != ""},
		{"attachments", len(r.Attachments) > 0},
		{"headers", len(r.Headers) > 0},
		{"in_reply_to", r.InReplyTo != ""},
		{"references", len(r.References) > 0},
	} {
		if f.set {
			set = append(set, f.name)
		}
	}
	return set
}

func (p *problems) composed(r *Request) {
	if r.From != "" {
		p.bareAddress("from", r.From)
	}
	p.headerText("from_name", r.FromName, MaxFromNameLen)

	// Lists over the limit are refused on their length alone, before any
	// entry is parsed: a large request can hold many thousands.
	switch total := r.count("to", len(r.To)) + r.count("cc", len(r.Cc)) + r.count("bcc", len(r.Bcc)); {
	case total == 0:
		p.add("to", "at least one recipient is required in to, cc or bcc")
	case total > MaxRecipients:
		p.add("to", "%d recipients across to, cc and bcc; Gmail allows at most %d per message", total, MaxRecipients)
	default:
		p.addresses("to", r.To)
		p.addresses("cc", r.Cc)
		p.addresses("bcc", r.Bcc)
	}
	if n := r.count("reply_to", len(r.ReplyTo)); n > MaxRecipients {
		p.add("reply_to", "%d addresses; the limit is %d", n, MaxRecipients)
	} else {
		p.addresses("reply_to", r.ReplyTo)
	}

	p.headerText("subject", r.Subject, MaxSubjectLen)

	if r.Text == "" && r.HTML == "" {
		p.add("text", "a body is required: set text, html or both (or send raw instead)")
	}
	if !utf8.ValidString(r.Text) {
		p.add("text", "is not valid UTF-8")
	}
	if !utf8.ValidString(r.HTML) {
		p.add("html", "is not valid UTF-8")
	}

	p.attachments(r.Attachments, r.count("attachments", len(r.Attachments)), r.HTML != "")
	p.headers(r.Headers, r.count("headers", len(r.Headers)))

	if r.InReplyTo != "" {
		p.messageID("in_reply_to", r.InReplyTo)
	}
	if n := r.count("references", len(r.References)); n > MaxReferences {
		p.add("references", "%d entries; the limit is %d", n, MaxReferences)
	}
	for i, ref := range r.References {
		p.messageID(fmt.Sprintf("references[%d]", i), ref)
	}
}

// headerText checks a value that ends up in a header: a line break would
// start a header of the sender's choosing, so it is refused, never stripped.
// It reports whether the value passed.
func (p *problems) headerText(field, v string, maxLen int) bool {
	if !utf8.ValidString(v) {
		p.add(field, "is not valid UTF-8")
		return false
	}
	if i := strings.IndexAny(v, "\r\n"); i >= 0 {
		p.add(field, "contains a line break (CR or LF) at byte %d; header values must be a single line", i)
		return false
	}
	if i := strings.IndexByte(v, 0); i >= 0 {
		p.add(field, "contains a NUL byte at byte %d", i)
		return false
	}
	if i := indexControl(v); i >= 0 {
		p.add(field, "contains the control character %U at byte %d", rune(v[i]), i)
		return false
	}
	if n := utf8.RuneCountInString(v); n > maxLen {
		p.add(field, "is %d characters long; the limit is %d", n, maxLen)
		return false
	}
	return true
}

// indexControl returns the index of the first ASCII control character other
// than horizontal tab, or -1.
func indexControl(v string) int {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return i
		}
	}
	return -1
}

func (p *problems) account(v string) bool {
	if v == "" {
		p.add("account", "is required: the address of a connected Gmail account")
		return false
	}
	return p.bareAddress("account", v)
}

// bareAddress checks an address that is sent as, account or from: one bare
// ASCII address, since Gmail addresses and send-as aliases are ASCII.
func (p *problems) bareAddress(field, v string) bool {
	if !p.headerText(field, v, MaxAccountLen) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			p.add(field, "must be ASCII, as Gmail addresses are")
			return false
		}
	}
	a, err := mail.ParseAddress(v)
	if err != nil {
		p.add(field, "%s is not a valid address (%v)", quote(v), err)
		return false
	}
	if a.Name != "" || a.Address != v {
		p.add(field, "must be a bare address such as alice@example.com, without a display name or angle brackets")
		return false
	}
	// The account's domain becomes the Message-ID's right-hand side, so it
	// must be a plain ASCII host name rather than a domain literal.
	if _, domain, _ := cutLastAt(v); !isASCIIDotAtom(domain) {
		p.add(field, "the domain %s must be an ASCII host name", quote(domain))
		return false
	}
	return true
}

func (p *problems) addresses(field string, list []string) {
	parsed := make([]*mail.Address, 0, len(list))
	defer func() {
		if len(parsed) == len(list) && len(list) > 0 {
			if n := len(formatAddressList(parsed)); n > MaxAddressHeaderLen {
				p.add(field, "the header would be %d bytes once encoded; the limit is %d", n, MaxAddressHeaderLen)
			}
		}
	}()
	for i, s := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		if s == "" {
			p.add(f, "is empty; expected an address such as bob@example.org or Bob <bob@example.org>")
			continue
		}
		if !p.headerText(f, s, MaxAddressLen) {
			continue
		}
		a, err := mail.ParseAddress(s)
		if err != nil {
			p.add(f, "%s is not a valid address (%v)", quote(s), err)
			continue
		}
		// net/mail decodes RFC 2047 display names, which could smuggle a
		// line break that the raw value did not show.
		if i := indexControl(a.Name); i >= 0 {
			p.add(f, "the display name decodes to text with the control character %U", rune(a.Name[i]))
			continue
		}
		parsed = append(parsed, a)
	}
}

// attachments checks list; n is how many the request had, list's and
// those Decode dropped past the limit.
func (p *problems) attachments(list []Attachment, n int, haveHTML bool) {
	if n > MaxAttachments {
		p.add("attachments", "%d attachments; the limit is %d", n, MaxAttachments)
	}
	cids := make(map[string]int)
	for i, a := range list {
		f := fmt.Sprintf("attachments[%d]", i)
		// A by-reference attachment's filename and content type default
		// to the object's.
		byRef := a.GCSURI != ""
		switch {
		case a.Filename != "":
			p.headerText(f+".filename", a.Filename, MaxFilenameLen)
		case !byRef:
			p.add(f+".filename", "is required")
		}
		switch {
		case a.ContentType != "":
			if p.headerText(f+".content_type", a.ContentType, MaxContentTypeLen) {
				p.attachmentType(f+".content_type", a.ContentType)
			}
		case !byRef:
			p.add(f+".content_type", "is required, for example application/pdf")
		}
		switch {
		case byRef && len(a.Data) > 0:
			p.add(f, "has both data and gcs_uri; set exactly one: data for the file's bytes, or gcs_uri for a Cloud Storage object")
		case byRef:
			if err := checkGCSURI(a.GCSURI); err != nil {
				p.add(f+".gcs_uri", "%v", err)
			}
		case len(a.Data) == 0:
			p.add(f+".data", "is required: the file's bytes, standard base64 with padding (or gcs_uri, gs://BUCKET/OBJECT, for a Cloud Storage object)")
		}
		switch {
		case a.Generation < 0:
			p.add(f+".generation", "is %d; an object generation is a positive integer, as gcloud storage objects describe prints it", a.Generation)
		case a.Generation > 0 && !byRef:
			p.add(f+".generation", "is set without gcs_uri; it pins the generation of the object gcs_uri names")
		}
		if a.ContentID == "" {
			continue
		}
		cf := f + ".content_id"
		if !p.headerText(cf, a.ContentID, MaxContentIDLen) {
			continue
		}
		if !isIDText(a.ContentID) {
			p.add(cf, "must be printable ASCII without spaces or angle brackets; the relay adds the brackets")
			continue
		}
		key := strings.ToLower(a.ContentID)
		if j, dup := cids[key]; dup {
			p.add(cf, "duplicates attachments[%d].content_id", j)
			continue
		}
		cids[key] = i
		if !haveHTML {
			p.add(cf, "is set, but there is no html body to show an inline attachment")
		}
	}
}

// attachmentType checks a media type the way composition will use it.
func (p *problems) attachmentType(field, v string) {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		p.add(field, "%s is not a valid media type (%v)", quote(v), err)
		return
	}
	typ, _, ok := strings.Cut(mt, "/")
	if !ok {
		p.add(field, "%s has no subtype; expected type/subtype such as application/pdf", quote(v))
		return
	}
	switch typ {
	case "multipart", "message":
		// The part is sent base64-encoded, which RFC 2046 forbids for these
		// types (§5.1, §5.2.1); send such files as application/octet-stream.
		p.add(field, "%s/* cannot be sent as an attachment; use application/octet-stream", typ)
		return
	}
	// go-message refuses to write a part that declares any other charset.
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		p.add(field, "charset %s is not supported; use utf-8 or us-ascii, or leave the charset out", quote(cs))
	}
}

// headers checks h; n is how many the request had (see attachments).
func (p *problems) headers(h map[string]string, n int) {
	if n > MaxCustomHeaders {
		p.add("headers", "%d headers; the limit is %d", n, MaxCustomHeaders)
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	seen := make(map[string]string, len(h))
	for _, name := range names {
		f := fmt.Sprintf("headers[%q]", name)
		if n := utf8.RuneCountInString(name); n > MaxHeaderNameLen {
			p.add(f, "the name is %d characters long; the limit is %d", n, MaxHeaderNameLen)
			continue
		}
		if !p.headerText(f, name, MaxHeaderNameLen) {
			continue
		}
		if !isFieldName(name) {
			p.add(f, "the name is not an RFC 5322 field name (printable ASCII except colon, no spaces)")
			continue
		}
		if !allowedHeader(name) {
			p.add(f, "only X-* headers, List-Unsubscribe and List-Unsubscribe-Post may be set")
			continue
		}
		lower := strings.ToLower(name)
		if prev, dup := seen[lower]; dup {
			p.add(f, "duplicates header %q (names are case-insensitive)", prev)
			continue
		}
		seen[lower] = name
		v := h[name]
		if !p.headerText(f, v, MaxHeaderValueLen) {
			continue
		}
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				p.add(f, "the value must be ASCII; encode other text as an RFC 2047 encoded-word")
				break
			}
		}
	}
}

func (p *problems) messageID(field, v string) {
	if !p.headerText(field, v, MaxMessageIDLen) {
		return
	}
	if !isMessageID(v) {
		p.add(field, "%s is not a message ID such as <id@example.com>", quote(v))
	}
}

func (p *problems) idempotencyKey(v string) {
	if len(v) > MaxIdempotencyKeyLen {
		p.add("idempotency_key", "is %d characters long; the limit is %d", len(v), MaxIdempotencyKeyLen)
		return
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			p.add("idempotency_key", "must be printable ASCII; byte %d is not", i)
			return
		}
	}
}

func (p *problems) threadID(v string) {
	if v != "" && !isThreadID(v) {
		p.add("thread_id", "%s is not a Gmail thread ID: 1 to 16 lowercase hex digits, such as 18f4a2b3c5d6e7f8", quote(v))
	}
}

// isThreadID matches the IDs users.messages.send returns: a 64-bit number in
// lowercase hex.
func isThreadID(v string) bool {
	if len(v) == 0 || len(v) > 16 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// isFieldName reports whether v is an RFC 5322 field-name (§3.6.8).
func isFieldName(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e || c == ':' {
			return false
		}
	}
	return true
}

// allowedHeader is the custom-header policy: X-* names, which carry no
// meaning to mail systems, and the two list headers that bulk senders need.
func allowedHeader(name string) bool {
	if len(name) > 2 && strings.EqualFold(name[:2], "x-") {
		return true
	}
	return strings.EqualFold(name, "List-Unsubscribe") || strings.EqualFold(name, "List-Unsubscribe-Post")
}

// isIDText reports whether v is printable ASCII without space and without
// the angle brackets that delimit a msg-id.
func isIDText(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// isMessageID accepts "<left@right>" where both sides are isIDText and the
// left has no "@". It is looser than RFC 5322's msg-id because real message
// IDs are, and it still rules out anything that could end the header.
func isMessageID(v string) bool {
	if len(v) < 5 || v[0] != '<' || v[len(v)-1] != '>' {
		return false
	}
	left, right, ok := strings.Cut(v[1:len(v)-1], "@")
	return ok && isIDText(left) && isIDText(right)
}

// isASCIIDotAtom reports whether v is an RFC 5322 dot-atom-text of ASCII
// characters, the shape of a host name in a Message-ID.
func isASCIIDotAtom(v string) bool {
	if v == "" || v[0] == '.' || v[len(v)-1] == '.' || strings.Contains(v, "..") {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func cutLastAt(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr, "", false
	}
	return addr[:i], addr[i+1:], true
}

// quote renders a value for an error message, shortened so that a problem
// stays readable.
func quote(v string) string {
	const maxRunes = 64
	if utf8.RuneCountInString(v) > maxRunes {
		r := []rune(v)
		return fmt.Sprintf("%q…", string(r[:maxRunes]))
	}
	return fmt.Sprintf("%q", v)
}
