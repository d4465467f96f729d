package message

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Decode reads a send request from Pub/Sub message data and validates it.
//
// It refuses data over MaxRequestSize before parsing, with a *SizeError. The
// JSON is read strictly, matching the published schema: field names are
// matched exactly (encoding/json would ignore case), and unknown fields,
// duplicate fields, nulls and values of the wrong type are problems naming
// the field. raw and attachments[].data are standard base64 with padding
// (RFC 4648 §4, as encoding/json writes a []byte), without line breaks. Such
// problems, all of them, come back as a *ValidationError; a well-formed
// request then goes through Validate.
func Decode(data []byte) (*Request, error) {
	if len(data) > MaxRequestSize {
		return nil, &SizeError{What: "send request", Size: int64(len(data)), Limit: MaxRequestSize}
	}
	r, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// errMalformed stops the walk: after a syntax error the token stream cannot
// be trusted, so no later problem is worth reporting.
var errMalformed = errors.New("malformed JSON")

// strictBase64 is the request's base64: standard alphabet, padding, and no
// bits set past the data.
var strictBase64 = base64.StdEncoding.Strict()

// jsonReader walks the request with json.Decoder's Token, rather than
// unmarshal into a struct, to match field names exactly, to see nulls and
// duplicate keys, and to name the path of every problem.
type jsonReader struct {
	data []byte
	dec  *json.Decoder
	p    problems
	// unlisted counts the problems past maxProblems.
	unlisted int
	// decoded is the attachments' decoded size so far, and maxDecoded its
	// bound (maxAttachmentBytes; a test lowers it).
	decoded, maxDecoded int64
}

// Cheap limits, applied as the JSON is read and before anything is kept,
// parsed or decoded, so that refusing a request built to be expensive
// (330k recipients in 9.9 MB, say) costs little more than reading it: past
// each limit the walk only counts what it skips, and Validate refuses on
// the count. Measured by TestDecodeCheapLimits (runtime.MemStats around one
// Decode): 330k recipients in 9.9 MB cost 3,299,867 allocations and 92 MB
// allocated without these limits, 86 and 34 MB (json.Decoder's growing
// copy of the input) with them, and nothing of the list is kept.
const (
	// maxProblems bounds the problems listed for one request; a request
	// with thousands of broken entries would otherwise build a list as
	// large as itself. The rest are counted in one last problem.
	maxProblems = 100
	// maxMembers bounds the members of the request object and of each
	// attachment: they have 17 and 6 fields, so anything past this is
	// unknown or repeated, and not worth a map entry each.
	maxMembers = 32
	// maxAttachmentBytes bounds the attachments' total decoded size, taken
	// from the base64 length before decoding: each is composed in base64,
	// 4/3 of its size, so more than this can never fit in MaxMessageSize.
	maxAttachmentBytes = MaxMessageSize / 4 * 3
)

// add records a problem, up to maxProblems.
func (d *jsonReader) add(path, format string, args ...any) {
	if len(d.p.list) >= maxProblems {
		d.unlisted++
		return
	}
	d.p.add(path, format, args...)
}

func decodeJSON(data []byte) (*Request, error) {
	return decodeJSONWith(data, maxAttachmentBytes)
}

func decodeJSONWith(data []byte, maxDecoded int64) (*Request, error) {
	d := &jsonReader{data: data, dec: json.NewDecoder(bytes.NewReader(data)), maxDecoded: maxDecoded}
	// A number too large for a float64 is still a number of the wrong
	// type, not malformed JSON.
	d.dec.UseNumber()
	r := new(Request)
	err := d.request(r)
	if d.unlisted > 0 {
		d.p.add("", "%d more problems are not listed", d.unlisted)
	}
	if err != nil {
		if errors.Is(err, errMalformed) {
			return nil, d.p.err()
		}
		return nil, fmt.Errorf("message.decodeJSON: %w", err)
	}
	if err := d.p.err(); err != nil {
		return nil, err
	}
	return r, nil
}

func (d *jsonReader) request(r *Request) error {
	t, err := d.dec.Token()
	if errors.Is(err, io.EOF) {
		d.add("", "the send request is empty; expected a JSON object")
		return errMalformed
	}
	if err != nil {
		return d.syntax(err)
	}
	if t != json.Delim('{') {
		d.add("", "the send request must be a JSON object, not %s", kindOf(t))
		return errMalformed
	}
	n, err := d.members("", maxMembers, r.field)
	if err != nil {
		return err
	}
	d.overMembers("", n)
	if _, err := d.dec.Token(); !errors.Is(err, io.EOF) {
		d.add("", "unexpected data after the JSON object at byte %d", d.dec.InputOffset())
		return errMalformed
	}
	return nil
}

// field decodes the value of one top-level member. Lists keep at most
// their limit's worth of entries and count the rest in r.dropped.
func (r *Request) field(d *jsonReader, key string) error {
	var err error
	list := func(dst *[]string, limit int) {
		var n int
		*dst, n, err = d.strs(key, limit)
		r.drop(key, n-len(*dst))
	}
	switch key {
	case "account":
		r.Account, err = d.str(key)
	case "from":
		r.From, err = d.str(key)
	case "from_name":
		r.FromName, err = d.str(key)
	case "to":
		// Each of to, cc and bcc may hold the whole per-message limit; the
		// total across them is Validate's to check.
		list(&r.To, MaxRecipients)
	case "cc":
		list(&r.Cc, MaxRecipients)
	case "bcc":
		list(&r.Bcc, MaxRecipients)
	case "reply_to":
		list(&r.ReplyTo, MaxRecipients)
	case "subject":
		r.Subject, err = d.str(key)
	case "text":
		r.Text, err = d.str(key)
	case "html":
		r.HTML, err = d.str(key)
	case "attachments":
		var n int
		n, err = d.array(key, MaxAttachments, func(path string) error {
			var a Attachment
			ok, m, err := d.object(path, maxMembers, func(d *jsonReader, key string) error {
				return a.field(d, path, key)
			})
			if ok {
				d.overMembers(path, m)
				r.Attachments = append(r.Attachments, a)
			}
			return err
		})
		r.drop(key, n-len(r.Attachments))
	case "headers":
		var n int
		_, n, err = d.object(key, MaxCustomHeaders, func(d *jsonReader, name string) error {
			v, err := d.str(join(key, name))
			if r.Headers == nil {
				r.Headers = make(map[string]string)
			}
			r.Headers[name] = v
			return err
		})
		r.drop(key, n-len(r.Headers))
	case "in_reply_to":
		r.InReplyTo, err = d.str(key)
	case "references":
		list(&r.References, MaxReferences)
	case "thread_id":
		r.ThreadID, err = d.str(key)
	case "raw":
		// raw is bounded by MaxRequestSize alone: its decoded size is at
		// most 3/4 of that, well under MaxMessageSize.
		r.Raw, err = d.base64(key, 0)
	case "idempotency_key":
		r.IdempotencyKey, err = d.str(key)
	default:
		err = d.unknown(key)
	}
	return err
}

// drop records n entries of field that Decode read but did not keep.
func (r *Request) drop(field string, n int) {
	if n <= 0 {
		return
	}
	if r.dropped == nil {
		r.dropped = make(map[string]int)
	}
	r.dropped[field] += n
}

// field decodes one member of the attachment at path.
func (a *Attachment) field(d *jsonReader, path, key string) error {
	var err error
	f := join(path, key)
	switch key {
	case "filename":
		a.Filename, err = d.str(f)
	case "content_type":
		a.ContentType, err = d.str(f)
	case "data":
		a.Data, err = d.base64(f, d.maxDecoded)
	case "gcs_uri":
		a.GCSURI, err = d.str(f)
	case "generation":
		a.Generation, err = d.generation(f)
	case "content_id":
		a.ContentID, err = d.str(f)
	default:
		err = d.unknown(f)
	}
	return err
}

// overMembers reports an object of fixed fields with more than maxMembers
// members, whose rest members() skipped unread.
func (d *jsonReader) overMembers(path string, n int) {
	if n > maxMembers {
		what := "the send request"
		if path != "" {
			what = path
		}
		d.add(path, "%s has %d members; only its fields may appear, once each (those past the first %d were not examined)", what, n, maxMembers)
	}
}

// join names member key of the object at path: "subject",
// "attachments[0].data" or `headers["X-Id"]`.
func join(path, key string) string {
	switch path {
	case "":
		return key
	case "headers":
		return fmt.Sprintf("headers[%q]", key)
	}
	return path + "." + key
}

// members reads the members of an object whose "{" has been read, through
// its "}", and returns how many it had. Each value is handed to fn, except
// those of repeated keys and those past the first limit, which are skipped
// without being kept or checked for repeats.
func (d *jsonReader) members(path string, limit int, fn func(d *jsonReader, key string) error) (int, error) {
	seen := make(map[string]bool)
	n := 0
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return n, err
		}
		n++
		if n > limit {
			if err := d.skipValue(); err != nil {
				return n, err
			}
			continue
		}
		key, _ := t.(string) // Token returns only strings in key position
		if seen[key] {
			d.add(join(path, key), "appears more than once")
			if err := d.skipValue(); err != nil {
				return n, err
			}
			continue
		}
		seen[key] = true
		if err := fn(d, key); err != nil {
			return n, err
		}
	}
	_, err := d.token() // "}"
	return n, err
}

