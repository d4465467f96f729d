package message

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"mime"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
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
	// Buffer, if its capacity suffices, is where the message is composed,
	// so that a caller can reuse one buffer across messages; the result
	// then shares its memory. Otherwise a buffer of the estimated size is
	// allocated.
	Buffer []byte
	// Validated says that r is what Decode returned, unchanged, so
	// Compose need not run Validate a second time. compose itself never
	// writes an injected header or an oversized message either way.
	Validated bool
}

// Compose validates r and returns the RFC 5322 message to hand to
// users.messages.send. For a raw request that is r.Raw itself, not a copy.
//
// The header carries From (the account, with from_name as display name), To,
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
// The Message-ID derives from r.IdempotencyKey (see MessageID), so a retry
// composes the same ID; without a key it is random. A message over
// MaxMessageSize is refused with a *SizeError.
func Compose(r *Request, opts ComposeOptions) ([]byte, error) {
	if !opts.Validated {
		if err := r.Validate(); err != nil {
			return nil, err
		}
	}
	if k := opts.MessageIDKey; k != "" && k != r.IdempotencyKey {
		// A key from elsewhere (a Pub/Sub attribute) meets the same rules
		// as the request's own.
		var p problems
		p.idempotencyKey(k)
		if err := p.err(); err != nil {
			return nil, err
		}
	}
	if len(r.Raw) > 0 {
		return r.Raw, nil
	}
	return compose(r, opts)
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
	header   []field // the Content-* fields, in wire order
	text     string  // body of a text leaf
	data     []byte  // body of an attachment leaf
	children []*part
	boundary string // of a container
}

// compose builds the message without validating r. It is kept apart from
// Compose so that tests can show that it cannot emit an injected header even
// when Validate is bypassed.
func compose(r *Request, opts ComposeOptions) ([]byte, error) {
	return composeWith(r, opts, boundary)
}

// composeWith is compose with the source of multipart boundaries as a
// parameter, so that tests can compare whole messages with another writer's.
func composeWith(r *Request, opts ComposeOptions, newBoundary func() string) ([]byte, error) {
	// net/mail drops control characters while formatting an address, so an
	// account that is not exactly one bare address would be sent as some
	// other address rather than fail.
	if a, err := parseAddress(r.Account); err != nil || a.Name != "" || a.Address != r.Account {
		return nil, fmt.Errorf("message: compose: %w: account %s is not a bare address", ErrInvalid, quote(r.Account))
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
		return nil, fmt.Errorf("message: compose: %w: message ID domain %s is not an ASCII host name", ErrInvalid, quote(domain))
	}
	var msgID string
	if k := cmp.Or(opts.MessageIDKey, r.IdempotencyKey); k != "" {
		msgID = MessageID(k, domain)
	} else {
		msgID = randomMessageID(domain)
	}

	root, err := tree(r, newBoundary)
	if err != nil {
		return nil, err
	}
	h, err := topHeader(r, now, msgID, root)
	if err != nil {
		return nil, err
	}

	w := &cappedBuffer{b: opts.Buffer[:0], limit: MaxMessageSize}
	if cap(w.b) < sizeBound(r) {
		w.b = slices.Grow(w.b, estimateSize(r))
	}
	sp := scratchPool.Get().(*[]byte)
	scratch := appendHeader((*sp)[:0], h)
	w.Write(scratch)
	scratch, err = writeEntity(w, root, scratch)
	if cap(scratch) <= maxPooledScratch {
		*sp = scratch
		scratchPool.Put(sp)
	}
	if err != nil {
		return nil, fmt.Errorf("message: compose: %w", err)
	}
	if w.n > MaxMessageSize {
		return nil, &SizeError{What: "composed message", Size: w.n, Limit: MaxMessageSize}
	}
	return w.b, nil
}

