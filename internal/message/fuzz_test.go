package message

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/mail"
	"slices"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"
)

// fuzzSeeds are send requests worth mutating, as JSON.
func fuzzSeeds(t testing.TB) [][]byte {
	full := benchRequest()
	full.Bcc = []string{"=?utf-8?q?D=C3=A4ve?= <dave@example.org>"}
	full.ReplyTo = []string{"support@example.com"}
	full.Attachments = []Attachment{
		{Filename: "Résumé.pdf", ContentType: "application/pdf", Data: []byte("%PDF-1.7")},
		{Filename: "logo.png", ContentType: "image/png", Data: []byte{0x89, 'P', 'N', 'G'}, ContentID: "logo@acme"},
	}
	full.InReplyTo = "<id@example.com>"
	full.References = []string{"<root@example.com>", "<id@example.com>"}
	full.ThreadID = "18f4a2b3c5d6e7f8"
	full.Text = "short"
	full.HTML = `<img src="cid:logo@acme">`
	raw := &Request{Account: "alice@example.com", Raw: []byte("From: Alice <alice@example.com>\r\nTo: b@example.org, undisclosed:;\r\nBcc: c@example.org\r\n\r\nhi"), IdempotencyKey: "k"}
	var out [][]byte
	for _, r := range []*Request{validRequest(), full, raw} {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return append(out,
		[]byte(`{"account":"alice@example.com","to":["bob@example.org"],"text":"x","subject":"a\r\nBcc: e@x.io"}`),
		[]byte(`{"account":"alice@example.com","to":["\"B\\\"o,b\" <bob@example.org>"],"html":"x","headers":{"x-a":"1"}}`),
		[]byte(`{"account":"alice@example.com","to":[null],"text":1}`),
	)
}

// FuzzDecode: Decode never panics, rejects only with ErrInvalid, and whatever
// it accepts composes into a message that parses back with exactly the
// request's headers and recipients.
func FuzzDecode(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			if r != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode() = %v, %v; want nil and an ErrInvalid", r, err)
			}
			return
		}
		out, err := Compose(r, ComposeOptions{Now: testNow})
		if err != nil {
			t.Fatalf("Compose(accepted request) = %v\nrequest: %s", err, data)
		}
		p, err := parseMessageErr(out)
		if err != nil {
			t.Fatalf("composed message does not parse: %v\n%q", err, out)
		}
		got, err := p.recipientsOf()
		if err != nil {
			t.Fatalf("recipients do not parse back: %v\n%q", err, out)
		}
		if want := r.Recipients(); !slices.Equal(got, want) {
			t.Fatalf("recipients = %q, want %q\n%q", got, want, out)
		}
		if len(r.Raw) == 0 {
			assertNoInjection(t, r, out)
		}
	})
}

// FuzzCompose: whatever passes Validate composes into a message that
// net/mail, mime/multipart and go-message all read back with exactly the
// expected headers, the request's addresses, header values, bodies and
// attachment; and compose without Validate never emits any other header.
func FuzzCompose(f *testing.F) {
	f.Add("alice@example.com", "Alice", "Bob <bob@example.org>", "", "Invoice 42", "plain\nbody", "", "", "", "", "", "", []byte(nil), "", "")
	f.Add("alice@example.com", "Zoë", "b@example.org", "c@example.org", "Grüße", "t", "<img src=cid:x>", "X-Id", "42",
		"logo.png", "image/png", "x", []byte{0x89, 0}, "<a@b>", "<r@b>")
	f.Add("alice@example.com", "A\r\nBcc: e@x.io", "b@example.org\nBcc: e@x.io", "", "a\x00b", "", "h", "X-A\r\nBcc", "1\r\nBcc: e@x.io",
		"a\r\n.pdf", "application/pdf\r\nBcc: e@x.io", "", []byte("x"), "<a@b>\r\nBcc: e@x.io", "")
	f.Fuzz(func(t *testing.T, account, fromName, to, cc, subject, text, html, hname, hvalue, filename, ctype, cid string, data []byte, inReplyTo, ref string) {
		r := &Request{Account: account, FromName: fromName, Subject: subject, Text: text, HTML: html, InReplyTo: inReplyTo}
		if to != "" {
			r.To = []string{to}
		}
		if cc != "" {
			r.Cc = []string{cc}
		}
		if hname != "" {
			r.Headers = map[string]string{hname: hvalue}
		}
		if filename != "" || len(data) > 0 {
			r.Attachments = []Attachment{{Filename: filename, ContentType: ctype, Data: data, ContentID: cid}}
		}
		if ref != "" {
			r.References = []string{ref}
		}

		if out, err := compose(r, ComposeOptions{Now: testNow}); err == nil {
			assertNoInjection(t, r, out)
		}

		if r.Validate() != nil {
			return
		}
		out, err := Compose(r, ComposeOptions{Now: testNow})
		if err != nil {
			t.Fatalf("Compose(valid request) = %v", err)
		}
		assertNoInjection(t, r, out)
		p := parseMessage(t, out)
		// A header's leading and trailing blanks are not part of its
		// value (readers trim them), unless an encoded word carries them.
		if got := p.text(t, "Subject"); strings.Trim(got, " \t") != strings.Trim(subject, " \t") {
			t.Errorf("Subject = %q, want %q", got, subject)
		}
		var bodies [][]byte
		for _, s := range []string{text, html} {
			if s != "" {
				bodies = append(bodies, []byte(crlf(s)))
			}
		}
		if len(data) > 0 {
			bodies = append(bodies, data)
		}
		leaves := p.root.leaves()
		if len(leaves) != len(bodies) {
			t.Fatalf("%d leaves, want %d: %s", len(leaves), len(bodies), p.root.shape())
		}
		for i, want := range bodies {
			if !bytes.Equal(leaves[i].body, want) {
				t.Errorf("leaf %d (%s) = %q, want %q", i, leaves[i].mediaType, leaves[i].body, want)
			}
		}
		if len(data) > 0 {
			if got := leaves[len(leaves)-1].filename; got != filename {
				t.Errorf("filename = %q, want %q", got, filename)
			}
			if got := leaves[len(leaves)-1].contentID; cid != "" && got != "<"+cid+">" {
				t.Errorf("Content-Id = %q, want <%s>", got, cid)
			}
		}
		// go-message reads the same bodies back as the standard library.
		if got := goMessageLeaves(t, out); !slices.EqualFunc(got, bodies, bytes.Equal) {
			t.Errorf("go-message reads the bodies as %q, want %q", got, bodies)
		}
		from, err := mail.ParseAddress(p.header.Get("From"))
		if err != nil || from.Address != account || from.Name != fromName {
			t.Errorf("From = %q (%v), want %q <%s>", p.header.Get("From"), err, fromName, account)
		}
		if got, err := p.recipientsOf(); err != nil || !slices.Equal(got, r.Recipients()) {
			t.Errorf("recipients = %q (%v), want %q", got, err, r.Recipients())
		}
		// A folded header reads back with its blanks collapsed.
		for key, want := range map[string]string{hname: hvalue, "In-Reply-To": inReplyTo, "References": ref} {
			if key != "" && fields(p.header.Get(key)) != fields(want) {
				t.Errorf("%s = %q, want %q", key, p.header.Get(key), want)
			}
		}
	})
}