// object reads an object value, reporting whether it was one and how many
// members it had (see members).
func (d *jsonReader) object(path string, limit int, fn func(d *jsonReader, key string) error) (bool, int, error) {
	if n, skipped, err := d.overLimit(limit); skipped {
		return true, n, err
	}
	t, err := d.token()
	if err != nil {
		return false, 0, err
	}
	if t != json.Delim('{') {
		d.add(path, "must be an object, not %s", kindOf(t))
		return false, 0, d.skip(t)
	}
	n, err := d.members(path, limit, fn)
	return true, n, err
}

// array reads an array value, calling elem with the path of each of its
// first limit elements, and returns how many elements it had; the rest are
// skipped unread.
func (d *jsonReader) array(path string, limit int, elem func(path string) error) (int, error) {
	if n, skipped, err := d.overLimit(limit); skipped {
		return n, err
	}
	t, err := d.token()
	if err != nil {
		return 0, err
	}
	if t != json.Delim('[') {
		d.add(path, "must be an array, not %s", kindOf(t))
		return 0, d.skip(t)
	}
	n := 0
	for ; d.dec.More(); n++ {
		if n >= limit {
			err = d.skipValue()
		} else {
			err = elem(fmt.Sprintf("%s[%d]", path, n))
		}
		if err != nil {
			return n, err
		}
	}
	_, err = d.token() // "]"
	return n, err
}

