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
		{name: "every allowed header", raw: "From: \"Alice at Acme\" <alice@example.com>\r\nTo: b@example.org\r\nCc: c@example.org\r\nBcc: d@example.org\r\n" +
			"Reply-To: support@example.com\r\nSubject: hi\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n" +
			"In-Reply-To: <0@example.com>\r\nReferences: <0@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
			"Content-Transfer-Encoding: 7bit\r\nContent-Language: en\r\nX-Order-Id: 42\r\nList-Unsubscribe: <mailto:u@example.com>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nx"},
		{name: "header names in any case", raw: "FROM: alice@example.com\r\nto: b@example.org\r\nmime-version: 1.0\r\ncontent-type: text/plain\r\nMessage-Id: <1@x>\r\nx-a: 1\r\n\r\nx"},
		{name: "plain display name with parentheses", raw: "From: \"Alice (Billing)\" <alice@example.com>\r\nTo: b@example.org\r\n\r\nx"},
		{name: "encoded name in other charset", raw: "From: =?iso-2022-jp?B?GyRCJTUlcyVXJWsbKEI=?= <alice@example.com>\r\nTo: b@example.org\r\n\r\nx"},
		{name: "100 recipients", raw: "From: alice@example.com\r\nTo: " + strings.Join(many[:60], ", ") + "\r\nBcc: " + strings.Join(many[60:100], ", ") + "\r\n\r\nx"},

		{name: "empty", raw: "", msg: "empty"},
		{name: "From mismatch", raw: "From: mallory@example.com\r\nTo: b@example.org\r\n\r\nx", msg: `From address "mallory@example.com" does not match account`},
		{name: "From missing", raw: "To: b@example.org\r\n\r\nx", msg: "From header is required"},
		{name: "From twice", raw: "From: alice@example.com\r\nFrom: mallory@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "From header appears 2 times"},
		{name: "From two addresses", raw: "From: alice@example.com, mallory@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "exactly one address, not 2"},
		{name: "From unparseable", raw: "From: alice@\r\nTo: b@example.org\r\n\r\nx", msg: "From header does not parse"},
		// Refused whatever its value: it names someone else as the sender.
		{name: "Sender is account", raw: "From: alice@example.com\r\nSender: alice@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "the Sender header is not allowed"},
		{name: "Sender mismatch", raw: "From: alice@example.com\r\nSender: mallory@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "the Sender header is not allowed"},
		{name: "Sender twice, named once", raw: "From: alice@example.com\r\nSender: a@example.com\r\nsender: b@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "the Sender header is not allowed"},
		{name: "Resent-From", raw: "From: alice@example.com\r\nResent-From: ceo@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "the Resent-From header is not allowed: Resent-* headers"},
		{name: "every Resent-*", raw: "From: alice@example.com\r\nResent-Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nResent-To: x@example.org\r\nresent-message-id: <r@x>\r\nTo: b@example.org\r\n\r\nx", msg: "the Resent-Date header", n: 3},
		{name: "Received", raw: "Received: from mx.example.com\r\nFrom: alice@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "the Received header is not allowed: a raw message may carry only From, To"},
		{name: "Return-Path", raw: "From: alice@example.com\r\nReturn-Path: <ceo@example.com>\r\nTo: b@example.org\r\n\r\nx", msg: "the Return-Path header is not allowed"},
		{name: "Disposition-Notification-To", raw: "From: alice@example.com\r\nTo: b@example.org\r\nDisposition-Notification-To: spy@example.net\r\n\r\nx", msg: "rename a custom header to X-"},
		{name: "bare Content- prefix", raw: "From: alice@example.com\r\nTo: b@example.org\r\nContent-: x\r\n\r\nx", msg: "the Content- header is not allowed"},
		{name: "display name with address in parentheses", raw: "From: \"CEO (ceo@example.com)\" <alice@example.com>\r\nTo: b@example.org\r\n\r\nx",
			msg: `the From display name "CEO (ceo@example.com)" contains an address`},
		{name: "display name is an address", raw: "From: \"ceo@example.com\" <alice@example.com>\r\nTo: b@example.org\r\n\r\nx", msg: "contains an address"},
		// Unquoted, the @ cannot be in a phrase: net/mail refuses it.
		{name: "unquoted address as display name", raw: "From: ceo@example.com <alice@example.com>\r\nTo: b@example.org\r\n\r\nx", msg: "From header does not parse"},
		{name: "encoded display name with address", raw: "From: =?utf-8?q?CEO_ceo=40example.com?= <alice@example.com>\r\nTo: b@example.org\r\n\r\nx", msg: "contains an address"},
		{name: "full-width at sign", raw: "From: =?utf-8?b?Y2Vv77ygZXhhbXBsZS5jb20=?= <alice@example.com>\r\nTo: b@example.org\r\n\r\nx", msg: "contains an address"},
		{name: "comment with address", raw: "From: alice@example.com (ceo@example.com)\r\nTo: b@example.org\r\n\r\nx", msg: "contains an address"},
		{name: "all at once", raw: "From: \"CEO (ceo@example.com)\" <alice@example.com>\r\nSender: ceo@example.com\r\nResent-From: ceo@example.com\r\nTo: b@example.org\r\n\r\nx", msg: "the Sender header", n: 3},
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
