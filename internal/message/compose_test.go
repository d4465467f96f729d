package message

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.FixedZone("", 2*3600))

// leafWant is what one leaf of the composed tree must be.
type leafWant struct {
	mediaType   string
	charset     string
	disposition string
	filename    string
	contentID   string
	encoding    string
	body        []byte
}

func TestCompose(t *testing.T) {
	t.Parallel()
	pdf := []byte("%PDF-1.7\n\x00\x01\xfe\xff binary")
	png := []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0}
	all := make([]byte, 256*3+1) // every byte value, and a length that needs padding
	for i := range all {
		all[i] = byte(i)
	}
	text := func(s string) leafWant {
		return leafWant{mediaType: "text/plain", charset: "utf-8", encoding: "quoted-printable", body: []byte(crlf(s))}
	}
	html := func(s string) leafWant {
		return leafWant{mediaType: "text/html", charset: "utf-8", encoding: "quoted-printable", body: []byte(crlf(s))}
	}
	file := func(mt, name string, data []byte) leafWant {
		return leafWant{mediaType: mt, disposition: "attachment", filename: name, encoding: "base64", body: data}
	}
	inline := func(mt, name, cid string, data []byte) leafWant {
		return leafWant{mediaType: mt, disposition: "inline", filename: name, contentID: "<" + cid + ">", encoding: "base64", body: data}
	}
	baseKeys := []string{"Date", "From", "Message-Id", "Mime-Version", "Subject", "To", "Content-Type"}

	cases := []struct {
		name   string
		req    *Request
		shape  string
		leaves []leafWant
		keys   []string // header names beyond baseKeys
	}{
		{
			name:   "text only",
			req:    &Request{Text: "Hello\nsecond line\r\nthird = line\rfourth, trailing space \n"},
			shape:  "text/plain",
			leaves: []leafWant{text("Hello\nsecond line\r\nthird = line\rfourth, trailing space \n")},
			keys:   []string{"Content-Transfer-Encoding"},
		},
		{
			name:   "html only",
			req:    &Request{HTML: "<p>Grüße, " + strings.Repeat("long line ", 30) + "</p>"},
			shape:  "text/html",
			leaves: []leafWant{html("<p>Grüße, " + strings.Repeat("long line ", 30) + "</p>")},
			keys:   []string{"Content-Transfer-Encoding"},
		},
		{
			name:   "alternative",
			req:    &Request{Text: "plain", HTML: "<b>rich</b>"},
			shape:  "multipart/alternative(text/plain,text/html)",
			leaves: []leafWant{text("plain"), html("<b>rich</b>")},
		},
		{
			name:   "text with attachment",
			req:    &Request{Text: "see attached", Attachments: []Attachment{{Filename: "invoice.pdf", ContentType: "application/pdf", Data: pdf}}},
			shape:  "multipart/mixed(text/plain,application/pdf)",
			leaves: []leafWant{text("see attached"), file("application/pdf", "invoice.pdf", pdf)},
		},
		{
			name:   "html with inline image",
			req:    &Request{HTML: `<img src="cid:logo@acme">`, Attachments: []Attachment{{Filename: "logo.png", ContentType: "image/png", Data: png, ContentID: "logo@acme"}}},
			shape:  "multipart/related(text/html,image/png)",
			leaves: []leafWant{html(`<img src="cid:logo@acme">`), inline("image/png", "logo.png", "logo@acme", png)},
		},
		{
			name: "everything",
			req: &Request{
				Text: "plain", HTML: `<img src="cid:a"><img src="cid:b">`,
				Attachments: []Attachment{
					{Filename: "a.png", ContentType: "image/png", Data: png, ContentID: "a"},
					{Filename: "invoice.pdf", ContentType: "application/pdf", Data: pdf},
					{Filename: "b.gif", ContentType: "image/gif", Data: []byte("GIF89a"), ContentID: "b"},
					{Filename: "all.bin", ContentType: "application/octet-stream", Data: all},
				},
			},
			shape: "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png,image/gif)),application/pdf,application/octet-stream)",
			leaves: []leafWant{
				text("plain"), html(`<img src="cid:a"><img src="cid:b">`),
				inline("image/png", "a.png", "a", png), inline("image/gif", "b.gif", "b", []byte("GIF89a")),
				file("application/pdf", "invoice.pdf", pdf), file("application/octet-stream", "all.bin", all),
			},
		},
		{
			name: "non-ASCII file name and text attachment",
			req: &Request{Text: "x", Attachments: []Attachment{
				{Filename: "Résumé – 2026.pdf", ContentType: "application/pdf", Data: pdf},
				{Filename: "notes.txt", ContentType: "text/plain; charset=utf-8", Data: []byte("line\nline\n")},
			}},
			shape: "multipart/mixed(text/plain,application/pdf,text/plain)",
			leaves: []leafWant{
				text("x"), file("application/pdf", "Résumé – 2026.pdf", pdf),
				{mediaType: "text/plain", charset: "utf-8", disposition: "attachment", filename: "notes.txt", encoding: "base64", body: []byte("line\nline\n")},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.req
			r.Account = "alice@example.com"
			r.To = []string{"bob@example.org"}
			r.Subject = "Invoice 42"
			out, err := Compose(r, ComposeOptions{Now: testNow})
			if err != nil {
				t.Fatalf("Compose() = %v", err)
			}
			p := parseMessage(t, out)
			if got := p.root.shape(); got != tc.shape {
				t.Errorf("tree = %s, want %s", got, tc.shape)
			}
			wantKeys := append(slices.Clone(baseKeys), tc.keys...)
			slices.Sort(wantKeys)
			if got := p.keySet(); !slices.Equal(got, wantKeys) {
				t.Errorf("header names = %q, want %q", got, wantKeys)
			}
			leaves := p.root.leaves()
			if len(leaves) != len(tc.leaves) {
				t.Fatalf("%d leaves, want %d", len(leaves), len(tc.leaves))
			}
			for i, want := range tc.leaves {
				got := leaves[i]
				if got.mediaType != want.mediaType || got.params["charset"] != want.charset || got.disposition != want.disposition ||
					got.filename != want.filename || got.contentID != want.contentID || got.encoding != want.encoding {
					t.Errorf("leaf %d = {%s charset=%q %s %q %s %s}, want {%s charset=%q %s %q %s %s}", i,
						got.mediaType, got.params["charset"], got.disposition, got.filename, got.contentID, got.encoding,
						want.mediaType, want.charset, want.disposition, want.filename, want.contentID, want.encoding)
				}
				if !bytes.Equal(got.body, want.body) {
					t.Errorf("leaf %d body = %q, want %q", i, got.body, want.body)
				}
			}
			if strings.HasPrefix(tc.shape, "multipart/related") || strings.Contains(tc.shape, "multipart/related") {
				if !strings.Contains(string(out), `type="text/html"`) {
					t.Errorf("multipart/related lacks its type parameter (RFC 2387)")
				}
			}
		})
	}
}

