package message

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/gmailrelay/gmailrelay/internal/jsonscan"
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
	if err := r.validate(true); err != nil {
		return nil, err
	}
	return r, nil
}

// errMalformed stops the walk: after a syntax error the token stream cannot
// be trusted, so no later problem is worth reporting.
var errMalformed = errors.New("malformed JSON")

// strictBase64 is built once: Strict returns a new Encoding on every call.
var strictBase64 = base64.StdEncoding.Strict()

// jsonReader walks the request token by token. It does so, rather than
// unmarshal into a struct, to match field names exactly, to see nulls and
// duplicate keys, and to name the path of every problem.
type jsonReader struct {
	dec jsonscan.Scanner
	p   problems
}

func decodeJSON(data []byte) (*Request, error) {
	d := &jsonReader{dec: jsonscan.New(data)}
	defer d.dec.Release()
	r := new(Request)
	if err := d.request(r); err != nil {
		if errors.Is(err, errMalformed) {
			return nil, d.p.err()
		}
		return nil, fmt.Errorf("message: decode: %w", err)
	}
	if err := d.p.err(); err != nil {
		return nil, err
	}
	return r, nil
}

func (d *jsonReader) request(r *Request) error {
	k, err := d.dec.Next()
	if errors.Is(err, io.EOF) {
		d.p.add("", "the send request is empty; expected a JSON object")
		return errMalformed
	}
	if err != nil {
		return d.syntax(err)
	}
	if k != jsonscan.BeginObject {
		d.p.add("", "the send request must be a JSON object, not %s", kindOf(k))
		return errMalformed
	}
	if err := d.members(path{}, r.field); err != nil {
		return err
	}
	if _, err := d.dec.Next(); !errors.Is(err, io.EOF) {
		d.p.add("", "unexpected data after the JSON object at byte %d", d.dec.InputOffset())
		return errMalformed
	}
	return nil
}

// field decodes the value of one top-level member.
func (r *Request) field(d *jsonReader, key string) error {
	var err error
	p := path{base: key}
	switch key {
	case "account":
		r.Account, err = d.str(p)
	case "from_name":
		r.FromName, err = d.str(p)
	case "to":
		r.To, err = d.strs(p)
	case "cc":
		r.Cc, err = d.strs(p)
	case "bcc":
		r.Bcc, err = d.strs(p)
	case "reply_to":
		r.ReplyTo, err = d.strs(p)
	case "subject":
		r.Subject, err = d.str(p)
	case "text":
		r.Text, err = d.str(p)
	case "html":
		r.HTML, err = d.str(p)
	case "attachments":
		err = d.array(p, func(p path) error {
			var a Attachment
			ok, err := d.object(p, func(d *jsonReader, key string) error {
				return a.field(d, p, key)
			})
			if ok {
				r.Attachments = append(r.Attachments, a)
			}
			return err
		})
	case "headers":
		_, err = d.object(p, func(d *jsonReader, name string) error {
			v, err := d.str(p.member(name))
			if r.Headers == nil {
				r.Headers = make(map[string]string)
			}
			r.Headers[name] = v
			return err
		})
	case "in_reply_to":
		r.InReplyTo, err = d.str(p)
	case "references":
		r.References, err = d.strs(p)
	case "thread_id":
		r.ThreadID, err = d.str(p)
	case "raw":
		r.Raw, err = d.base64(p)
	case "idempotency_key":
		r.IdempotencyKey, err = d.str(p)
	default:
		err = d.unknown(p)
	}
	return err
}