// topHeader builds the message header in wire order: the addresses,
// Subject, Date and the message's identity, the custom headers sorted by
// name, then MIME-Version and the root part's Content-* fields. Addressing
// comes first because Gmail has been reported to ignore recipients that
// follow the MIME fields (googleworkspace/cli#569).
func topHeader(r *Request, now time.Time, msgID string, root *part) ([]field, error) {
	h := make([]field, 0, 10+len(r.Headers)+len(root.header))
	h = append(h, field{"From", formatAddressList([]*mail.Address{{Name: r.FromName, Address: r.Account}})})
	for _, l := range []struct {
		key  string
		list []string
	}{{"To", r.To}, {"Cc", r.Cc}, {"Bcc", r.Bcc}, {"Reply-To", r.ReplyTo}} {
		if len(l.list) == 0 {
			continue
		}
		addrs, err := parseAddresses(l.key, l.list)
		if err != nil {
			return nil, err
		}
		h = append(h, field{l.key, formatAddressList(addrs)})
	}
	if r.Subject != "" {
		h = append(h, field{"Subject", mime.QEncoding.Encode("utf-8", r.Subject)})
	}
	h = append(h, field{"Date", formatDate(now)}, field{"Message-Id", msgID})
	if r.InReplyTo != "" {
		h = append(h, field{"In-Reply-To", r.InReplyTo})
	}
	if len(r.References) > 0 {
		h = append(h, field{"References", strings.Join(r.References, " ")})
	}

	custom := len(h)
	for name, v := range r.Headers {
		h = append(h, field{name, v})
	}
	// Names differ in case only in requests that bypassed Validate; the
	// tie-breakers keep even those, and which one an error names,
	// deterministic.
	slices.SortFunc(h[custom:], func(a, b field) int {
		return cmp.Or(compareFold(a.name, b.name), strings.Compare(a.name, b.name), strings.Compare(a.value, b.value))
	})
	for i := custom; i < len(h); i++ {
		if !allowedHeader(h[i].name) {
			return nil, fmt.Errorf("message: compose: %w: custom header %s is not allowed", ErrInvalid, quote(h[i].name))
		}
		h[i].name = textproto.CanonicalMIMEHeaderKey(h[i].name)
	}

	h = append(h, field{"Mime-Version", "1.0"})
	h = append(h, root.header...)
	if err := checkFields(h); err != nil {
		return nil, err
	}
	return h, nil
}

// dateLayout is RFC 5322's date-time, as go-message's SetDate writes it.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// formatDate is t.Format(dateLayout), remembered for the last second and
// location asked: a busy sender composes thousands of messages a second,
// all with the same Date, and formatting it was 1% of a delivery.
func formatDate(t time.Time) string {
	sec, loc := t.Unix(), t.Location()
	if d := lastDate.Load(); d != nil && d.sec == sec && d.loc == loc {
		return d.s
	}
	s := t.Format(dateLayout)
	lastDate.Store(&formattedDate{sec: sec, loc: loc, s: s})
	return s
}

type formattedDate struct {
	sec int64
	loc *time.Location
	s   string
}

var lastDate atomic.Pointer[formattedDate]