func TestComposeHeaders(t *testing.T) {
	t.Parallel()
	r := &Request{
		Account:        "alice@example.com",
		FromName:       "Zoë at Acme",
		To:             []string{"Bob <bob@example.org>", "=?utf-8?q?J=C3=B6rg?= <jorg@example.de>", "plain@example.org"},
		Cc:             []string{`"Smith, Carol" <carol@example.org>`},
		Bcc:            []string{"dave@example.org"},
		ReplyTo:        []string{"Support <support@example.com>"},
		Subject:        "Rechnung Nr. 42 – bitte prüfen " + strings.Repeat("lang ", 30),
		Text:           "x",
		Headers:        map[string]string{"X-Order-Id": "42", "list-unsubscribe": "<https://example.com/u/1>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
		InReplyTo:      "<orig@example.com>",
		References:     []string{"<root@example.com>", "<orig@example.com>"},
		IdempotencyKey: "order-42-invoice",
	}
	out, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		t.Fatalf("Compose() = %v", err)
	}
	p := parseMessage(t, out)

	wantOrder := []string{"From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-Id", "In-Reply-To", "References",
		"List-Unsubscribe", "List-Unsubscribe-Post", "X-Order-Id", "Mime-Version", "Content-Type", "Content-Transfer-Encoding"}
	if !slices.Equal(p.keys, wantOrder) {
		t.Errorf("header order = %q, want %q", p.keys, wantOrder)
	}
	for _, c := range []struct {
		key  string
		want []string
	}{
		{"From", []string{"Zoë at Acme <alice@example.com>"}},
		{"To", []string{"Bob <bob@example.org>", "Jörg <jorg@example.de>", "plain@example.org"}},
		{"Cc", []string{"Smith, Carol <carol@example.org>"}},
		{"Bcc", []string{"dave@example.org"}},
		{"Reply-To", []string{"Support <support@example.com>"}},
	} {
		if got := p.addresses(t, c.key); !slices.Equal(got, c.want) {
			t.Errorf("%s = %q, want %q", c.key, got, c.want)
		}
	}
	if got := p.text(t, "Subject"); got != r.Subject {
		t.Errorf("Subject = %q, want %q", got, r.Subject)
	}
	date, err := p.header.Date()
	if err != nil || !date.Equal(testNow) {
		t.Errorf("Date = %v, %v; want %v", date, err, testNow)
	}
	for key, want := range map[string]string{
		"Message-Id":            MessageID("order-42-invoice", "example.com"),
		"In-Reply-To":           "<orig@example.com>",
		"References":            "<root@example.com> <orig@example.com>",
		"X-Order-Id":            "42",
		"List-Unsubscribe":      "<https://example.com/u/1>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"Mime-Version":          "1.0",
	} {
		if got := p.header.Get(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	// RFC 5322 §2.1.1: no line over 998 octets, and folding keeps 78 where it can.
	for i, line := range strings.Split(string(out), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line %d is %d octets", i, len(line))
		}
	}
}

func TestComposeNoSubject(t *testing.T) {
	t.Parallel()
	r := validRequest()
	r.Subject = ""
	out, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if p := parseMessage(t, out); slices.Contains(p.keys, "Subject") {
		t.Errorf("an empty subject produced a Subject header: %q", p.keys)
	}
}

func TestComposeLongUnbreakableSubject(t *testing.T) {
	t.Parallel()
	// An ASCII subject without spaces at the limit must neither be split
	// (which would add a space) nor exceed the 998-octet line.
	r := validRequest()
	r.Subject = strings.Repeat("s", MaxSubjectLen)
	out, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if got := parseMessage(t, out).text(t, "Subject"); got != r.Subject {
		t.Errorf("Subject read back is %d characters, want %d unchanged", len(got), len(r.Subject))
	}
}

var messageIDPattern = regexp.MustCompile(`^<[0-9a-f]{32}@[^<>@\s]+>$`)

func TestMessageID(t *testing.T) {
	t.Parallel()
	a := MessageID("order-42", "example.com")
	if a != MessageID("order-42", "example.com") {
		t.Error("MessageID is not deterministic")
	}
	if !messageIDPattern.MatchString(a) {
		t.Errorf("MessageID = %q, want <32 hex digits@domain>", a)
	}
	if a == MessageID("order-43", "example.com") {
		t.Error("different keys gave the same Message-ID")
	}
	if b := MessageID("order-42", "mail.example.net"); !strings.HasSuffix(b, "@mail.example.net>") || b[:33] != a[:33] {
		t.Errorf("MessageID with another domain = %q, want the same left side as %q", b, a)
	}
	if strings.Contains(a, "order-42") {
		t.Errorf("MessageID %q exposes the idempotency key", a)
	}
}

func TestComposeMessageID(t *testing.T) {
	t.Parallel()
	compose := func(key, domain string) string {
		t.Helper()
		r := validRequest()
		r.IdempotencyKey = key
		out, err := Compose(r, ComposeOptions{Now: testNow, MessageIDDomain: domain})
		if err != nil {
			t.Fatal(err)
		}
		return parseMessage(t, out).header.Get("Message-Id")
	}
	if got, want := compose("k1", ""), MessageID("k1", "example.com"); got != want {
		t.Errorf("Message-Id = %q, want %q (account's domain)", got, want)
	}
	if got, want := compose("k1", "relay.example.net"), MessageID("k1", "relay.example.net"); got != want {
		t.Errorf("Message-Id = %q, want %q (option)", got, want)
	}
	// Without a key there is nothing to derive from: a random, valid ID.
	a, b := compose("", ""), compose("", "")
	if a == b || !messageIDPattern.MatchString(a) || !strings.HasSuffix(a, "@example.com>") {
		t.Errorf("keyless Message-IDs = %q, %q; want two different valid IDs", a, b)
	}

	r := validRequest()
	if _, err := Compose(r, ComposeOptions{MessageIDDomain: "bad domain"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Compose with a bad MessageIDDomain = %v, want ErrInvalid", err)
	}
}

func TestComposeDefaultsDateToNow(t *testing.T) {
	t.Parallel()
	before := time.Now().Truncate(time.Second)
	out, err := Compose(validRequest(), ComposeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	date, err := parseMessage(t, out).header.Date()
	if err != nil || date.Before(before) || date.After(after) {
		t.Errorf("Date = %v, %v; want between %v and %v", date, err, before, after)
	}
}

func TestComposeIsStable(t *testing.T) {
	t.Parallel()
	// A redelivery composes again; everything but the random boundaries must
	// come out the same, the Message-ID above all.
	r := validRequest()
	r.HTML = "<p>x</p>"
	r.IdempotencyKey = "k"
	a, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	boundaries := regexp.MustCompile(`=_[0-9a-f]{32}`)
	if x, y := boundaries.ReplaceAll(a, nil), boundaries.ReplaceAll(b, nil); !bytes.Equal(x, y) {
		t.Errorf("two compositions differ beyond their boundaries:\n%s\n---\n%s", x, y)
	}
}

func TestComposeRaw(t *testing.T) {
	t.Parallel()
	raw := []byte("From: alice@example.com\r\nTo: b@example.org\r\n\r\nbody")
	out, err := Compose(&Request{Account: "alice@example.com", Raw: raw}, ComposeOptions{})
	if err != nil || !bytes.Equal(out, raw) {
		t.Errorf("Compose(raw) = %q, %v; want the raw message unchanged", out, err)
	}
	if _, err := Compose(&Request{Account: "bob@example.com", Raw: raw}, ComposeOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Compose(raw from another account) = %v, want ErrInvalid", err)
	}
}

func TestComposeValidates(t *testing.T) {
	t.Parallel()
	r := validRequest()
	r.To = []string{"bob@"}
	out, err := Compose(r, ComposeOptions{})
	var ve *ValidationError
	if out != nil || !errors.As(err, &ve) {
		t.Errorf("Compose(invalid) = %q, %v; want a *ValidationError", out, err)
	}
}

func TestComposeTooLarge(t *testing.T) {
	t.Parallel()
	// 27.6 MB of data is 36.7 MB once base64 adds a third and its line breaks.
	r := validRequest()
	r.Attachments = []Attachment{{Filename: "big.bin", ContentType: "application/octet-stream", Data: make([]byte, 27_600_000)}}
	out, err := Compose(r, ComposeOptions{Now: testNow})
	var se *SizeError
	if out != nil || !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Compose() = %d bytes, %v; want a *SizeError", len(out), err)
	}
	if se.What != "composed message" || se.Limit != MaxMessageSize || se.Size <= MaxMessageSize {
		t.Errorf("SizeError = %+v", se)
	}
	// The size reported is the real one: shrink the data by the excess and
	// the message fits exactly.
	// the message fits, within one base64 line: 57 bytes of data take 78
	// octets (76 characters and CRLF).
	excess := se.Size - MaxMessageSize
	cut := (excess*57+77)/78 + 3
	r.Attachments[0].Data = r.Attachments[0].Data[:int64(len(r.Attachments[0].Data))-cut]
	out, err = Compose(r, ComposeOptions{Now: testNow})
	if err != nil || len(out) > MaxMessageSize || len(out) < MaxMessageSize-80 {
		t.Errorf("Compose(just under) = %d bytes, %v; want success just under %d", len(out), err, MaxMessageSize)
	}
}

// TestComposeTo: streaming writes what Compose returns, a raw request as it
// came, and a writer's failure comes back as the error.
func TestComposeTo(t *testing.T) {
	t.Parallel()
	raw := &Request{Account: "alice@example.com", Raw: []byte("From: alice@example.com\r\nTo: b@example.org\r\n\r\nhi")}
	for name, r := range map[string]*Request{"composed": benchRequest(), "raw": raw} {
		want, err := Compose(r, ComposeOptions{Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		n, err := ComposeTo(&b, r, ComposeOptions{Now: testNow})
		// The boundaries are random; the rest is the same.
		boundaries := regexp.MustCompile(`=_[0-9a-f]{32}`)
		if err != nil || n != int64(b.Len()) || !bytes.Equal(boundaries.ReplaceAll(b.Bytes(), nil), boundaries.ReplaceAll(want, nil)) {
			t.Errorf("%s: ComposeTo = %d, %v, wrote %d bytes that differ from Compose's %d", name, n, err, b.Len(), len(want))
		}
	}
	failing := errors.New("upload closed")
	if _, err := ComposeTo(errWriter{failing}, benchRequest(), ComposeOptions{Now: testNow}); !errors.Is(err, failing) {
		t.Errorf("ComposeTo(failing writer) = %v, want %v", err, failing)
	}
	if _, err := ComposeTo(io.Discard, validRequest(), ComposeOptions{MessageIDKey: "tab\there"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ComposeTo(bad key) = %v, want ErrInvalid", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestEstimateSize(t *testing.T) {
	t.Parallel()
	// The estimate sizes the buffer; it must cover the output so that
	// composing does not reallocate, without wasting much beyond it.
	cyrillic := benchRequest()
	cyrillic.Text = strings.Repeat("Привет, мир! Счёт = 42.\n", 400)
	cyrillic.HTML = "<p>" + cyrillic.Text + "</p>"
	attached := benchRequest()
	attached.Attachments = []Attachment{{Filename: "f.bin", ContentType: "application/octet-stream", Data: make([]byte, 100_000)}}
	for name, r := range map[string]*Request{"typical": benchRequest(), "cyrillic": cyrillic, "attachment": attached} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := Compose(r, ComposeOptions{Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			if est := estimateSize(r); est < len(out) || est > len(out)+len(out)/4+2048 {
				t.Errorf("estimateSize = %d for a %d-byte message", est, len(out))
			}
		})
	}
}

// benchRequest is a typical transactional message of about 10 KB.
func benchRequest() *Request {
	para := "Dear customer, thank you for your order. Your invoice is attached; payment is due within 30 days. Grüße! "
	return &Request{
		Account:        "alice@example.com",
		FromName:       "Alice at Acme",
		To:             []string{"Bob Example <bob@example.org>"},
		Cc:             []string{"accounts@example.org"},
		Subject:        "Your invoice 42 from Acme",
		Text:           strings.Repeat(para+"\n", 45),
		HTML:           "<html><body>" + strings.Repeat("<p>"+para+"</p>\n", 45) + "</body></html>",
		Headers:        map[string]string{"X-Order-Id": "42"},
		IdempotencyKey: "order-42-invoice",
	}
}

// TestComposeBackslashInEncodedName is the regression test for the
// FuzzCompose crasher testdata/fuzz/FuzzCompose/91109f9bd777adc2: net/mail
// Q-encodes a non-ASCII display name but leaves a backslash in it raw, which
// makes the From or To header unparseable for every reader.
func TestComposeBackslashInEncodedName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		fromName string
		to       string
		wantTo   string
	}{
		{name: "from_name", fromName: `Jörg \ Co`, to: "bob@example.org", wantTo: "bob@example.org"},
		{name: "to display name", to: `=?utf-8?q?J=C3=B6rg=5C?= <j@example.org>`, wantTo: `Jörg\ <j@example.org>`},
		{name: "plain backslash stays quoted", fromName: `A\B`, to: `"C\\D" <c@example.org>`, wantTo: `C\D <c@example.org>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validRequest()
			r.FromName = tc.fromName
			r.To = []string{tc.to}
			out, err := Compose(r, ComposeOptions{Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			p := parseMessage(t, out)
			wantFrom := "alice@example.com"
			if tc.fromName != "" {
				wantFrom = tc.fromName + " <alice@example.com>"
			}
			if got := p.addresses(t, "From"); len(got) != 1 || got[0] != wantFrom {
				t.Errorf("From = %q, want %q", got, wantFrom)
			}
			if got := p.addresses(t, "To"); len(got) != 1 || got[0] != tc.wantTo {
				t.Errorf("To = %q, want %q", got, tc.wantTo)
			}
		})
	}
}

// TestComposeRefusesUnfoldableWords is the regression test for the
// FuzzCompose crasher testdata/fuzz/FuzzCompose/a959a3a4611a7a1e: with
// Validate bypassed, a header word longer than a line made go-message split
// it, and the media type it split no longer parsed. Composition now refuses
// such a header instead of writing it.
func TestComposeRefusesUnfoldableWords(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("g", maxLineLen)
	cases := map[string]func(r *Request){
		"content type": func(r *Request) {
			r.Attachments = []Attachment{{Filename: "f", ContentType: "application/" + long, Data: []byte("x")}}
		},
		"in_reply_to":  func(r *Request) { r.InReplyTo = "<" + long + "@example.com>" },
		"custom value": func(r *Request) { r.Headers = map[string]string{"X-A": long} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := validRequest()
			mutate(r)
			if out, err := compose(r, ComposeOptions{Now: testNow}); !errors.Is(err, ErrInvalid) {
				t.Errorf("compose() = %d bytes, %v; want an ErrInvalid", len(out), err)
			}
		})
	}
	// Words up to the limit are written whole.
	r := validRequest()
	r.Headers = map[string]string{"X-A": strings.Repeat("v", MaxHeaderValueLen)}
	out, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if got := parseMessage(t, out).header.Get("X-A"); got != r.Headers["X-A"] {
		t.Errorf("X-A read back is %d characters, want %d unchanged", len(got), MaxHeaderValueLen)
	}
}

// TestComposeBoundsHeaderWork goes with the FuzzCompose input
// testdata/fuzz/FuzzCompose/b533d3502e66d135, saved when a fuzzing worker
// hung: with Validate bypassed, megabyte header values reached go-message,
// whose folding takes time quadratic in a value's length. Composition now
// refuses any field over maxFieldLen before it is written.
func TestComposeBoundsHeaderWork(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("é ", maxFieldLen)
	cases := map[string]func(r *Request){
		"subject":   func(r *Request) { r.Subject = huge },
		"from_name": func(r *Request) { r.FromName = huge },
		"to":        func(r *Request) { r.To = []string{`"` + huge + `" <b@example.org>`} },
		"filename": func(r *Request) {
			r.Attachments = []Attachment{{Filename: huge, ContentType: "application/pdf", Data: []byte("x")}}
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := validRequest()
			mutate(r)
			if out, err := compose(r, ComposeOptions{Now: testNow}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "the limit is 65536") {
				t.Errorf("compose() = %d bytes, %v; want the field refused", len(out), err)
			}
		})
	}
}

// TestComposeChecksMessageIDKey: a Message-ID key given apart from the
// request is held to idempotency_key's rules, and the Message-ID derives
// from it.
func TestComposeChecksMessageIDKey(t *testing.T) {
	t.Parallel()
	for key, ok := range map[string]bool{"order-42": true, strings.Repeat("k", MaxIdempotencyKeyLen+1): false, "tab\there": false} {
		out, err := Compose(benchRequest(), ComposeOptions{Now: testNow, MessageIDKey: key})
		if ok != (err == nil) {
			t.Errorf("key %.20q: Compose error = %v", key, err)
		}
		if !ok {
			if !reflect.DeepEqual(problemFields(t, err), []string{"idempotency_key"}) {
				t.Errorf("key %.20q: problems name %q", key, problemFields(t, err))
			}
			continue
		}
		if got, want := parseMessage(t, out).header.Get("Message-Id"), MessageID(key, "example.com"); got != want {
			t.Errorf("key %q: Message-Id = %q, want %q", key, got, want)
		}
	}
}

// TestComposeSubjectEdgeBlanks (FuzzCompose crasher 775dedc6ca0a0309): a
// subject with blanks at its ends composes; readers see it trimmed, except
// where an encoded word carries the blanks.
func TestComposeSubjectEdgeBlanks(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]string{" ": "", "a ": "a", " a": "a", "\t": "", " é": " é"} {
		r := benchRequest()
		r.Subject = subject
		out, err := Compose(r, ComposeOptions{Now: testNow})
		if err != nil {
			t.Fatalf("Compose(subject %q) = %v", subject, err)
		}
		if got := parseMessage(t, out).text(t, "Subject"); got != want {
			t.Errorf("subject %q reads as %q, want %q", subject, got, want)
		}
	}
}