// overLimit skips the next value whole, and returns its entries' count,
// when it is an array or object with more than limit entries: the count
// alone refuses it, so none of its entries is worth reading. Skipping it in
// one Decode, after countEntries, costs a few allocations where reading
// entry by entry costs several per entry (encoding/json's scanner makes an
// error value at the end of each).
func (d *jsonReader) overLimit(limit int) (n int, skipped bool, err error) {
	n, ok := countEntries(d.data, d.dec.InputOffset())
	if !ok || n <= limit {
		return 0, false, nil
	}
	return n, true, d.skipValue()
}

// countEntries counts the elements or members of the array or object that
// starts at data[off:] (past whitespace and the colon after a key), by
// counting its top-level commas. It reports false when no array or object
// starts there or it does not end; it assumes valid JSON, and the Decode
// that follows it checks that.
func countEntries(data []byte, off int64) (int, bool) {
	i := int(off)
	for i < len(data) && (isJSONSpace(data[i]) || data[i] == ':') {
		i++
	}
	if i >= len(data) || (data[i] != '[' && data[i] != '{') {
		return 0, false
	}
	depth, commas, empty := 0, 0, true
	for ; i < len(data); i++ {
		c := data[i]
		if depth == 1 && !isJSONSpace(c) && c != ',' && c != ']' && c != '}' {
			empty = false
		}
		switch c {
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth--; depth == 0 {
				if empty {
					return 0, true
				}
				return commas + 1, true
			}
		case ',':
			if depth == 1 {
				commas++
			}
		}
	}
	return 0, false
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *jsonReader) str(path string) (string, error) {
	t, err := d.token()
	if err != nil {
		return "", err
	}
	if s, ok := t.(string); ok {
		return s, nil
	}
	d.add(path, "must be a string, not %s", kindOf(t))
	return "", d.skip(t)
}

// generation reads an object generation: a JSON integer from 1 to the
// largest int64, as Cloud Storage's generations are.
func (d *jsonReader) generation(path string) (int64, error) {
	t, err := d.token()
	if err != nil {
		return 0, err
	}
	n, ok := t.(json.Number)
	if !ok {
		d.add(path, "must be an integer, not %s", kindOf(t))
		return 0, d.skip(t)
	}
	g, err := n.Int64()
	if err != nil || g <= 0 {
		d.add(path, "is %s; an object generation is an integer from 1 to 9223372036854775807, as gcloud storage objects describe prints it", quote(n.String()))
		return 0, nil
	}
	return g, nil
}

// strs reads an array of strings, keeping the first limit, and returns
// how many it had.
func (d *jsonReader) strs(path string, limit int) ([]string, int, error) {
	var out []string
	n, err := d.array(path, limit, func(p string) error {
		s, err := d.str(p)
		out = append(out, s)
		return err
	})
	return out, n, err
}