// field decodes one member of the attachment at p.
func (a *Attachment) field(d *jsonReader, p path, key string) error {
	var err error
	f := p.member(key)
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

// path names a value of the request in problems, such as "to[3]",
// "attachments[0].data" or `headers["X-Id"]`. It is kept in parts and
// spelled out only when a problem is reported, which almost no value has.
type path struct {
	kind  pathKind
	base  string // a member of the request; "" for the request itself
	index int    // the element of base, for pathElem and pathElemKey
	key   string // the member of that element, or of headers
}

type pathKind uint8

const (
	pathField   pathKind = iota // base
	pathElem                    // base[index]
	pathElemKey                 // base[index].key
	pathHeader                  // base["key"], for headers
	pathText                    // base, spelled out already
)

func (p path) String() string {
	switch p.kind {
	case pathElem:
		return p.base + "[" + strconv.Itoa(p.index) + "]"
	case pathElemKey:
		return p.base + "[" + strconv.Itoa(p.index) + "]." + p.key
	case pathHeader:
		return fmt.Sprintf("%s[%q]", p.base, p.key)
	}
	return p.base
}

// elem is the path of element i of the array at p.
func (p path) elem(i int) path {
	if p.kind != pathField {
		return path{kind: pathText, base: fmt.Sprintf("%s[%d]", p, i)}
	}
	return path{kind: pathElem, base: p.base, index: i}
}

// member is the path of the member key of the object at p.
func (p path) member(key string) path {
	switch {
	case p.kind == pathField && p.base == "":
		return path{base: key}
	case p.kind == pathField && p.base == "headers":
		return path{kind: pathHeader, base: p.base, key: key}
	case p.kind == pathElem:
		return path{kind: pathElemKey, base: p.base, index: p.index, key: key}
	}
	return path{kind: pathText, base: p.String() + "." + key}
}

// keySet remembers the keys of one object, to catch duplicates. Objects in a
// request have a handful of keys, which a linear search finds faster than a
// map, and without allocating; a hostile object with thousands gets a map.
type keySet struct {
	small [32]string
	n     int
	big   map[string]struct{}
}

// add adds key, reporting false if it was there already.
func (s *keySet) add(key string) bool {
	if s.big != nil {
		if _, ok := s.big[key]; ok {
			return false
		}
		s.big[key] = struct{}{}
		return true
	}
	for _, k := range s.small[:s.n] {
		if k == key {
			return false
		}
	}
	if s.n < len(s.small) {
		s.small[s.n] = key
		s.n++
		return true
	}
	s.big = make(map[string]struct{}, 2*len(s.small))
	for _, k := range s.small {
		s.big[k] = struct{}{}
	}
	s.big[key] = struct{}{}
	return true
}

// members reads the members of an object whose "{" has been read, through
// its "}". Each value is handed to fn, except those of repeated keys.
func (d *jsonReader) members(p path, fn func(d *jsonReader, key string) error) error {
	var seen keySet
	for d.dec.More() {
		if _, err := d.token(); err != nil {
			return err
		}
		// The scanner returns only a string in key position.
		key := fieldName(d.dec.Value())
		if !seen.add(key) {
			d.p.add(p.member(key).String(), "appears more than once")
			if err := d.skipValue(); err != nil {
				return err
			}
			continue
		}
		if err := fn(d, key); err != nil {
			return err
		}
	}
	_, err := d.token() // "}"
	return err
}

// fieldName returns key as a string, without allocating for the names of
// the schema, which are most keys of most requests.
func fieldName(key []byte) string {
	switch string(key) {
	case "account":
		return "account"
	case "from_name":
		return "from_name"
	case "to":
		return "to"
	case "cc":
		return "cc"
	case "bcc":
		return "bcc"
	case "reply_to":
		return "reply_to"
	case "subject":
		return "subject"
	case "text":
		return "text"
	case "html":
		return "html"
	case "attachments":
		return "attachments"
	case "headers":
		return "headers"
	case "in_reply_to":
		return "in_reply_to"
	case "references":
		return "references"
	case "thread_id":
		return "thread_id"
	case "raw":
		return "raw"
	case "idempotency_key":
		return "idempotency_key"
	case "filename":
		return "filename"
	case "content_type":
		return "content_type"
	case "data":
		return "data"
	case "content_id":
		return "content_id"
	}
	return string(key)
}

// object reads an object value, reporting whether it was one.
func (d *jsonReader) object(p path, fn func(d *jsonReader, key string) error) (bool, error) {
	k, err := d.token()
	if err != nil {
		return false, err
	}
	if k != jsonscan.BeginObject {
		d.p.add(p.String(), "must be an object, not %s", kindOf(k))
		return false, d.skip(k)
	}
	return true, d.members(p, fn)
}

// array reads an array value, calling elem with the path of each element.
func (d *jsonReader) array(p path, elem func(p path) error) error {
	k, err := d.token()
	if err != nil {
		return err
	}
	if k != jsonscan.BeginArray {
		d.p.add(p.String(), "must be an array, not %s", kindOf(k))
		return d.skip(k)
	}
	for i := 0; d.dec.More(); i++ {
		if err := elem(p.elem(i)); err != nil {
			return err
		}
	}
	_, err = d.token() // "]"
	return err
}

func (d *jsonReader) str(p path) (string, error) {
	k, err := d.token()
	if err != nil {
		return "", err
	}
	if k == jsonscan.String {
		return string(d.dec.Value()), nil
	}
	d.p.add(p.String(), "must be a string, not %s", kindOf(k))
	return "", d.skip(k)
}

func (d *jsonReader) strs(p path) ([]string, error) {
	var out []string
	err := d.array(p, func(p path) error {
		s, err := d.str(p)
		out = append(out, s)
		return err
	})
	return out, err
}

func (d *jsonReader) base64(p path) ([]byte, error) {
	k, err := d.token()
	if err != nil {
		return nil, err
	}
	if k != jsonscan.String {
		d.p.add(p.String(), "must be a base64 string, not %s", kindOf(k))
		return nil, d.skip(k)
	}
	s := d.dec.Value()
	// The standard decoder skips CR and LF; the schema cannot, so neither
	// does Decode.
	if i := bytes.IndexAny(s, "\r\n"); i >= 0 {
		d.p.add(p.String(), "must be standard base64 without line breaks; found one at offset %d", i)
		return nil, nil
	}
	b := make([]byte, strictBase64.DecodedLen(len(s)))
	n, err := strictBase64.Decode(b, s)
	if err != nil {
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			d.p.add(p.String(), "is not standard base64 with padding (RFC 4648 §4): bad input at offset %d", int64(corrupt))
		} else {
			d.p.add(p.String(), "is not standard base64 with padding (RFC 4648 §4)")
		}
		return nil, nil
	}
	return b[:n], nil
}

