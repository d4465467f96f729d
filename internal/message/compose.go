package message

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	gomessage "github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// ComposeOptions are the inputs of Compose that are not in the request.
type ComposeOptions struct {
	// Now is the Date of the message; the zero value means time.Now().
	Now time.Time
	// MessageIDDomain is the right-hand side of the Message-ID; empty means
	// the account's domain.
	MessageIDDomain string
	// MessageIDKey, when not empty, is the key the Message-ID derives from
	// in place of r.IdempotencyKey: the sender's key may come from the
	// Pub/Sub message rather than the request.
	MessageIDKey string
	// Aliases are the account's registered send-as aliases, which from (or
	// a raw message's From) may name instead of the account (CheckSender).
	Aliases []string
	// Open returns the bytes of attachment i, which is by reference
	// (GCSURI set): exactly its Size bytes, streamed into the message's
	// base64 as they are read, so that a large file is never held whole.
	// A request with such an attachment cannot be composed without it.
	// Its errors come back from Compose wrapped, for errors.Is.
	Open func(i int, a Attachment) (io.ReadCloser, error)
}

// Compose validates r and returns the RFC 5322 message to hand to
// users.messages.send. For a raw request that is r.Raw itself, not a copy.
//
// The header carries From (from or else the account, with from_name as
// display name), To,
// Cc, Bcc, Reply-To, Subject, Date, Message-ID, In-Reply-To, References and
// the custom headers, then MIME-Version and Content-Type. Bcc belongs in the
// header because users.messages.send has no other recipient list: it "sends
// the specified message to the recipients in the To, Cc, and Bcc headers", and
// Gmail, like any submission server (RFC 5322 §3.6.3), does not show one Bcc
// recipient to the others. Addressing headers come ahead of the MIME ones
// because Gmail has been reported to ignore recipients that follow them
// (googleworkspace/cli#569). The body is
// text/plain, text/html or multipart/alternative of both; inline attachments
// wrap the html in multipart/related, other attachments wrap everything in
// multipart/mixed. Text is UTF-8 quoted-printable and attachments base64.
//
// The Message-ID derives from the idempotency key (see MessageID), so a retry
// composes the same ID; without a key it is random. A message over
// MaxMessageSize is refused with a *SizeError.
func Compose(r *Request, opts ComposeOptions) ([]byte, error) {
	if err := check(r, opts); err != nil {
		return nil, err
	}
	if len(r.Raw) > 0 {
		return r.Raw, nil
	}
	return compose(r, opts)
}

// ComposeTo is Compose writing the message to w, for a caller that streams
// it, and returns the number of bytes written. After an error, w may hold
// part of a message, which must not be sent.
func ComposeTo(w io.Writer, r *Request, opts ComposeOptions) (int64, error) {
	if err := check(r, opts); err != nil {
		return 0, err
	}
	if len(r.Raw) > 0 {
		n, err := w.Write(r.Raw)
		if err != nil {
			return int64(n), fmt.Errorf("message.ComposeTo: %w", err)
		}
		return int64(n), nil
	}
	return composeTo(w, r, opts)
}

// check validates r, who it is sent as, and a Message-ID key given apart
// from it, which meets the same rules as the request's own (it comes from a
// Pub/Sub attribute).
func check(r *Request, opts ComposeOptions) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if err := r.CheckSender(opts.Aliases); err != nil {
		return err
	}
	if k := opts.MessageIDKey; k != "" && k != r.IdempotencyKey {
		var p problems
		p.idempotencyKey(k)
		return p.err()
	}
	return nil
}

// MessageID returns the Message-ID, angle brackets included, for a request
// with this idempotency key: "<" + the first 32 hex digits of
// SHA-256(key) + "@" + domain + ">". Hashing keeps the publisher's key out of
// the message while a redelivery still yields the same ID.
func MessageID(idempotencyKey, domain string) string {
	sum := sha256.Sum256([]byte(idempotencyKey))
	return "<" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
}

func randomMessageID(domain string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "<" + hex.EncodeToString(b[:]) + "@" + domain + ">"
}

// part is one MIME entity of the message tree.
type part struct {
	header   gomessage.Header // the Content-* fields
	text     string           // body of a text leaf
	data     []byte           // body of an attachment leaf
	children []*part
	// attachment leaves only: their index in the request, their length,
	// and, by reference, what streams them.
	index int
	size  int64
	open  func() (io.ReadCloser, error)
}

