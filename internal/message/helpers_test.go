package message

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"testing"

	gotextproto "github.com/emersion/go-message/textproto"
)

// node is a MIME entity read back from a composed message with the standard
// library, so that a bug in the writer is not mirrored by its own reader.
type node struct {
	mediaType   string
	params      map[string]string
	disposition string
	filename    string
	contentID   string
	encoding    string
	keys        []string // header names, canonical case
	body        []byte   // after transfer decoding
	parts       []*node
}

// shape renders the tree as "multipart/mixed(text/plain,application/pdf)".
func (n *node) shape() string {
	if len(n.parts) == 0 {
		return n.mediaType
	}
	kids := make([]string, len(n.parts))
	for i, p := range n.parts {
		kids[i] = p.shape()
	}
	return n.mediaType + "(" + strings.Join(kids, ",") + ")"
}

// leaves returns the leaf entities in order.
func (n *node) leaves() []*node {
	if len(n.parts) == 0 {
		return []*node{n}
	}
	var out []*node
	for _, p := range n.parts {
		out = append(out, p.leaves()...)
	}
	return out
}

var wordDecoder = new(mime.WordDecoder)

func readEntity(h textproto.MIMEHeader, body io.Reader) (*node, error) {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("Content-Type %q: %w", ct, err)
	}
	n := &node{mediaType: mt, params: params, contentID: h.Get("Content-Id"), encoding: strings.ToLower(h.Get("Content-Transfer-Encoding"))}
	for k := range h {
		n.keys = append(n.keys, k)
	}
	slices.Sort(n.keys)
	if cd := h.Get("Content-Disposition"); cd != "" {
		disp, dparams, err := mime.ParseMediaType(cd)
		if err != nil {
			return nil, fmt.Errorf("Content-Disposition %q: %w", cd, err)
		}
		n.disposition = disp
		if n.filename, err = wordDecoder.DecodeHeader(dparams["filename"]); err != nil {
			return nil, fmt.Errorf("filename: %w", err)
		}
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", mt, err)
			}
			child, err := readEntity(p.Header, p)
			if err != nil {
				return nil, err
			}
			n.parts = append(n.parts, child)
		}
		return n, nil
	}
	switch n.encoding {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	case "", "7bit", "8bit":
	default:
		return nil, fmt.Errorf("unexpected transfer encoding %q", n.encoding)
	}
	if n.body, err = io.ReadAll(body); err != nil {
		return nil, fmt.Errorf("%s body: %w", mt, err)
	}
	return n, nil
}

// parsed is a whole message read back.
type parsed struct {
	header mail.Header
	keys   []string // header field names in wire order, canonical case
	root   *node
}

func parseMessage(t testing.TB, raw []byte) *parsed {
	t.Helper()
	p, err := parseMessageErr(raw)
	if err != nil {
		t.Fatalf("composed message does not parse: %v\n%s", err, raw)
	}
	return p
}

func parseMessageErr(raw []byte) (*parsed, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("net/mail: %w", err)
	}
	root, err := readEntity(textproto.MIMEHeader(msg.Header), msg.Body)
	if err != nil {
		return nil, err
	}
	// net/mail keeps a map; go-message's reader keeps the order.
	gh, err := gotextproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("go-message: %w", err)
	}
	var keys []string
	for f := gh.Fields(); f.Next(); {
		keys = append(keys, textproto.CanonicalMIMEHeaderKey(f.Key()))
	}
	if len(keys) != countValues(msg.Header) {
		return nil, fmt.Errorf("parsers disagree on the header: go-message sees %v, net/mail %v", keys, msg.Header)
	}
	return &parsed{header: msg.Header, keys: keys, root: root}, nil
}

func countValues(h mail.Header) int {
	n := 0
	for _, v := range h {
		n += len(v)
	}
	return n
}

// keySet returns the sorted distinct header names.
func (p *parsed) keySet() []string {
	keys := slices.Clone(p.keys)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// text decodes an unstructured header such as Subject.
func (p *parsed) text(t testing.TB, key string) string {
	t.Helper()
	v, err := wordDecoder.DecodeHeader(p.header.Get(key))
	if err != nil {
		t.Fatalf("%s %q: %v", key, p.header.Get(key), err)
	}
	return v
}

// addresses returns the addresses of an address header as "Name <addr>"
// strings, or bare addresses when there is no name.
func (p *parsed) addresses(t testing.TB, key string) []string {
	t.Helper()
	if p.header.Get(key) == "" {
		return nil
	}
	list, err := p.header.AddressList(key)
	if err != nil {
		t.Fatalf("%s %q: %v", key, p.header.Get(key), err)
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.Address
		if a.Name != "" {
			out[i] = a.Name + " <" + a.Address + ">"
		}
	}
	return out
}

// recipientsOf returns the bare addresses in To, Cc and Bcc.
func (p *parsed) recipientsOf() ([]string, error) {
	var out []string
	for _, key := range []string{"To", "Cc", "Bcc"} {
		if p.header.Get(key) == "" {
			continue
		}
		list, err := p.header.AddressList(key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		for _, a := range list {
			out = append(out, a.Address)
		}
	}
	return out, nil
}

// crlf is what quoted-printable text reads back as: every line break CRLF.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// expectedKeys is the set of header names Compose must emit for r, sorted.
func expectedKeys(r *Request) []string {
	keys := []string{"From", "Date", "Message-Id", "Mime-Version", "Content-Type"}
	for _, f := range []struct {
		key string
		set bool
	}{
		{"To", len(r.To) > 0},
		{"Cc", len(r.Cc) > 0},
		{"Bcc", len(r.Bcc) > 0},
		{"Reply-To", len(r.ReplyTo) > 0},
		{"Subject", r.Subject != ""},
		{"In-Reply-To", r.InReplyTo != ""},
		{"References", len(r.References) > 0},
		// Only a single-part message has its transfer encoding at the top.
		{"Content-Transfer-Encoding", len(r.Attachments) == 0 && (r.Text == "" || r.HTML == "")},
	} {
		if f.set {
			keys = append(keys, f.key)
		}
	}
	for k := range r.Headers {
		// Composition refuses any other custom header, so one in the output
		// would be an injection.
		if allowedHeader(k) {
			keys = append(keys, textproto.CanonicalMIMEHeaderKey(k))
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// partKeysAllowed are the only header names a body part may have.
var partKeysAllowed = []string{"Content-Disposition", "Content-Id", "Content-Transfer-Encoding", "Content-Type"}

// checkPartKeys reports a body part below n whose header has a name outside
// partKeysAllowed. n itself is the message, whose header is checked apart.
func checkPartKeys(n *node) error {
	for _, c := range n.parts {
		for _, k := range c.keys {
			if !slices.Contains(partKeysAllowed, k) {
				return fmt.Errorf("%s part has a %q header", c.mediaType, k)
			}
		}
		if err := checkPartKeys(c); err != nil {
			return err
		}
	}
	return nil
}

// validRequest is the smallest request that passes Validate.
func validRequest() *Request {
	return &Request{
		Account: "alice@example.com",
		To:      []string{"bob@example.org"},
		Subject: "Invoice 42",
		Text:    "plain body",
	}
}

// problemFields returns the fields of the problems of a *ValidationError.
func problemFields(t testing.TB, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.Field
	}
	return out
}