// compareFold compares ASCII names case-insensitively.
func compareFold(a, b string) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		ca, cb := lowerASCII(a[i]), lowerASCII(b[i])
		if ca != cb {
			return cmp.Compare(ca, cb)
		}
	}
	return cmp.Compare(len(a), len(b))
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// parseAddresses parses the entries of one address header.
func parseAddresses(key string, list []string) ([]*mail.Address, error) {
	out := make([]*mail.Address, 0, len(list))
	for i, s := range list {
		a, err := parseAddress(s)
		if err != nil {
			return nil, fmt.Errorf("message: compose: %w: %s entry %d is not an address", ErrInvalid, key, i)
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
	n := 0
	for _, a := range list {
		n += len(a.Name) + len(a.Address) + 7
	}
	b.Grow(n)
	for i, a := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		if writePlainAddress(&b, a) {
			continue
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

// writePlainAddress writes a as (*mail.Address).String would, if a is the
// usual case: a dot-atom address, and a display name (perhaps none) of
// printable ASCII without quote or backslash, which String quotes as it is.
// It reports whether it wrote anything; String's building of the string
// from pieces was a fifth of composing a message's header.
func writePlainAddress(b *strings.Builder, a *mail.Address) bool {
	if !isAddrSpec(a.Address) || !isPlainASCII(a.Name) || strings.ContainsAny(a.Name, `"\`) {
		return false
	}
	if a.Name != "" {
		b.WriteByte('"')
		b.WriteString(a.Name)
		b.WriteString(`" `)
	}
	b.WriteByte('<')
	b.WriteString(a.Address)
	b.WriteByte('>')
	return true
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
func checkFields(h []field) error {
	for _, f := range h {
		k, v := f.name, f.value
		if !isFieldName(k) || indexControl(v) >= 0 {
			return fmt.Errorf("message: compose: %w: header %s has an invalid name or a control character in its value", ErrInvalid, quote(k))
		}
		if len(v) > maxFieldLen {
			return fmt.Errorf("message: compose: %w: header %s is %d bytes; the limit is %d", ErrInvalid, quote(k), len(v), maxFieldLen)
		}
		if len(k)+len(": ")+longestWord(v) > maxLineLen {
			return fmt.Errorf("message: compose: %w: header %s has a word too long to fit on a line", ErrInvalid, quote(k))
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
func tree(r *Request, newBoundary func() string) (*part, error) {
	var body *part
	var html *part
	if r.HTML != "" {
		html = textPart("text/html", r.HTML)
	}
	var inline, attached []*part
	for i, a := range r.Attachments {
		p, err := attachmentPart(i, a)
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
			return nil, fmt.Errorf("message: compose: %w: inline attachments need an html body", ErrInvalid)
		}
		html = container("multipart/related", newBoundary(), append([]*part{html}, inline...))
	}
	switch {
	case r.Text != "" && html != nil:
		body = container("multipart/alternative", newBoundary(), []*part{textPart("text/plain", r.Text), html})
	case html != nil:
		body = html
	default:
		body = textPart("text/plain", r.Text)
	}
	if len(attached) > 0 {
		body = container("multipart/mixed", newBoundary(), append([]*part{body}, attached...))
	}
	return body, nil
}

// textPart is a UTF-8 quoted-printable leaf. The Content-Type value is
// spelled out: it is what mime.FormatMediaType makes of it
// (TestContentTypeSpelling), without building a parameter map per message.
func textPart(mediaType, text string) *part {
	return &part{text: text, header: []field{
		{"Content-Type", mediaType + "; charset=utf-8"},
		{"Content-Transfer-Encoding", "quoted-printable"},
	}}
}

// container is a multipart entity with boundary b; multipart/related gets
// its type parameter. The boundary starts with "=", so it is quoted, as
// mime.FormatMediaType would.
func container(mediaType, b string, children []*part) *part {
	v := mediaType + `; boundary="` + b + `"`
	if mediaType == "multipart/related" {
		v += `; type="text/html"`
	}
	return &part{children: children, boundary: b, header: []field{{"Content-Type", v}}}
}

// boundary returns a random multipart boundary that starts with "=_". That
// pair cannot occur in quoted-printable or base64 output, so no body can
// contain a boundary line, whatever it holds, and the boundary need not be
// unguessable: it comes from math/rand/v2, not crypto/rand, whose read was
// a tenth of composing a message.
func boundary() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], mrand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], mrand.Uint64())
	return "=_" + hex.EncodeToString(b[:])
}

// attachmentPart is a base64 leaf, inline when the attachment has a
// content ID. It re-checks what Validate checks, for requests that skipped it.
func attachmentPart(i int, a Attachment) (*part, error) {
	mt, params, err := mime.ParseMediaType(a.ContentType)
	if err != nil {
		return nil, fmt.Errorf("message: compose: %w: attachments[%d].content_type: %v", ErrInvalid, i, err)
	}
	if !strings.Contains(mt, "/") || strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/") {
		return nil, fmt.Errorf("message: compose: %w: attachments[%d].content_type %s cannot be an attachment", ErrInvalid, i, quote(mt))
	}
	p := &part{data: a.Data}
	p.header = append(p.header, field{"Content-Type", formatWithParams(mt, params)})
	disposition := "attachment"
	if a.ContentID != "" {
		if !isIDText(a.ContentID) {
			return nil, fmt.Errorf("message: compose: %w: attachments[%d].content_id is not a valid content ID", ErrInvalid, i)
		}
		p.header = append(p.header, field{"Content-Id", "<" + a.ContentID + ">"})
		disposition = "inline"
	}
	p.header = append(p.header,
		field{"Content-Disposition", formatWithParams(disposition, map[string]string{"filename": a.Filename})},
		field{"Content-Transfer-Encoding", "base64"})
	if err := checkFields(p.header); err != nil {
		return nil, err
	}
	return p, nil
}

// formatWithParams formats a media type or disposition with parameters as
// go-message does: non-ASCII values, the file name among them, become RFC
// 2047 encoded-words, which mail readers decode in parameters too.
func formatWithParams(v string, params map[string]string) string {
	enc := make(map[string]string, len(params))
	for k, pv := range params {
		enc[k] = mime.QEncoding.Encode("utf-8", pv)
	}
	return mime.FormatMediaType(v, enc)
}

// scratchPool holds the body encoders' buffers between messages: growing a
// fresh one for every message was a third of composing's cost.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// maxPooledScratch keeps a buffer grown by one large text out of the pool.
const maxPooledScratch = 4 * encodeChunk

// writeEntity writes the body of entity p into w, which already has p's
// header: the parts of a container between its boundaries, or a leaf's
// text quoted-printable or data base64. scratch is the encoders' buffer,
// handed back for reuse. The layout of boundaries is mime/multipart's, as
// go-message writes it (TestComposeMatchesGoMessage).
func writeEntity(w io.Writer, p *part, scratch []byte) ([]byte, error) {
	if len(p.children) == 0 {
		if p.data != nil {
			return writeBase64Lines(w, p.data, scratch)
		}
		if cw, ok := w.(*cappedBuffer); ok && len(p.text) <= encodeChunk {
			cw.appendQP(p.text)
			return scratch, nil
		}
		return writeQP(w, p.text, scratch)
	}
	for i, c := range p.children {
		scratch = scratch[:0]
		if i > 0 {
			scratch = append(scratch, '\r', '\n')
		}
		scratch = append(scratch, "--"...)
		scratch = append(scratch, p.boundary...)
		scratch = append(scratch, '\r', '\n')
		scratch = appendHeader(scratch, c.header)
		if _, err := w.Write(scratch); err != nil {
			return scratch, err
		}
		var err error
		if scratch, err = writeEntity(w, c, scratch); err != nil {
			return scratch, err
		}
	}
	scratch = append(scratch[:0], "\r\n--"...)
	scratch = append(scratch, p.boundary...)
	scratch = append(scratch, "--\r\n"...)
	_, err := w.Write(scratch)
	return scratch, err
}

// cappedBuffer keeps at most limit bytes but counts everything written, so
// that an oversized message costs no more memory than the limit and its error
// can still state the real size.
type cappedBuffer struct {
	b     []byte
	n     int64
	limit int64
}

func (w *cappedBuffer) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n <= w.limit {
		w.b = append(w.b, p...)
	}
	return len(p), nil
}

// appendQP encodes a text of at most encodeChunk bytes straight into the
// message, rather than into the scratch buffer and then the message: one
// copy of every body fewer.
func (w *cappedBuffer) appendQP(s string) {
	before := len(w.b)
	w.b = appendQP(w.b, s)
	w.n += int64(len(w.b) - before)
	if w.n > w.limit {
		w.b = w.b[:before]
	}
}

// estimateSize predicts the composed size closely enough that the buffer
// rarely grows: headers and part boundaries, quoted-printable text, base64
// attachments with their line breaks.
func estimateSize(r *Request) int {
	n := 1024 + 3*(len(r.Subject)+len(r.FromName)) + len(r.Account) + len(r.InReplyTo)
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
		b64 := (len(a.Data) + 2) / 3 * 4
		n += 384 + 3*len(a.Filename) + len(a.ContentType) + len(a.ContentID) + b64 + b64/76*2
	}
	return min(n, MaxMessageSize)
}

// sizeBound is like estimateSize, but never below it and without reading
// the text: it lets a caller's ample buffer be used without the scan.
func sizeBound(r *Request) int {
	n := estimateSize(&Request{Subject: r.Subject, FromName: r.FromName, Account: r.Account, InReplyTo: r.InReplyTo,
		To: r.To, Cc: r.Cc, Bcc: r.Bcc, ReplyTo: r.ReplyTo, References: r.References, Headers: r.Headers, Attachments: r.Attachments})
	for _, s := range []string{r.Text, r.HTML} {
		if s != "" {
			// Every byte escaped, and a soft line break per 25 of them.
			n += 200 + 3*len(s) + 3*len(s)/73*3
		}
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
