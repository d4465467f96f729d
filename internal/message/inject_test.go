package message

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

const evil = "Bcc: evil@attacker.example"

// injections are the line breaks and NUL that a header value could use to
// start a header of its own.
var injections = []struct{ name, sep string }{
	{"CR", "\r"}, {"LF", "\n"}, {"CRLF", "\r\n"}, {"NUL", "\x00"},
}

// injectionFields puts a payload into each field that reaches a header. field
// is the problem Decode must report.
var injectionFields = []struct {
	name   string
	field  string
	inject func(r *Request, payload string)
}{
	{"subject", "subject", func(r *Request, p string) { r.Subject = "Invoice" + p }},
	{"from_name", "from_name", func(r *Request, p string) { r.FromName = "Alice" + p }},
	{"from", "from", func(r *Request, p string) { r.From = "billing@example.com" + p }},
	{"account", "account", func(r *Request, p string) { r.Account = "alice@example.com" + p }},
	{"to display name", "to[0]", func(r *Request, p string) { r.To = []string{`"Bob` + p + `" <bob@example.org>`} }},
	{"to address", "to[0]", func(r *Request, p string) { r.To = []string{"bob@example.org" + p} }},
	{"to unquoted name", "to[1]", func(r *Request, p string) {
		r.To = append(r.To, "Carol"+p+" <carol@example.org>")
	}},
	{"cc", "cc[0]", func(r *Request, p string) { r.Cc = []string{"carol@example.org" + p} }},
	{"bcc", "bcc[0]", func(r *Request, p string) { r.Bcc = []string{"Dave" + p + " <dave@example.org>"} }},
	{"reply_to", "reply_to[0]", func(r *Request, p string) { r.ReplyTo = []string{"support@example.com" + p} }},
	{"header name", "", func(r *Request, p string) { r.Headers = map[string]string{"X-A" + p: "1"} }},
	{"header name not allowed", `headers["Sender"]`, func(r *Request, p string) { r.Headers = map[string]string{"Sender": "evil@attacker.example" + p} }},
	{"header value", `headers["X-A"]`, func(r *Request, p string) { r.Headers = map[string]string{"X-A": "1" + p} }},
	{"list header value", `headers["List-Unsubscribe"]`, func(r *Request, p string) {
		r.Headers = map[string]string{"List-Unsubscribe": "<https://example.com/u>" + p}
	}},
	{"in_reply_to", "in_reply_to", func(r *Request, p string) { r.InReplyTo = "<a@example.com>" + p }},
	{"references", "references[1]", func(r *Request, p string) { r.References = []string{"<a@example.com>", "<b@example.com>" + p} }},
	{"attachment filename", "attachments[0].filename", func(r *Request, p string) {
		r.Attachments = []Attachment{{Filename: "a.pdf" + p, ContentType: "application/pdf", Data: []byte("x")}}
	}},
	{"attachment content_type", "attachments[0].content_type", func(r *Request, p string) {
		r.Attachments = []Attachment{{Filename: "a.pdf", ContentType: "application/pdf" + p, Data: []byte("x")}}
	}},
	{"attachment content_type parameter", "attachments[0].content_type", func(r *Request, p string) {
		r.Attachments = []Attachment{{Filename: "a.pdf", ContentType: `application/pdf; name="a` + p + `"`, Data: []byte("x")}}
	}},
	{"attachment content_id", "attachments[0].content_id", func(r *Request, p string) {
		r.HTML = "<img src=cid:logo>"
		r.Attachments = []Attachment{{Filename: "logo.png", ContentType: "image/png", Data: []byte("x"), ContentID: "logo" + p}}
	}},
}

// TestHeaderInjectionRejected: Decode refuses every line break and NUL in a
// field that reaches a header, naming the field.
func TestHeaderInjectionRejected(t *testing.T) {
	t.Parallel()
	for _, f := range injectionFields {
		for _, inj := range injections {
			t.Run(f.name+"/"+inj.name, func(t *testing.T) {
				t.Parallel()
				r := validRequest()
				f.inject(r, inj.sep+evil)
				data, err := json.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Decode(data)
				if got != nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Decode() = %v, %v; want a rejection", got, err)
				}
				fields := problemFields(t, err)
				want := f.field
				if want == "" { // the field is named after the injected key
					want = `headers["X-A` + strings.NewReplacer("\r", `\r`, "\n", `\n`, "\x00", `\x00`).Replace(inj.sep) + `Bcc: evil@attacker.example"]`
				}
				if !slices.Contains(fields, want) {
					t.Errorf("problems on %q, want one on %q", fields, want)
				}
			})
		}
	}
}