func (d *jsonReader) unknown(p path) error {
	d.p.add(p.String(), "unknown field")
	return d.skipValue()
}

func (d *jsonReader) skipValue() error {
	k, err := d.token()
	if err != nil {
		return err
	}
	return d.skip(k)
}

// skip consumes the rest of a value whose first token was k.
func (d *jsonReader) skip(k jsonscan.Kind) error {
	if err := d.dec.SkipRest(k); err != nil {
		return d.syntax(err)
	}
	return nil
}

func (d *jsonReader) token() (jsonscan.Kind, error) {
	k, err := d.dec.Next()
	if err != nil {
		return 0, d.syntax(err)
	}
	return k, nil
}

// syntax records a syntax error and returns errMalformed.
func (d *jsonReader) syntax(err error) error {
	var se *jsonscan.SyntaxError
	switch {
	case errors.As(err, &se):
		d.p.add("", "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		d.p.add("", "malformed JSON: the input ends inside a value")
	default:
		d.p.add("", "malformed JSON: %v", err)
	}
	return errMalformed
}

func kindOf(k jsonscan.Kind) string {
	switch k {
	case jsonscan.Null:
		return "null"
	case jsonscan.True, jsonscan.False:
		return "a boolean"
	case jsonscan.Number:
		return "a number"
	case jsonscan.String:
		return "a string"
	case jsonscan.BeginObject:
		return "an object"
	case jsonscan.BeginArray:
		return "an array"
	}
	return fmt.Sprintf("token %d", k)
}