// compose builds the message without validating r. It is kept apart from
// Compose so that tests can show that it cannot emit an injected header even
// when Validate is bypassed.
func compose(r *Request, opts ComposeOptions) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(estimateSize(r))
	if _, err := composeTo(&b, r, opts); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// composeTo is compose writing to w.
func composeTo(w io.Writer, r *Request, opts ComposeOptions) (int64, error) {
	return composeWith(w, r, opts, false)
}

// ComposedSize returns the exact size in bytes of the message Compose
// would make of r, without reading any attachment: a by-reference one
// counts by its Size. That is what the sender checks against
// MaxMessageSize, and tells Gmail's upload, before it reads a single
// object. It validates r as Compose does; over MaxMessageSize it returns
// the size with a *SizeError.
//
// It is exact because nothing in a composed message depends on an
// attachment's bytes but their number: go-message's base64 writes 4
// characters per 3 bytes, with CRLF between lines of 76 and none after the
// last, and the boundaries, Date and Message-ID have fixed lengths. It is
// the length of a Compose with the same Now (TestComposedSizeExact).
func ComposedSize(r *Request, opts ComposeOptions) (int64, error) {
	if err := check(r, opts); err != nil {
		return 0, err
	}
	if len(r.Raw) > 0 {
		return int64(len(r.Raw)), nil
	}
	if opts.Open == nil {
		// Sizing reads nothing: any opener will do.
		opts.Open = func(int, Attachment) (io.ReadCloser, error) {
			return nil, errors.New("message.ComposedSize opened an attachment")
		}
	}
	return composeWith(io.Discard, r, opts, true)
}

// base64Size is the length of n bytes in go-message's base64 body.
// Counted rather than encoded: sizing runs before anything is read, and an
// object may be far larger than any message (encoding stand-in bytes
// would cost time in proportion to it); TestComposedSizeExact holds it to
// go-message's real output.
func base64Size(n int64) int64 {
	if n <= 0 {
		return 0
	}
	l := (n + 2) / 3 * 4
	return l + 2*((l+75)/76-1)
}

// composeWith is composeTo; sizing leaves the attachments' bodies out and
// counts their encoded length instead.
func composeWith(w io.Writer, r *Request, opts ComposeOptions, sizing bool) (int64, error) {
	// net/mail drops control characters while formatting an address, so an
	// account that is not exactly one bare address would be sent as some
	// other address rather than fail.
	if a, err := mail.ParseAddress(r.Account); err != nil || a.Name != "" || a.Address != r.Account {
		return 0, fmt.Errorf("message.compose: %w: account %s is not a bare address", ErrInvalid, quote(r.Account))
	}
	if r.From != "" {
		if a, err := mail.ParseAddress(r.From); err != nil || a.Name != "" || a.Address != r.From {
			return 0, fmt.Errorf("message.compose: %w: from %s is not a bare address", ErrInvalid, quote(r.From))
		}
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	domain := opts.MessageIDDomain
	if domain == "" {
		_, domain, _ = cutLastAt(r.Account)
	}
	if !isASCIIDotAtom(domain) {
		return 0, fmt.Errorf("message.compose: %w: message ID domain %s is not an ASCII host name", ErrInvalid, quote(domain))
	}
	msgID := randomMessageID(domain)
	if k := cmp.Or(opts.MessageIDKey, r.IdempotencyKey); k != "" {
		msgID = MessageID(k, domain)
	}

	root, err := tree(r, opts)
	if err != nil {
		return 0, err
	}
	h, err := topHeader(r, now, msgID, root)
	if err != nil {
		return 0, err
	}

	lw := &limitWriter{w: w, limit: MaxMessageSize}
	// go-message's mail.Writer cannot nest multipart/related in
	// multipart/alternative and marks every text part inline, so the
	// entities are written with its general Writer.
	mw, err := gomessage.CreateWriter(lw, h.Header)
	if err != nil {
		return lw.n, fmt.Errorf("message.compose: %w", err)
	}
	if err := writeBody(mw, root, lw, sizing); err != nil {
		return lw.n, fmt.Errorf("message.compose: %w", err)
	}
	if lw.err != nil {
		return lw.n, fmt.Errorf("message.compose: %w", lw.err)
	}
	if lw.n > MaxMessageSize {
		return lw.n, &SizeError{What: "composed message", Size: lw.n, Limit: MaxMessageSize}
	}
	return lw.n, nil
}

// topHeader builds the message header. go-message writes the field set last
// first, so the fields are set in the reverse of their order on the wire.
func topHeader(r *Request, now time.Time, msgID string, root *part) (gomail.Header, error) {
	var h gomail.Header
	fields := root.header.Fields()
	var content [][2]string
	for fields.Next() {
		content = append(content, [2]string{fields.Key(), fields.Value()})
	}
	for _, kv := range slices.Backward(content) {
		h.Add(kv[0], kv[1])
	}
	h.Set("MIME-Version", "1.0")

	names := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		names = append(names, k)
	}
	// Names differ in case only in requests that bypassed Validate; a stable
	// sort keeps even those deterministic.
	slices.SortStableFunc(names, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	for _, name := range slices.Backward(names) {
		if !allowedHeader(name) {
			return h, fmt.Errorf("message.compose: %w: custom header %s is not allowed", ErrInvalid, quote(name))
		}
		h.Add(name, r.Headers[name])
	}
	if len(r.References) > 0 {
		h.Set("References", strings.Join(r.References, " "))
	}
	if r.InReplyTo != "" {
		h.Set("In-Reply-To", r.InReplyTo)
	}
	h.Set("Message-Id", msgID)
	h.SetDate(now)
	if r.Subject != "" {
		h.SetSubject(r.Subject)
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"Reply-To", r.ReplyTo}, {"Bcc", r.Bcc}, {"Cc", r.Cc}, {"To", r.To}} {
		if len(l.list) == 0 {
			continue
		}
		addrs, err := parseAddresses(l.key, l.list)
		if err != nil {
			return h, err
		}
		h.Set(l.key, formatAddressList(addrs))
	}
	h.Set("From", formatAddressList([]*mail.Address{{Name: r.FromName, Address: cmp.Or(r.From, r.Account)}}))

	if err := checkFields(h.Header); err != nil {
		return h, err
	}
	return h, nil
}