// base64 reads a base64 string. With budget > 0 its decoded size, taken
// from its length before decoding, counts against d.decoded, and a value
// that takes the total past budget is refused undecoded.
func (d *jsonReader) base64(path string, budget int64) ([]byte, error) {
	v := b64Value{d: d, path: path, budget: budget}
	if err := d.dec.Decode(&v); err != nil {
		return nil, d.syntax(err)
	}
	return v.out, nil
}

// b64Value receives a base64 member's JSON text straight from the
// decoder's buffer, so that the text (up to 10 MB) is decoded once into the
// bytes kept, without a string copy of it first, as Token would make.
type b64Value struct {
	d      *jsonReader
	path   string
	budget int64
	out    []byte
}

func (v *b64Value) UnmarshalJSON(b []byte) error {
	d, path := v.d, v.path
	if b[0] != '"' {
		d.add(path, "must be a base64 string, not %s", kindOfValue(b[0]))
		return nil
	}
	text := b[1 : len(b)-1]
	if bytes.IndexByte(text, '\\') >= 0 {
		// Escapes are rare in base64 but valid JSON: unescape first.
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		text = []byte(s)
	}
	// The standard decoder skips CR and LF; the schema cannot, so neither
	// does Decode.
	if i := bytes.IndexAny(text, "\r\n"); i >= 0 {
		d.add(path, "must be standard base64 without line breaks; found one at offset %d", i)
		return nil
	}
	if v.budget > 0 {
		n := int64(len(text)) / 4 * 3
		if len(text) >= 2 && text[len(text)-1] == '=' {
			n -= 1 + int64(b2i(text[len(text)-2] == '='))
		}
		d.decoded += n
		if d.decoded > v.budget {
			d.add(path, "takes the attachments to %d bytes once decoded; together they can be at most %d, to fit Gmail's %d-byte message", d.decoded, v.budget, MaxMessageSize)
			return nil
		}
	}
	out := make([]byte, strictBase64.DecodedLen(len(text)))
	k, err := strictBase64.Decode(out, text)
	if err != nil {
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			d.add(path, "is not standard base64 with padding (RFC 4648 §4): bad input at offset %d", int64(corrupt))
		} else {
			d.add(path, "is not standard base64 with padding (RFC 4648 §4)")
		}
		return nil
	}
	v.out = out[:k]
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// kindOfValue names the kind of a JSON value from its first byte.
func kindOfValue(c byte) string {
	switch c {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	}
	return "a number"
}

func (d *jsonReader) unknown(path string) error {
	d.add(path, "unknown field")
	return d.skipValue()
}

// skipValue consumes the next value whole. Decode, unlike Token, runs
// encoding/json's scanner over it, which bounds its nesting; into a
// skipped it keeps nothing, so skipping allocates next to nothing.
func (d *jsonReader) skipValue() error {
	var v skipped
	if err := d.dec.Decode(&v); err != nil {
		return d.syntax(err)
	}
	return nil
}

// skip consumes the rest of a value whose first token was t, one member or
// element at a time.
func (d *jsonReader) skip(t json.Token) error {
	delim, ok := t.(json.Delim)
	if !ok {
		return nil
	}
	for d.dec.More() {
		if delim == '{' {
			if _, err := d.token(); err != nil { // the key
				return err
			}
		}
		if err := d.skipValue(); err != nil {
			return err
		}
	}
	_, err := d.token() // the closing delimiter
	return err
}

// skipped is a value read and thrown away.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

func (d *jsonReader) token() (json.Token, error) {
	t, err := d.dec.Token()
	if err != nil {
		return nil, d.syntax(err)
	}
	return t, nil
}

// syntax records a syntax error and returns errMalformed.
func (d *jsonReader) syntax(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		d.add("", "malformed JSON at byte %d: %v", d.syntaxOffset(se), se)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		d.add("", "malformed JSON: the input ends inside a value")
	default:
		d.add("", "malformed JSON: %v", err)
	}
	return errMalformed
}

// syntaxOffset is the index of the byte at fault. The Offset of an error
// json.Decoder finds inside a value counts only the bytes its scanner has
// read, not those Token stepped over, so the input, whose first error this
// is, is scanned again whole to place it.
func (d *jsonReader) syntaxOffset(se *json.SyntaxError) int64 {
	var v json.RawMessage
	var whole *json.SyntaxError
	if errors.As(json.Unmarshal(d.data, &v), &whole) && whole.Error() == se.Error() {
		// The scanner's Offset counts the byte at fault.
		return whole.Offset - 1
	}
	return se.Offset
}

func kindOf(t json.Token) string {
	switch t := t.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		return "an array"
	}
	return fmt.Sprintf("%T", t)
}
