package message

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	t.Parallel()

	rawMsg := []byte("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nbody\r\n")
	addrs := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("r%d@example.org", i)
		}
		return out
	}
	att := func(mutate func(*Attachment)) []Attachment {
		a := Attachment{Filename: "a.pdf", ContentType: "application/pdf", Data: []byte("%PDF")}
		if mutate != nil {
			mutate(&a)
		}
		return []Attachment{a}
	}
	headers := func(n int) map[string]string {
		h := make(map[string]string, n)
		for i := range n {
			h[fmt.Sprintf("X-H%d", i)] = "v"
		}
		return h
	}

	cases := []struct {
		name   string
		mutate func(r *Request)
		field  string // "" means valid
		msg    string // a fragment of the problem's message
	}{
		{name: "minimal", mutate: func(r *Request) {}},
		{name: "everything", mutate: func(r *Request) {
			r.FromName = "Alice at Acme"
			r.To = []string{"Bob <bob@example.org>", "=?utf-8?q?J=C3=B6rg?= <jorg@example.de>"}
			r.Cc = []string{"carol@example.org"}
			r.Bcc = []string{"dave@example.org"}
			r.ReplyTo = []string{"support@example.com"}
			r.HTML = "<p>hi <img src=\"cid:logo@x\"></p>"
			r.Attachments = []Attachment{
				{Filename: "invoice.pdf", ContentType: "application/pdf", Data: []byte("%PDF")},
				{Filename: "logo.png", ContentType: "image/png", Data: []byte{0x89}, ContentID: "logo@x"},
				{Filename: "notes.txt", ContentType: "text/plain; charset=UTF-8", Data: []byte("x")},
			}
			r.Headers = map[string]string{"X-Order-Id": "42", "list-unsubscribe": "<https://example.com/u>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
			r.InReplyTo = "<id@example.com>"
			r.References = []string{"<a@example.com>", "<b@example.com>"}
			r.ThreadID = "18f4a2b3c5d6e7f8"
			r.IdempotencyKey = "order-42-invoice"
		}},
		{name: "html only", mutate: func(r *Request) { r.Text = ""; r.HTML = "<p>x</p>" }},
		{name: "bcc only", mutate: func(r *Request) { r.To = nil; r.Bcc = []string{"b@example.org"} }},
		{name: "raw", mutate: func(r *Request) {
			*r = Request{Account: "alice@example.com", Raw: rawMsg, ThreadID: "abc", IdempotencyKey: "k"}
		}},
		{name: "100 recipients", mutate: func(r *Request) { r.To = addrs(50); r.Cc = addrs(30); r.Bcc = addrs(20) }},
		{name: "tab in subject", mutate: func(r *Request) { r.Subject = "a\tb" }},
		{name: "subject at limit", mutate: func(r *Request) { r.Subject = strings.Repeat("é", MaxSubjectLen) }},

		// account
		{name: "account missing", mutate: func(r *Request) { r.Account = "" }, field: "account", msg: "required"},
		{name: "account invalid", mutate: func(r *Request) { r.Account = "alice@" }, field: "account", msg: "not a valid address"},
		{name: "account with name", mutate: func(r *Request) { r.Account = "Alice <alice@example.com>" }, field: "account", msg: "bare address"},
		{name: "account in brackets", mutate: func(r *Request) { r.Account = "<alice@example.com>" }, field: "account", msg: "bare address"},
		{name: "account domain literal", mutate: func(r *Request) { r.Account = "alice@[192.0.2.1]" }, field: "account", msg: "host name"},
		{name: "account non-ASCII", mutate: func(r *Request) { r.Account = "jörg@example.de" }, field: "account", msg: "ASCII"},
		{name: "account too long", mutate: func(r *Request) { r.Account = strings.Repeat("a", 250) + "@x.io" }, field: "account", msg: "limit is 254"},
		{name: "account CRLF", mutate: func(r *Request) { r.Account = "alice@example.com\r\nBcc: e@x.io" }, field: "account", msg: "line break"},

		// recipients
		{name: "no recipients", mutate: func(r *Request) { r.To = nil }, field: "to", msg: "at least one recipient"},
		{name: "101 recipients", mutate: func(r *Request) { r.To = addrs(50); r.Cc = addrs(30); r.Bcc = addrs(21) }, field: "to", msg: "101 recipients"},
		{name: "bad to", mutate: func(r *Request) { r.To = []string{"a@example.org", "b@example.org", "c@example.org", "bob@"} }, field: "to[3]", msg: `"bob@" is not a valid address`},
		{name: "two in one entry", mutate: func(r *Request) { r.To = []string{"a@example.org, b@example.org"} }, field: "to[0]", msg: "not a valid address"},
		{name: "empty cc", mutate: func(r *Request) { r.Cc = []string{""} }, field: "cc[0]", msg: "empty"},
		{name: "bad bcc", mutate: func(r *Request) { r.Bcc = []string{"nobody"} }, field: "bcc[0]", msg: "not a valid address"},
		{name: "bad reply_to", mutate: func(r *Request) { r.ReplyTo = []string{"x@"} }, field: "reply_to[0]", msg: "not a valid address"},
		{name: "too many reply_to", mutate: func(r *Request) { r.ReplyTo = addrs(101) }, field: "reply_to", msg: "limit is 100"},
		{name: "To too large once encoded", mutate: func(r *Request) {
			r.To = nil
			for i := range 60 {
				r.To = append(r.To, fmt.Sprintf("%s <r%d@example.org>", strings.Repeat("é", 480), i))
			}
		}, field: "to", msg: "once encoded; the limit is 32768"},
		{name: "address too long", mutate: func(r *Request) { r.To = []string{strings.Repeat("n", 500) + " <b@example.org>"} }, field: "to[0]", msg: "limit is 512"},
		{name: "encoded name hides CRLF", mutate: func(r *Request) { r.To = []string{"=?utf-8?q?a=0D=0Ab?= <b@example.org>"} }, field: "to[0]", msg: "display name"},

		// body and raw
		{name: "no body", mutate: func(r *Request) { r.Text = "" }, field: "text", msg: "body is required"},
		{name: "text not UTF-8", mutate: func(r *Request) { r.Text = "\xff" }, field: "text", msg: "UTF-8"},
		{name: "html not UTF-8", mutate: func(r *Request) { r.HTML = "\xff" }, field: "html", msg: "UTF-8"},
		{name: "raw with subject", mutate: func(r *Request) { r.To = nil; r.Text = ""; r.Raw = rawMsg }, field: "subject", msg: "cannot be combined with raw"},
		{name: "raw with to", mutate: func(r *Request) { r.Subject = ""; r.Text = ""; r.Raw = rawMsg }, field: "to", msg: "cannot be combined with raw"},
		// Who it is sent as is CheckSender's (TestCheckSender).
		{name: "raw from another address", mutate: func(r *Request) { *r = Request{Account: "mallory@example.com", Raw: rawMsg} }},
		{name: "raw with from", mutate: func(r *Request) { *r = Request{Account: "alice@example.com", From: "alice@example.com", Raw: rawMsg} }, field: "from", msg: "cannot be combined with raw"},
		{name: "from with name", mutate: func(r *Request) { r.From = "Sales <sales@example.com>" }, field: "from", msg: "bare address"},
		{name: "from not an address", mutate: func(r *Request) { r.From = "sales" }, field: "from", msg: "not a valid address"},
		{name: "from CRLF", mutate: func(r *Request) { r.From = "s@example.com\r\nBcc: e@x.io" }, field: "from", msg: "line break"},
		{name: "from not ASCII", mutate: func(r *Request) { r.From = "jörg@example.com" }, field: "from", msg: "ASCII"},
		{name: "from domain literal", mutate: func(r *Request) { r.From = "s@[192.0.2.1]" }, field: "from", msg: "ASCII host name"},
		{name: "from any alias", mutate: func(r *Request) { r.From = "anyone@example.net" }},

		// header text
		{name: "subject LF", mutate: func(r *Request) { r.Subject = "a\nBcc: e@x.io" }, field: "subject", msg: "line break"},
		{name: "subject NUL", mutate: func(r *Request) { r.Subject = "a\x00b" }, field: "subject", msg: "NUL"},
		{name: "subject ESC", mutate: func(r *Request) { r.Subject = "a\x1bb" }, field: "subject", msg: "U+001B"},
		{name: "subject DEL", mutate: func(r *Request) { r.Subject = "a\x7fb" }, field: "subject", msg: "U+007F"},
		{name: "subject too long", mutate: func(r *Request) { r.Subject = strings.Repeat("a", MaxSubjectLen+1) }, field: "subject", msg: "limit is 900"},
		{name: "subject not UTF-8", mutate: func(r *Request) { r.Subject = "\xc3" }, field: "subject", msg: "UTF-8"},
		{name: "from_name CR", mutate: func(r *Request) { r.FromName = "A\rB" }, field: "from_name", msg: "line break"},
		{name: "from_name too long", mutate: func(r *Request) { r.FromName = strings.Repeat("a", MaxFromNameLen+1) }, field: "from_name", msg: "limit is 256"},

		// custom headers
		{name: "header not allowed", mutate: func(r *Request) { r.Headers = map[string]string{"Bcc": "e@x.io"} }, field: `headers["Bcc"]`, msg: "only X-*"},
		{name: "header X- alone", mutate: func(r *Request) { r.Headers = map[string]string{"X-": "1"} }, field: `headers["X-"]`, msg: "only X-*"},
		{name: "header name with space", mutate: func(r *Request) { r.Headers = map[string]string{"X-A B": "1"} }, field: `headers["X-A B"]`, msg: "field name"},
		{name: "header name with colon", mutate: func(r *Request) { r.Headers = map[string]string{"X-A:": "1"} }, field: `headers["X-A:"]`, msg: "field name"},
		{name: "header name CRLF", mutate: func(r *Request) { r.Headers = map[string]string{"X-A\r\nBcc": "1"} }, field: `headers["X-A\r\nBcc"]`, msg: "line break"},
		{name: "header name too long", mutate: func(r *Request) { r.Headers = map[string]string{"X-" + strings.Repeat("a", MaxHeaderNameLen): "1"} }, field: `headers["X-` + strings.Repeat("a", MaxHeaderNameLen) + `"]`, msg: "the name is 66 characters long; the limit is 64"},
		{name: "header value LF", mutate: func(r *Request) { r.Headers = map[string]string{"X-A": "1\nBcc: e@x.io"} }, field: `headers["X-A"]`, msg: "line break"},
		{name: "header value too long", mutate: func(r *Request) { r.Headers = map[string]string{"X-A": strings.Repeat("v", MaxHeaderValueLen+1)} }, field: `headers["X-A"]`, msg: "limit is 900"},
		{name: "header value non-ASCII", mutate: func(r *Request) { r.Headers = map[string]string{"X-A": "Jörg"} }, field: `headers["X-A"]`, msg: "ASCII"},
		{name: "header duplicate", mutate: func(r *Request) { r.Headers = map[string]string{"X-A": "1", "x-a": "2"} }, field: `headers["x-a"]`, msg: "case-insensitive"},
		{name: "too many headers", mutate: func(r *Request) { r.Headers = headers(MaxCustomHeaders + 1) }, field: "headers", msg: "limit is 50"},

		// threading
		{name: "in_reply_to bare", mutate: func(r *Request) { r.InReplyTo = "id@example.com" }, field: "in_reply_to", msg: "not a message ID"},
		{name: "in_reply_to bracket injection", mutate: func(r *Request) { r.InReplyTo = "<a@b> <c@d>" }, field: "in_reply_to", msg: "not a message ID"},
		{name: "in_reply_to CRLF", mutate: func(r *Request) { r.InReplyTo = "<a@b>\r\nBcc: e@x.io" }, field: "in_reply_to", msg: "line break"},
		{name: "reference without at", mutate: func(r *Request) { r.References = []string{"<a@b>", "<ab>"} }, field: "references[1]", msg: "not a message ID"},
		{name: "too many references", mutate: func(r *Request) {
			r.References = make([]string, MaxReferences+1)
			for i := range r.References {
				r.References[i] = "<a@b>"
			}
		}, field: "references", msg: "limit is 100"},
		{name: "thread_id upper", mutate: func(r *Request) { r.ThreadID = "18F4A2B3C5D6E7F8" }, field: "thread_id", msg: "not a Gmail thread ID"},
		{name: "thread_id too long", mutate: func(r *Request) { r.ThreadID = "18f4a2b3c5d6e7f80" }, field: "thread_id", msg: "not a Gmail thread ID"},

		// attachments
		{name: "attachment no filename", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.Filename = "" }) }, field: "attachments[0].filename", msg: "required"},
		{name: "attachment filename LF", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.Filename = "a\n.pdf" }) }, field: "attachments[0].filename", msg: "line break"},
		{name: "attachment filename too long", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.Filename = strings.Repeat("a", 256) }) }, field: "attachments[0].filename", msg: "limit is 255"},
		{name: "attachment no type", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.ContentType = "" }) }, field: "attachments[0].content_type", msg: "required"},
		{name: "attachment bad type", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.ContentType = "application" }) }, field: "attachments[0].content_type", msg: "subtype"},
		{name: "attachment bad params", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.ContentType = "text/plain; charset" }) }, field: "attachments[0].content_type", msg: "not a valid media type"},
		{name: "attachment multipart", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.ContentType = "multipart/mixed" }) }, field: "attachments[0].content_type", msg: "multipart/*"},
		{name: "attachment message", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.ContentType = "Message/RFC822" }) }, field: "attachments[0].content_type", msg: "message/*"},
		{name: "attachment latin1", mutate: func(r *Request) {
			r.Attachments = att(func(a *Attachment) { a.ContentType = "text/csv; charset=iso-8859-1" })
		}, field: "attachments[0].content_type", msg: "charset"},
		{name: "attachment no data", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.Data = nil }) }, field: "attachments[0].data", msg: "required"},
		{name: "content_id brackets", mutate: func(r *Request) {
			r.HTML = "x"
			r.Attachments = att(func(a *Attachment) { a.ContentID = "<logo>" })
		}, field: "attachments[0].content_id", msg: "angle brackets"},
		{name: "content_id space", mutate: func(r *Request) {
			r.HTML = "x"
			r.Attachments = att(func(a *Attachment) { a.ContentID = "lo go" })
		}, field: "attachments[0].content_id", msg: "angle brackets"},
		{name: "content_id duplicate", mutate: func(r *Request) {
			r.HTML = "x"
			a := att(func(a *Attachment) { a.ContentID = "logo" })
			b := att(func(a *Attachment) { a.ContentID = "LOGO" })
			r.Attachments = append(a, b...)
		}, field: "attachments[1].content_id", msg: "duplicates attachments[0]"},
		{name: "content_id without html", mutate: func(r *Request) { r.Attachments = att(func(a *Attachment) { a.ContentID = "logo" }) }, field: "attachments[0].content_id", msg: "no html body"},
		{name: "too many attachments", mutate: func(r *Request) {
			for range MaxAttachments + 1 {
				r.Attachments = append(r.Attachments, att(nil)...)
			}
		}, field: "attachments", msg: "limit is 100"},

		// idempotency key
		{name: "key too long", mutate: func(r *Request) { r.IdempotencyKey = strings.Repeat("k", MaxIdempotencyKeyLen+1) }, field: "idempotency_key", msg: "limit is 512"},
		{name: "key with control", mutate: func(r *Request) { r.IdempotencyKey = "a\tb" }, field: "idempotency_key", msg: "printable ASCII"},
		{name: "key non-ASCII", mutate: func(r *Request) { r.IdempotencyKey = "clé" }, field: "idempotency_key", msg: "printable ASCII"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validRequest()
			tc.mutate(r)
			err := r.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want an error matching ErrInvalid", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %T, want *ValidationError", err)
			}
			if len(ve.Problems) != 1 {
				t.Fatalf("Validate() problems = %q, want exactly one on %s", ve.Problems, tc.field)
			}
			if got := ve.Problems[0]; got.Field != tc.field || !strings.Contains(got.Message, tc.msg) {
				t.Errorf("problem = {%q, %q}, want field %q with a message containing %q", got.Field, got.Message, tc.field, tc.msg)
			}
			if !strings.Contains(err.Error(), tc.field+": ") {
				t.Errorf("Error() = %q does not name %s", err.Error(), tc.field)
			}
		})
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	r := &Request{To: []string{"x@"}, Subject: "a\nb", Headers: map[string]string{"Bcc": "e@x.io"}}
	got := problemFields(t, r.Validate())
	want := []string{"account", "to[0]", "subject", "text", `headers["Bcc"]`}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("problem fields = %q, want %q", got, want)
	}
}

