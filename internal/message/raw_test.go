package message

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheckRaw(t *testing.T) {
	t.Parallel()
	const account = "alice@example.com"
	many := make([]string, MaxRecipients+1)
	for i := range many {
		many[i] = fmt.Sprintf("r%d@example.org", i)
	}
	cases := []struct {
		name string
		raw  string
		msg  string // a fragment of the first problem; "" means accepted
		n    int    // the number of problems when more than one
	}{
		{name: "CRLF", raw: "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nbody\r\n"},
		{name: "LF", raw: "From: alice@example.com\nTo: bob@example.org\n\nbody\n"},
		{name: "no body", raw: "From: alice@example.com\r\nTo: bob@example.org\r\n"},
		{name: "From case differs", raw: "From: Alice <ALICE@Example.COM>\r\nCc: bob@example.org\r\n\r\nx"},
		{name: "Bcc only with group", raw: "From: alice@example.com\r\nTo: undisclosed-recipients:;\r\nBcc: b@example.org\r\n\r\nx"},
		{name: "folded To", raw: "From: alice@example.com\r\nTo: a@example.org,\r\n b@example.org\r\n\r\nx"},
		{name: "NUL in body", raw: "From: alice@example.com\r\nTo: b@example.org\r\n\r\n\x00\r"},
		{name: "Sender is account", raw: "From: alice@example.com\r\nSender: alice@example.com\r\nTo: b@example.org\r\n\r\nx"},
		{name: "encoded name in other charset", raw: "From: =?iso-2022-jp?B?GyRCJTUlcyVXJWsbKEI=?= <alice@example.com>\r\nTo: b@example.org\r\n\r\nx"},
		{name: "100 recipients", raw: "From: alice@example.com\r\nTo: " + strings.Join(many[:60], ", ") + "\r\nBcc: " + strings.Join(many[60:100], ", ") + "\r\n\r\nx"},

		{name: "empty", raw: "", msg: "empty"},
		{name: "From mismatch", raw: "From: mallory@example.com\r\nTo: b@example.org\r\n\r\nx", msg: `From address "mallory@example.com" does not match account`},
		{name: "From missing", raw: "To: b@example.org\r\n\r\nx", msg: "From header is required"},
		{name: "From twice", raw: "From: alice@example.com\r\nFrom: mallory@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "From header appears 2 times"},
		{name: "From two addresses", raw: "From: alice@example.com, mallory@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "exactly one address, not 2"},
		{name: "From unparseable", raw: "From: alice@\r\nTo: b@example.org\r\n\r\nx", msg: "From header does not parse"},
		{name: "Sender mismatch", raw: "From: alice@example.com\r\nSender: mallory@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "Sender address"},
		{name: "no recipients", raw: "From: alice@example.com\r\nSubject: x\r\n\r\nx", msg: "no recipients"},
		{name: "empty To", raw: "From: alice@example.com\r\nTo: \r\n\r\nx", msg: "no recipients"},
		{name: "To twice", raw: "From: alice@example.com\r\nTo: a@example.org\r\nTo: b@example.org\r\n\r\nx", msg: "To header appears 2 times"},
		{name: "To unparseable", raw: "From: alice@example.com\r\nTo: a@\r\nCc: c@example.org\r\n\r\nx", msg: "To header does not parse"},
		{name: "101 recipients", raw: "From: alice@example.com\r\nTo: " + strings.Join(many, ", ") + "\r\n\r\nx", msg: "101 recipients"},
		{name: "NUL in header", raw: "From: alice@example.com\r\nTo: b@example.org\x00\r\nBcc: e@x.io\r\n\r\nx", msg: "NUL"},
		{name: "bare CR", raw: "From: alice@example.com\r\nTo: b@example.org\rBcc: e@x.io\r\n\r\nx", msg: "bare CR"},
		{name: "bare CR at end of header", raw: "From: alice@example.com\r\nTo: b@example.org\r", msg: "bare CR"},
		{name: "no colon", raw: "From: alice@example.com\r\nTo b@example.org\r\n\r\nx", msg: "does not parse"},
		// go-message and net/mail disagree on "From :", so it is refused.
		{name: "space before colon", raw: "From : alice@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "white space before its colon"},
		{name: "leading space", raw: " From: alice@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "does not parse"},
		{name: "blank first line", raw: "\r\nFrom: alice@example.com\r\nTo: b@example.org\r\n", msg: "From header is required", n: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckRaw([]byte(tc.raw), account)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("CheckRaw() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CheckRaw() = %v, want an error matching ErrInvalid", err)
			}
			var ve *ValidationError
			want := max(tc.n, 1)
			if !errors.As(err, &ve) || len(ve.Problems) != want {
				t.Fatalf("CheckRaw() = %v, want %d problem(s)", err, want)
			}
			if p := ve.Problems[0]; p.Field != "raw" || !strings.Contains(p.Message, tc.msg) {
				t.Errorf("problem = {%q, %q}, want field raw with a message containing %q", p.Field, p.Message, tc.msg)
			}
		})
	}
}

func TestCheckRawTooLarge(t *testing.T) {
	t.Parallel()
	head := "From: alice@example.com\r\nTo: b@example.org\r\n\r\n"
	raw := []byte(head + strings.Repeat("x", MaxMessageSize-len(head)))
	if err := CheckRaw(raw, "alice@example.com"); err != nil {
		t.Fatalf("CheckRaw(%d bytes) = %v, want nil at the limit", len(raw), err)
	}
	raw = append(raw, 'x')
	err := CheckRaw(raw, "alice@example.com")
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CheckRaw(%d bytes) = %v, want a *SizeError matching ErrTooLarge", len(raw), err)
	}
	if se.Size != MaxMessageSize+1 || se.Limit != MaxMessageSize || se.What != "raw message" {
		t.Errorf("SizeError = %+v", se)
	}
}
