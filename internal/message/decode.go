package message

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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
}

func decodeJSON(data []byte) (*Request, error) {
	d := &jsonReader{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	// A number too large for a float64 is still a number of the wrong
	// type, not malformed JSON.
	d.dec.UseNumber()
	r := new(Request)
	if err := d.request(r); err != nil {
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
		d.p.add("", "the send request is empty; expected a JSON object")
		return errMalformed
	}
	if err != nil {
		return d.syntax(err)
	}
	if t != json.Delim('{') {
		d.p.add("", "the send request must be a JSON object, not %s", kindOf(t))
		return errMalformed
	}
	if err := d.members("", r.field); err != nil {
		return err
	}
	if _, err := d.dec.Token(); !errors.Is(err, io.EOF) {
		d.p.add("", "unexpected data after the JSON object at byte %d", d.dec.InputOffset())
		return errMalformed
	}
	return nil
}

// field decodes the value of one top-level member.
func (r *Request) field(d *jsonReader, key string) error {
	var err error
	switch key {
	case "account":
		r.Account, err = d.str(key)
	case "from_name":
		r.FromName, err = d.str(key)
	case "to":
		r.To, err = d.strs(key)
	case "cc":
		r.Cc, err = d.strs(key)
	case "bcc":
		r.Bcc, err = d.strs(key)
	case "reply_to":
		r.ReplyTo, err = d.strs(key)
	case "subject":
		r.Subject, err = d.str(key)
	case "text":
		r.Text, err = d.str(key)
	case "html":
		r.HTML, err = d.str(key)
	case "attachments":
		err = d.array(key, func(path string) error {
			var a Attachment
			ok, err := d.object(path, func(d *jsonReader, key string) error {
				return a.field(d, path, key)
			})
			if ok {
				r.Attachments = append(r.Attachments, a)
			}
			return err
		})
	case "headers":
		_, err = d.object(key, func(d *jsonReader, name string) error {
			v, err := d.str(join(key, name))
			if r.Headers == nil {
				r.Headers = make(map[string]string)
			}
			r.Headers[name] = v
			return err
		})
	case "in_reply_to":
		r.InReplyTo, err = d.str(key)
	case "references":
		r.References, err = d.strs(key)
	case "thread_id":
		r.ThreadID, err = d.str(key)
	case "raw":
		r.Raw, err = d.base64(key)
	case "idempotency_key":
		r.IdempotencyKey, err = d.str(key)
	default:
		err = d.unknown(key)
	}
	return err
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
		a.Data, err = d.base64(f)
	case "content_id":
		a.ContentID, err = d.str(f)
	default:
		err = d.unknown(f)
	}
	return err
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
// its "}". Each value is handed to fn, except those of repeated keys.
func (d *jsonReader) members(path string, fn func(d *jsonReader, key string) error) error {
	seen := make(map[string]bool)
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return err
		}
		key, _ := t.(string) // Token returns only strings in key position
		if seen[key] {
			d.p.add(join(path, key), "appears more than once")
			if err := d.skipValue(); err != nil {
				return err
			}
			continue
		}
		seen[key] = true
		if err := fn(d, key); err != nil {
			return err
		}
	}
	_, err := d.token() // "}"
	return err
}

// object reads an object value, reporting whether it was one.
func (d *jsonReader) object(path string, fn func(d *jsonReader, key string) error) (bool, error) {
	t, err := d.token()
	if err != nil {
		return false, err
	}
	if t != json.Delim('{') {
		d.p.add(path, "must be an object, not %s", kindOf(t))
		return false, d.skip(t)
	}
	return true, d.members(path, fn)
}

// array reads an array value, calling elem with the path of each element.
func (d *jsonReader) array(path string, elem func(path string) error) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != json.Delim('[') {
		d.p.add(path, "must be an array, not %s", kindOf(t))
		return d.skip(t)
	}
	for i := 0; d.dec.More(); i++ {
		if err := elem(fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	_, err = d.token() // "]"
	return err
}

func (d *jsonReader) str(path string) (string, error) {
	t, err := d.token()
	if err != nil {
		return "", err
	}
	if s, ok := t.(string); ok {
		return s, nil
	}
	d.p.add(path, "must be a string, not %s", kindOf(t))
	return "", d.skip(t)
}

func (d *jsonReader) strs(path string) ([]string, error) {
	var out []string
	err := d.array(path, func(p string) error {
		s, err := d.str(p)
		out = append(out, s)
		return err
	})
	return out, err
}

func (d *jsonReader) base64(path string) ([]byte, error) {
	t, err := d.token()
	if err != nil {
		return nil, err
	}
	s, ok := t.(string)
	if !ok {
		d.p.add(path, "must be a base64 string, not %s", kindOf(t))
		return nil, d.skip(t)
	}
	// The standard decoder skips CR and LF; the schema cannot, so neither
	// does Decode.
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		d.p.add(path, "must be standard base64 without line breaks; found one at offset %d", i)
		return nil, nil
	}
	b, err := strictBase64.DecodeString(s)
	if err != nil {
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			d.p.add(path, "is not standard base64 with padding (RFC 4648 §4): bad input at offset %d", int64(corrupt))
		} else {
			d.p.add(path, "is not standard base64 with padding (RFC 4648 §4)")
		}
		return nil, nil
	}
	return b, nil
}

func (d *jsonReader) unknown(path string) error {
	d.p.add(path, "unknown field")
	return d.skipValue()
}

// skipValue consumes the next value whole. Decode, unlike Token, runs
// encoding/json's scanner over it, which bounds its nesting.
func (d *jsonReader) skipValue() error {
	var v json.RawMessage
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
		d.p.add("", "malformed JSON at byte %d: %v", d.syntaxOffset(se), se)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		d.p.add("", "malformed JSON: the input ends inside a value")
	default:
		d.p.add("", "malformed JSON: %v", err)
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