// fields is s with its blanks collapsed and trimmed, as a header reads back
// after folding and unfolding.
func fields(s string) string { return strings.Join(strings.Fields(s), " ") }

// goMessageLeaves returns the bodies of a message's leaf parts, in order, as
// go-message's reader decodes them.
func goMessageLeaves(t *testing.T, raw []byte) [][]byte {
	t.Helper()
	e, err := gomessage.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("go-message: %v\n%q", err, raw)
	}
	var out [][]byte
	var walk func(e *gomessage.Entity)
	walk = func(e *gomessage.Entity) {
		mr := e.MultipartReader()
		if mr == nil {
			b, err := io.ReadAll(e.Body)
			if err != nil {
				t.Fatalf("go-message body: %v\n%q", err, raw)
			}
			out = append(out, b)
			return
		}
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("go-message part: %v\n%q", err, raw)
			}
			walk(p)
		}
	}
	walk(e)
	return out
}

// FuzzCheckRaw: CheckRaw never panics, and what it accepts is, by the
// standard library's reading too, from the account to 1 to 100 recipients.
func FuzzCheckRaw(f *testing.F) {
	f.Add([]byte("From: alice@example.com\r\nTo: b@example.org\r\n\r\nhi"), "alice@example.com")
	f.Add([]byte("From: Alice <ALICE@example.com>\nTo: undisclosed-recipients:;\nBcc: b@example.org\n\nhi\n"), "alice@example.com")
	f.Add([]byte("From: alice@example.com\r\nTo: b@example.org\rBcc: e@x.io\r\n\r\n"), "alice@example.com")
	f.Add([]byte("From: alice@example.com\r\nFrom: m@example.com\r\nTo: b@example.org\x00\r\n\r\n"), "alice@example.com")
	f.Add([]byte("From: =?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte("Äli"))+"?= <alice@example.com>\r\nCc: a@b.c,\r\n d@e.f\r\n\r\n"), "alice@example.com")
	f.Fuzz(func(t *testing.T, raw []byte, account string) {
		err := CheckRaw(raw, account)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CheckRaw() = %v, want an ErrInvalid", err)
			}
			return
		}
		end := headerEnd(raw)
		if bytes.IndexByte(raw[:end], 0) >= 0 {
			t.Fatal("accepted a NUL in the header section")
		}
		r := &Request{Account: account, Raw: raw}
		n := len(r.Recipients())
		if n < 1 || n > MaxRecipients {
			t.Fatalf("accepted %d recipients", n)
		}
		// Read the header again with net/mail: the two parsers must agree
		// on the sender and the recipients, or a message could say one thing
		// to this check and another to its next reader.
		msg, err := mail.ReadMessage(bytes.NewReader(raw[:end]))
		if err != nil {
			t.Fatalf("CheckRaw accepted a header that net/mail rejects: %v\n%q", err, raw[:end])
		}
		var from []*mail.Address
		if v := msg.Header.Get("From"); strings.TrimSpace(v) != "" {
			from, err = (&mail.AddressParser{WordDecoder: rawWordDecoder}).ParseList(v)
		}
		if err != nil || len(from) != 1 || !strings.EqualFold(from[0].Address, account) {
			t.Fatalf("net/mail reads From as %v (%v), but CheckRaw accepted it for %q\n%q", from, err, account, raw[:end])
		}
		std := 0
		for _, key := range recipientHeaders {
			list, err := parseRawAddressList(msg.Header.Get(key))
			if err != nil {
				t.Fatalf("net/mail's %s does not parse: %v\n%q", key, err, raw[:end])
			}
			std += len(list)
		}
		if std != n {
			t.Fatalf("net/mail reads %d recipients, CheckRaw %d\n%q", std, n, raw[:end])
		}
	})
}