// TestHeaderInjectionComposeAlone: with Validate bypassed, composition still
// never emits a header beyond those the request asks for; it fails instead.
func TestHeaderInjectionComposeAlone(t *testing.T) {
	t.Parallel()
	for _, f := range injectionFields {
		for _, inj := range injections {
			t.Run(f.name+"/"+inj.name, func(t *testing.T) {
				t.Parallel()
				r := validRequest()
				f.inject(r, inj.sep+evil)
				out, err := compose(r, ComposeOptions{Now: testNow})
				if err != nil {
					if !errors.Is(err, ErrInvalid) && !strings.Contains(err.Error(), "compose") {
						t.Errorf("compose() error %v lacks context", err)
					}
					return
				}
				assertNoInjection(t, r, out)
			})
		}
	}
}

// assertNoInjection checks a composed message against the request it came
// from: exactly the expected headers, only the requested recipients, and no
// part header beyond the Content-* ones.
func assertNoInjection(t *testing.T, r *Request, out []byte) {
	t.Helper()
	p, err := parseMessageErr(out)
	if err != nil {
		t.Fatalf("composed message does not parse: %v\n%q", err, out)
	}
	if got, want := p.keySet(), expectedKeys(r); !slices.Equal(got, want) {
		t.Fatalf("header names = %q, want exactly %q\n%s", got, want, out)
	}
	if len(p.keys) != len(p.keySet()) {
		t.Fatalf("a header repeats: %q", p.keys)
	}
	// Some readers end a line at NUL or at a lone CR; no value may hold one.
	for key, values := range p.header {
		for _, v := range values {
			if i := indexControl(v); i >= 0 {
				t.Fatalf("%s holds the control character %U\n%q", key, rune(v[i]), out)
			}
		}
	}
	from := p.addresses(t, "From")
	if len(from) != 1 || !strings.HasSuffix(from[0], "<"+r.Account+">") && from[0] != r.Account {
		t.Fatalf("From = %q, want the account %q\n%s", from, r.Account, out)
	}
	got, err := p.recipientsOf()
	if err != nil {
		t.Fatalf("recipients do not parse: %v\n%s", err, out)
	}
	for _, a := range got {
		if strings.Contains(a, "attacker") {
			t.Fatalf("injected recipient %q\n%s", a, out)
		}
	}
	if err := checkPartKeys(p.root); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestBodyCannotForgeParts: a body that imitates boundaries and headers stays
// one body, because quoted-printable output never contains the "=_" that
// starts every boundary.
func TestBodyCannotForgeParts(t *testing.T) {
	t.Parallel()
	r := validRequest()
	r.HTML = "<p>x</p>"
	forged := "a\r\n--=_0123\r\nContent-Type: text/html\r\n\r\n<script>\r\n--=_0123--\r\n"
	r.Text = forged
	r.Attachments = []Attachment{{Filename: "a.txt", ContentType: "text/plain", Data: []byte(forged)}}
	out, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	p := parseMessage(t, out)
	if got, want := p.root.shape(), "multipart/mixed(multipart/alternative(text/plain,text/html),text/plain)"; got != want {
		t.Fatalf("tree = %s, want %s", got, want)
	}
	leaves := p.root.leaves()
	if string(leaves[0].body) != forged || string(leaves[2].body) != forged {
		t.Errorf("bodies = %q, %q; want the forged text unchanged", leaves[0].body, leaves[2].body)
	}
}

// TestComposeRefusesOtherHeaders: composition itself enforces the custom
// header policy, so a request that skipped Validate cannot set a header the
// relay owns or one that mail systems act on.
func TestComposeRefusesOtherHeaders(t *testing.T) {
	t.Parallel()
	// A name go-message would panic folding is refused too.
	long := "X-" + strings.Repeat("n", 80)
	for _, name := range []string{"Bcc", "Sender", "From", "Content-Type", "Mime-Version", "Received", "DKIM-Signature", "x", "", long} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := validRequest()
			r.Headers = map[string]string{name: "evil@attacker.example"}
			out, err := compose(r, ComposeOptions{Now: testNow})
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("compose() = %q, %v; want an ErrInvalid", out, err)
			}
		})
	}
}