// parseAddresses parses the entries of one address header.
func parseAddresses(key string, list []string) ([]*mail.Address, error) {
	out := make([]*mail.Address, 0, len(list))
	for i, s := range list {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return nil, fmt.Errorf("message.compose: %w: %s entry %d is not an address", ErrInvalid, key, i)
		}
		out = append(out, a)
	}
	return out, nil
}

// formatAddressList formats addresses as go-message's SetAddressList does,
// with one correction. net/mail encodes a display name that is not printable
// ASCII as a Q encoded-word, switching to B only when the name holds one of
// the specials it lists; backslash is missing from that list, and a raw
// backslash in an encoded-word makes the whole header unparseable
// (=?utf-8?q?J=C3=B6rg\?=). Such names get B encoding here.
func formatAddressList(list []*mail.Address) string {
	var b strings.Builder
	for i, a := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		if strings.ContainsRune(a.Name, '\\') && strings.IndexFunc(a.Name, needsEncodedWord) >= 0 {
			b.WriteString(mime.BEncoding.Encode("utf-8", a.Name))
			b.WriteByte(' ')
			b.WriteString((&mail.Address{Address: a.Address}).String())
			continue
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// needsEncodedWord reports a rune that net/mail will not put in a quoted
// display name as it is.
func needsEncodedWord(r rune) bool {
	return r >= utf8.RuneSelf || (r < ' ' && r != '\t') || r == 0x7f
}

// checkFields is the last line of defence against header injection: whatever
// Validate let through, every field name must be an RFC 5322 field name and
// no value may carry a control character other than tab. go-message refuses
// CR and LF itself, but lets NUL and an empty name through.
//
// It also refuses a value over maxFieldLen, and a word that cannot fit on
// one 998-octet line (RFC 5322 §2.1.1): go-message would split it with a
// folding space, changing the value, or corrupting it outright inside a
// token such as a media type. Validate's limits keep every request well
// inside both.
func checkFields(h gomessage.Header) error {
	fields := h.Fields()
	for fields.Next() {
		k, v := fields.Key(), fields.Value()
		if !isFieldName(k) || indexControl(v) >= 0 {
			return fmt.Errorf("message.compose: %w: header %s has an invalid name or a control character in its value", ErrInvalid, quote(k))
		}
		if len(k) > MaxHeaderNameLen { // go-message v0.18.2 panics folding a name of 74 or more
			return fmt.Errorf("message.compose: %w: header name %s is over %d characters", ErrInvalid, quote(k), MaxHeaderNameLen)
		}
		if len(v) > maxFieldLen {
			return fmt.Errorf("message.compose: %w: header %s is %d bytes; the limit is %d", ErrInvalid, quote(k), len(v), maxFieldLen)
		}
		if len(k)+len(": ")+longestWord(v) > maxLineLen {
			return fmt.Errorf("message.compose: %w: header %s has a word too long to fit on a line", ErrInvalid, quote(k))
		}
	}
	return nil
}

const (
	// maxLineLen is RFC 5322's limit on a line, CRLF excluded.
	maxLineLen = 998
	// maxFieldLen bounds a composed header field. It is above anything a
	// valid request produces (References at 100 × 512 octets is the
	// largest) and keeps go-message's folding, quadratic in the length,
	// cheap for requests that skipped Validate.
	maxFieldLen = 64 << 10
)

// longestWord returns the length of the longest run of v without space or
// tab, where a header may be folded.
func longestWord(v string) int {
	longest, run := 0, 0
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' || v[i] == '\t' {
			run = 0
			continue
		}
		run++
		longest = max(longest, run)
	}
	return longest
}

