package message

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"mime"
	"net/mail"
	stdtextproto "net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// goMessageCompose is how compose made a message before it wrote headers
// and boundaries itself: go-message's header type, field order, folding
// and Writer, which also encodes every leaf. It is the oracle that
// TestComposeMatchesGoMessage and FuzzCompose hold compose to. It panics
// where go-message does: on a custom header name of 74 characters or more.
func goMessageCompose(r *Request, now time.Time, msgID string, newBoundary func() string) ([]byte, error) {
	root, err := goMessageTree(r, newBoundary)
	if err != nil {
		return nil, err
	}
	// go-message writes the fields set last first.
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
	names := slices.SortedFunc(maps.Keys(r.Headers), func(a, b string) int {
		return strings.Compare(strings.ToLower(a), strings.ToLower(b))
	})
	for _, name := range slices.Backward(names) {
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
		if len(l.list) > 0 {
			addrs, err := parseAddresses(l.key, l.list)
			if err != nil {
				return nil, err
			}
			h.Set(l.key, formatAddressList(addrs))
		}
	}
	h.Set("From", formatAddressList([]*mail.Address{{Name: r.FromName, Address: r.Account}}))

	var out bytes.Buffer
	w, err := gomessage.CreateWriter(&out, h.Header)
	if err != nil {
		return nil, err
	}
	if err := goMessageWriteBody(w, root); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// goPart is one entity of goMessageCompose's tree.
type goPart struct {
	header   gomessage.Header
	text     string
	data     []byte
	children []*goPart
}

func goMessageTree(r *Request, newBoundary func() string) (*goPart, error) {
	textPart := func(mt, s string) *goPart {
		p := &goPart{text: s}
		p.header.Add("Content-Transfer-Encoding", "quoted-printable")
		p.header.SetContentType(mt, map[string]string{"charset": "utf-8"})
		return p
	}
	container := func(mt string, children []*goPart) *goPart {
		params := map[string]string{"boundary": newBoundary()}
		if mt == "multipart/related" {
			params["type"] = "text/html"
		}
		p := &goPart{children: children}
		p.header.SetContentType(mt, params)
		return p
	}
	var html *goPart
	if r.HTML != "" {
		html = textPart("text/html", r.HTML)
	}
	var inline, attached []*goPart
	for i, a := range r.Attachments {
		mt, params, err := mime.ParseMediaType(a.ContentType)
		if err != nil {
			return nil, fmt.Errorf("attachments[%d]: %w", i, err)
		}
		p := &goPart{data: a.Data}
		p.header.Add("Content-Transfer-Encoding", "base64")
		disposition := "attachment"
		if a.ContentID != "" {
			disposition = "inline"
		}
		p.header.SetContentDisposition(disposition, map[string]string{"filename": a.Filename})
		if a.ContentID != "" {
			p.header.Add("Content-Id", "<"+a.ContentID+">")
			inline = append(inline, p)
		} else {
			attached = append(attached, p)
		}
		p.header.SetContentType(mt, params)
	}
	if len(inline) > 0 {
		html = container("multipart/related", append([]*goPart{html}, inline...))
	}
	var body *goPart
	switch {
	case r.Text != "" && html != nil:
		body = container("multipart/alternative", []*goPart{textPart("text/plain", r.Text), html})
	case html != nil:
		body = html
	default:
		body = textPart("text/plain", r.Text)
	}
	if len(attached) > 0 {
		body = container("multipart/mixed", append([]*goPart{body}, attached...))
	}
	return body, nil
}

// goMessageWriteBody writes an entity tree through go-message's Writer,
// which encodes each leaf itself.
func goMessageWriteBody(w *gomessage.Writer, p *goPart) error {
	for _, c := range p.children {
		cw, err := w.CreatePart(c.header)
		if err != nil {
			return err
		}
		if err := goMessageWriteBody(cw, c); err != nil {
			return err
		}
	}
	if len(p.children) == 0 {
		body := p.data
		if body == nil {
			body = []byte(p.text)
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	return w.Close()
}

// boundarySeq returns a boundary source that yields the same sequence to
// each of its callers' copies, so that two writers can be compared byte
// for byte.
func boundarySeq() func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("=_%032d", n)
	}
}

// matchesGoMessage fails t unless compose and go-message write the same
// bytes for r. r must be valid and its custom header names shorter than
// 74 characters, where go-message panics.
func matchesGoMessage(t testing.TB, name string, r *Request) {
	t.Helper()
	got, err := composeWith(r, ComposeOptions{Now: testNow, MessageIDKey: "k"}, boundarySeq())
	if err != nil {
		t.Fatalf("%s: compose: %v", name, err)
	}
	// MessageID("k", domain) for the oracle, which takes the ID as made.
	_, domain, _ := cutLastAt(r.Account)
	want, err := goMessageCompose(r, testNow, MessageID("k", domain), boundarySeq())
	if err != nil {
		t.Fatalf("%s: go-message: %v", name, err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Errorf("%s: compose differs from go-message at byte %d of %d/%d:\n got …%q\nwant …%q",
			name, i, len(got), len(want), got[max(i-40, 0):min(i+40, len(got))], want[max(i-40, 0):min(i+40, len(want))])
	}
}

// TestComposeMatchesGoMessage: the whole message, header folding, field
// order, boundaries and encodings included, is byte for byte what
// go-message made of the same request.
func TestComposeMatchesGoMessage(t *testing.T) {
	t.Parallel()
	big := make([]byte, 3*encodeChunk+5)
	for i := range big {
		big[i] = byte(i * 7)
	}
	cases := map[string]func(r *Request){
		"bench": func(r *Request) {},
		"attachments": func(r *Request) {
			r.Attachments = []Attachment{
				{Filename: "a.pdf", ContentType: "application/pdf", Data: big},
				{Filename: "logo.png", ContentType: "image/png", ContentID: "logo@x", Data: []byte{0x89, 'P', 'N', 'G'}},
				{Filename: "Grüße übers Jahr.txt", ContentType: "text/plain; charset=utf-8", Data: []byte("ü")},
				{Filename: `quote " and \ backslash.bin`, ContentType: "application/octet-stream", Data: []byte("x")},
			}
		},
		"long text": func(r *Request) {
			r.Text = strings.Repeat("a line of text with trailing space \n", 5000)
			r.HTML = ""
		},
		"html only":             func(r *Request) { r.Text = "" },
		"text only, no subject": func(r *Request) { r.HTML, r.Subject = "", "" },
		"folded subject": func(r *Request) {
			r.Subject = strings.Repeat("A long subject that goes on and on ", 12)
		},
		"encoded subject": func(r *Request) {
			r.Subject = strings.Repeat("Grüße aus Köln, schöne Tage! ", 10)
		},
		"unbreakable subject":     func(r *Request) { r.Subject = strings.Repeat("x", 300) + " y" },
		"tabs and doubled blanks": func(r *Request) { r.Subject = "a\t\tb  c   " + strings.Repeat("d ", 60) },
		"many recipients": func(r *Request) {
			for i := range 40 {
				r.To = append(r.To, fmt.Sprintf("Recipient Number %d <r%d@example.org>", i, i))
				r.Bcc = append(r.Bcc, fmt.Sprintf("b%d@example.net", i))
			}
			r.ReplyTo = []string{`"Quoted, Name" <reply@example.org>`, "Zoë <zoe@example.org>"}
		},
		"threading": func(r *Request) {
			r.InReplyTo = "<parent@example.org>"
			for i := range 30 {
				r.References = append(r.References, fmt.Sprintf("<ref-%d-%s@example.org>", i, strings.Repeat("r", i)))
			}
		},
		"custom headers": func(r *Request) {
			r.Headers = map[string]string{
				"X-Empty": "", "x-lower-case": "v", "List-Unsubscribe": "<mailto:u@example.org>, <https://example.org/u?id=" + strings.Repeat("9", 80) + ">",
				"List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "X-" + strings.Repeat("n", 71): "short value",
				"X-" + strings.Repeat("m", 60): strings.Repeat("word ", 40),
			}
		},
		"display names": func(r *Request) {
			r.FromName = `Dr. "Quote" O'Brien, Jr.`
			r.To = []string{`"Jörg \\ Backslash" <j@example.org>`, "=?utf-8?q?Encoded?= <e@example.org>", "plain@example.org"}
		},
	}
	for name, mutate := range cases {
		r := benchRequest()
		mutate(r)
		if err := r.Validate(); err != nil {
			t.Fatalf("%s: invalid request: %v", name, err)
		}
		matchesGoMessage(t, name, r)
	}
}

// goMessageField is what go-message writes for one header field.
func goMessageField(name, value string) (string, error) {
	var h textproto.Header
	h.Add(name, value)
	var b bytes.Buffer
	if err := textproto.WriteHeader(&b, h); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\r\n"), nil
}

// FuzzAppendField: appendField folds every value as go-message does, for
// the names go-message can write (under 74 characters).
func FuzzAppendField(f *testing.F) {
	f.Add("Subject", "a b")
	f.Add("X-"+strings.Repeat("n", 71), strings.Repeat("word ", 30))
	f.Add("To", strings.Repeat("x", 90)+" "+strings.Repeat("y", 1000)+"\t z")
	f.Add("References", "  \t  "+strings.Repeat("<a@b> ", 40)+" ")
	f.Fuzz(func(t *testing.T, name, value string) {
		name = stdtextproto.CanonicalMIMEHeaderKey(name)
		if !isFieldName(name) || len(name) >= 74 || indexControl(value) >= 0 {
			return
		}
		want, err := goMessageField(name, value)
		if err != nil {
			t.Fatalf("go-message: %v", err)
		}
		if got := string(appendField(nil, name, value)); got != want {
			t.Errorf("appendField(%q, %q)\n = %q\nwant %q", name, value, got, want)
		}
	})
}

// TestAppendFieldLongName: names too long for go-message (74 characters
// and more; a custom header name may have 96) fold without panicking, and
// a reader gets the value back.
func TestAppendFieldLongName(t *testing.T) {
	t.Parallel()
	for _, n := range []int{73, 74, 75, 76, 80, 96, 200} {
		name := "X-" + strings.Repeat("n", n-2)
		for _, value := range []string{"", "v", "v w", "abc", " lead", strings.Repeat("word ", 180), strings.Repeat("z", 790) + " q"} {
			if len(name)+2+longestWord(value) > maxLineLen {
				continue // checkFields refuses it: no fold could keep the word whole
			}
			out := string(appendField(nil, name, value)) + "\r\n"
			for i, line := range strings.Split(strings.TrimSuffix(out, "\r\n\r\n"), "\r\n") {
				if len(line) > maxLineLen || (i > 0 && line[0] != ' ' && line[0] != '\t') {
					t.Fatalf("name of %d, value %.20q: line %d is %d bytes or not a continuation: %.40q", n, value, i, len(line), line)
				}
			}
			h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(out)))
			if err != nil {
				t.Fatalf("name of %d, value %.20q: %v", n, value, err)
			}
			// Unfolding keeps the blank of each fold; readers trim the ends.
			if got, want := strings.Join(strings.Fields(h.Get(name)), " "), strings.Join(strings.Fields(value), " "); got != want {
				t.Errorf("name of %d: value reads back as %.40q, want %.40q", n, got, want)
			}
		}
	}
}

// TestComposeLongHeaderName: a request with a 96-character custom header
// name, which Validate allows, composes (go-message panicked on it) and
// keeps the header.
func TestComposeLongHeaderName(t *testing.T) {
	t.Parallel()
	name := "X-" + strings.Repeat("Long", MaxHeaderNameLen/4)[:MaxHeaderNameLen-2]
	r := benchRequest()
	r.Headers = map[string]string{name: "one two three"}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	out, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if got := parseMessage(t, out).header.Get(name); strings.Join(strings.Fields(got), " ") != "one two three" {
		t.Errorf("%s = %q", name, got)
	}
}