func TestValidateRawTooLarge(t *testing.T) {
	t.Parallel()
	r := &Request{Account: "alice@example.com", Raw: make([]byte, MaxMessageSize+1)}
	err := r.Validate()
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate() = %v, want a *SizeError matching ErrTooLarge and ErrInvalid", err)
	}
	if se.Size != MaxMessageSize+1 || se.Limit != MaxMessageSize {
		t.Errorf("SizeError = %+v, want size %d and limit %d", se, MaxMessageSize+1, MaxMessageSize)
	}
}

func TestRecipients(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		r    *Request
		want []string
	}{
		{
			name: "composed",
			r:    &Request{To: []string{"Bob <bob@example.org>", "c@example.org"}, Cc: []string{"\"D, E\" <d@example.org>"}, Bcc: []string{"f@example.org"}},
			want: []string{"bob@example.org", "c@example.org", "d@example.org", "f@example.org"},
		},
		{
			name: "raw",
			r:    &Request{Raw: []byte("From: a@example.com\nTo: Bob <bob@example.org>, c@example.org\nBcc: f@example.org\n\nhi\n")},
			want: []string{"bob@example.org", "c@example.org", "f@example.org"},
		},
		{
			name: "raw group",
			r:    &Request{Raw: []byte("From: a@example.com\r\nTo: undisclosed-recipients:;\r\nCc: team: g@example.org, h@example.org;\r\n\r\n")},
			want: []string{"g@example.org", "h@example.org"},
		},
		{name: "unparseable left out", r: &Request{To: []string{"x@", "y@example.org"}}, want: []string{"y@example.org"}},
		{name: "none", r: &Request{}, want: []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.r.Recipients()
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("Recipients() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestValidateManyHeaders: past the header limit, every name is still
// checked, repeats included.
func TestValidateManyHeaders(t *testing.T) {
	t.Parallel()
	r := validRequest()
	r.Headers = map[string]string{"x-1": "dup", "X-Bad Name": "v"}
	for i := range MaxCustomHeaders + 10 {
		r.Headers[fmt.Sprintf("X-%d", i)] = "v"
	}
	var ve *ValidationError
	if !errors.As(r.Validate(), &ve) {
		t.Fatal("Validate() passed; want problems")
	}
	got := problemStrings(ve.Problems)
	want := []string{
		"headers: 62 headers; the limit is 50",
		`headers["X-Bad Name"]: the name is not an RFC 5322 field name (printable ASCII except colon, no spaces)`,
		`headers["x-1"]: duplicates header "X-1" (names are case-insensitive)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems %q; want %q", got, want)
	}
}

// TestCustomHeaderNameLimit: a custom header name of MaxHeaderNameLen
// characters validates and composes (go-message v0.18.2 panics folding
// names of 74 or more), and one character more is refused on the name.
func TestCustomHeaderNameLimit(t *testing.T) {
	t.Parallel()
	for _, n := range []int{MaxHeaderNameLen, MaxHeaderNameLen + 1} {
		name := "X-" + strings.Repeat("n", n-2)
		r := benchRequest()
		r.Headers = map[string]string{name: "one two three"}
		out, err := Compose(r, ComposeOptions{Now: testNow})
		if n > MaxHeaderNameLen {
			want := fmt.Sprintf(`headers[%q]: the name is %d characters long; the limit is %d`, name, n, MaxHeaderNameLen)
			var ve *ValidationError
			if !errors.As(err, &ve) || !slices.Equal(problemStrings(ve.Problems), []string{want}) {
				t.Errorf("name of %d: Compose error = %v; want the one problem %q", n, err, want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("name of %d: Compose = %v", n, err)
		}
		if got := parseMessage(t, out).header.Get(name); got != "one two three" {
			t.Errorf("name of %d: header reads back as %q", n, got)
		}
	}
}

// TestValidateCountsBeforeParsing: lists over the recipient limit are
// refused on their length, without a problem per unparsed entry.
func TestValidateCountsBeforeParsing(t *testing.T) {
	t.Parallel()
	bad := make([]string, 3*MaxRecipients)
	for i := range bad {
		bad[i] = "not an address"
	}
	r := validRequest()
	r.To, r.ReplyTo = bad[:MaxRecipients], bad
	r.Cc = []string{"c@example.org"}
	var ve *ValidationError
	if !errors.As(r.Validate(), &ve) {
		t.Fatal("Validate() passed; want problems")
	}
	want := []string{
		fmt.Sprintf("to: %d recipients across to, cc and bcc; Gmail allows at most %d per message", MaxRecipients+1, MaxRecipients),
		fmt.Sprintf("reply_to: %d addresses; the limit is %d", 3*MaxRecipients, MaxRecipients),
	}
	if got := problemStrings(ve.Problems); !slices.Equal(got, want) {
		t.Errorf("problems %q; want %q", got, want)
	}
}