// tree lays out the MIME structure of a composed request.
func tree(r *Request, opts ComposeOptions) (*part, error) {
	var body *part
	var html *part
	if r.HTML != "" {
		html = textPart("text/html", r.HTML)
	}
	var inline, attached []*part
	for i, a := range r.Attachments {
		p, err := attachmentPart(i, a, opts.Open)
		if err != nil {
			return nil, err
		}
		if a.ContentID != "" {
			inline = append(inline, p)
		} else {
			attached = append(attached, p)
		}
	}
	if len(inline) > 0 {
		if html == nil {
			return nil, fmt.Errorf("message.compose: %w: inline attachments need an html body", ErrInvalid)
		}
		html = container("multipart/related", map[string]string{"type": "text/html"}, append([]*part{html}, inline...))
	}
	switch {
	case r.Text != "" && html != nil:
		body = container("multipart/alternative", nil, []*part{textPart("text/plain", r.Text), html})
	case html != nil:
		body = html
	default:
		body = textPart("text/plain", r.Text)
	}
	if len(attached) > 0 {
		body = container("multipart/mixed", nil, append([]*part{body}, attached...))
	}
	return body, nil
}

// textPart is a UTF-8 quoted-printable leaf. Its fields, like those of every
// part, are set in the reverse of their order on the wire, so that
// Content-Type comes first.
func textPart(mediaType, text string) *part {
	p := &part{text: text}
	p.header.Add("Content-Transfer-Encoding", "quoted-printable")
	p.header.SetContentType(mediaType, map[string]string{"charset": "utf-8"})
	return p
}

// container is a multipart entity with a fresh boundary.
func container(mediaType string, params map[string]string, children []*part) *part {
	if params == nil {
		params = make(map[string]string, 1)
	}
	params["boundary"] = boundary()
	p := &part{children: children}
	p.header.SetContentType(mediaType, params)
	return p
}

// boundary returns a random multipart boundary that starts with "=_". That
// pair cannot occur in quoted-printable or base64 output, so no body can
// contain a boundary line, whatever it holds.
func boundary() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "=_" + hex.EncodeToString(b[:])
}

// attachmentPart is a base64 leaf, inline when the attachment has a
// content ID. It re-checks what Validate checks, for requests that skipped it.
func attachmentPart(i int, a Attachment, open func(int, Attachment) (io.ReadCloser, error)) (*part, error) {
	p := &part{data: a.Data, index: i, size: int64(len(a.Data))}
	if a.GCSURI != "" {
		switch {
		case a.Filename == "" || a.ContentType == "":
			return nil, fmt.Errorf("message.compose: attachments[%d] %w", i, errNotFilled)
		case open == nil:
			return nil, fmt.Errorf("message.compose: attachments[%d] is by reference (%s) and nothing was given to read it", i, quote(a.GCSURI))
		case a.Size < 0:
			return nil, fmt.Errorf("message.compose: attachments[%d] has the size %d", i, a.Size)
		}
		p.data, p.size = nil, a.Size
		p.open = func() (io.ReadCloser, error) { return open(i, a) }
	}
	mt, params, err := mime.ParseMediaType(a.ContentType)
	if err != nil {
		return nil, fmt.Errorf("message.compose: %w: attachments[%d].content_type: %v", ErrInvalid, i, err)
	}
	if !strings.Contains(mt, "/") || strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/") {
		return nil, fmt.Errorf("message.compose: %w: attachments[%d].content_type %s cannot be an attachment", ErrInvalid, i, quote(mt))
	}
	p.header.Add("Content-Transfer-Encoding", "base64")
	disposition := "attachment"
	if a.ContentID != "" {
		disposition = "inline"
	}
	// go-message encodes non-ASCII parameter values, the file name among
	// them, as RFC 2047 encoded-words.
	p.header.SetContentDisposition(disposition, map[string]string{"filename": a.Filename})
	if a.ContentID != "" {
		if !isIDText(a.ContentID) {
			return nil, fmt.Errorf("message.compose: %w: attachments[%d].content_id is not a valid content ID", ErrInvalid, i)
		}
		p.header.Add("Content-Id", "<"+a.ContentID+">")
	}
	p.header.SetContentType(mt, params)
	if err := checkFields(p.header); err != nil {
		return nil, err
	}
	return p, nil
}

// writeBody writes the body of entity p into w, which already has p's
// header, and closes w. sizing writes no attachment body but counts its
// encoded length in lw.
func writeBody(w *gomessage.Writer, p *part, lw *limitWriter, sizing bool) error {
	for _, c := range p.children {
		cw, err := w.CreatePart(c.header)
		if err != nil {
			return err
		}
		if err := writeBody(cw, c, lw, sizing); err != nil {
			return err
		}
	}
	if len(p.children) == 0 {
		var err error
		switch {
		case sizing && (p.data != nil || p.open != nil):
			lw.n += base64Size(p.size)
		case p.open != nil:
			err = copyAttachment(w, p)
		case p.data != nil:
			_, err = w.Write(p.data)
		default:
			_, err = w.Write([]byte(p.text))
		}
		if err != nil {
			return err
		}
	}
	return w.Close()
}

// copyAttachment streams a by-reference attachment into its part: io.Copy
// through a 32 KiB buffer, base64 encoded as it goes.
func copyAttachment(w io.Writer, p *part) error {
	rc, err := p.open()
	if err != nil {
		return fmt.Errorf("attachments[%d]: %w", p.index, err)
	}
	n, err := io.Copy(w, rc)
	cerr := rc.Close()
	switch {
	case err != nil:
		return fmt.Errorf("attachments[%d]: %w", p.index, err)
	case n != p.size:
		// The message's size was computed from p.size.
		return fmt.Errorf("attachments[%d]: read %d bytes, but its size is %d", p.index, n, p.size)
	case cerr != nil:
		return fmt.Errorf("attachments[%d]: %w", p.index, cerr)
	}
	return nil
}

// limitWriter passes at most limit bytes on to w but counts everything
// written, so that an oversized message costs no more than the limit and its
// error can still state the real size. It reports success to go-message
// until w fails, and keeps w's first error for the end; from then on it
// fails every write, so that a message streamed to a reader that gave up
// (an upload cut short) stops reading its attachments.
type limitWriter struct {
	w     io.Writer
	n     int64
	limit int64
	err   error
}

func (lw *limitWriter) Write(p []byte) (int, error) {
	if lw.err != nil {
		return 0, lw.err
	}
	if lw.n+int64(len(p)) <= lw.limit {
		_, lw.err = lw.w.Write(p)
	}
	lw.n += int64(len(p))
	return len(p), nil
}

// estimateSize predicts the composed size closely enough that the buffer
// rarely grows: headers and part boundaries, quoted-printable text, base64
// attachments with their line breaks.
func estimateSize(r *Request) int {
	n := 1024 + 3*(len(r.Subject)+len(r.FromName)) + len(r.Account) + len(r.From) + len(r.InReplyTo)
	for _, l := range [][]string{r.To, r.Cc, r.Bcc, r.ReplyTo, r.References} {
		for _, s := range l {
			n += len(s) + 8
		}
	}
	for k, v := range r.Headers {
		n += len(k) + len(v) + 4
	}
	n += qpSize(r.Text) + qpSize(r.HTML)
	for _, a := range r.Attachments {
		b64 := (len(a.Data) + int(a.Size) + 2) / 3 * 4
		n += 384 + 3*len(a.Filename) + len(a.ContentType) + len(a.ContentID) + b64 + b64/76*2
	}
	return min(n, MaxMessageSize)
}

// qpSize estimates the quoted-printable size of s, with 200 bytes for the
// part's boundary line and header.
func qpSize(s string) int {
	if s == "" {
		return 0
	}
	n := len(s)
	for i := 0; i < len(s); i++ {
		n += int(qpExtra[s[i]])
	}
	return 200 + n + n/73*3
}

// qpExtra is how many bytes quoted-printable adds to each input byte: two
// for an escaped byte ("=XX"), one for LF, which becomes CRLF.
var qpExtra = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c == '\n':
			t[c] = 1
		case c >= 0x7f || c == '=' || (c < 0x20 && c != '\t' && c != '\r'):
			t[c] = 2
		}
	}
	return t
}()
