package sandbox_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/mail"
	"os"
	"strings"
	"testing"

	"google.golang.org/api/googleapi"
)

// TestSendAsAliases: as Gmail does, a From that is the mailbox or one of its
// send-as aliases is sent as it came, byte for byte; any other From is
// rewritten to the mailbox's address under the same display name, through
// both the JSON and the upload form; a missing From becomes the mailbox.
// The aliases are set through POST /sandbox/aliases.
func TestSendAsAliases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.gmail(e.connect("alice@example.com"))

	resp, err := e.ts.Client().Post(e.ts.URL+"/sandbox/aliases", "application/json",
		strings.NewReader(`{"email": "Alice@Example.com", "aliases": ["Billing@Example.com", "sales@acme.example"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Email   string   `json:"email"`
		Aliases []string `json:"aliases"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /sandbox/aliases: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if got.Email != "alice@example.com" || strings.Join(got.Aliases, ",") != "billing@example.com,sales@acme.example" {
		t.Errorf("POST /sandbox/aliases answered %+v", got)
	}

	msg := func(from string) []byte {
		h := "To: bob@example.org\r\nSubject: hi\r\nX-Order: 42\r\n"
		if from != "" {
			h = "From: " + from + "\r\n" + h
		}
		return []byte(h + "\r\nbody\r\n")
	}
	cases := []struct {
		name, from string
		rewritten  bool
		wantName   string // the display name kept when rewritten
	}{
		{name: "the mailbox", from: "Alice <alice@example.com>"},
		{name: "an alias", from: "Acme Billing <billing@example.com>"},
		{name: "an alias in another case", from: "SALES@acme.example"},
		{name: "not an alias", from: "Acme Sales <sales@example.com>", rewritten: true, wantName: "Acme Sales"},
		{name: "another mailbox", from: `"Bob" <bob@example.org>`, rewritten: true, wantName: "Bob"},
		{name: "encoded name", from: "=?utf-8?q?J=C3=B6rg?= <j@example.net>", rewritten: true, wantName: "Jörg"},
		{name: "no From", rewritten: true},
	}
	for i, tc := range cases {
		raw := msg(tc.from)
		var sendErr error
		if i%2 == 0 {
			_, sendErr = sendRaw(svc, raw)
		} else {
			_, sendErr = svc.Users.Messages.Send("me", nil).Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822")).Do()
		}
		if sendErr != nil {
			t.Fatalf("%s: send: %v", tc.name, sendErr)
		}
		out := e.sb.Outbox()
		sent, err := os.ReadFile(out[len(out)-1].Path)
		if err != nil {
			t.Fatal(err)
		}
		if !tc.rewritten {
			if !bytes.Equal(sent, raw) {
				t.Errorf("%s: sent\n%s\nwant it unchanged:\n%s", tc.name, sent, raw)
			}
			continue
		}
		m, err := mail.ReadMessage(bytes.NewReader(sent))
		if err != nil {
			t.Fatalf("%s: the sent message does not parse: %v", tc.name, err)
		}
		if from, err := m.Header.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "alice@example.com" || from[0].Name != tc.wantName {
			t.Errorf("%s: From = %q (%v), want %q <alice@example.com>", tc.name, m.Header.Get("From"), err, tc.wantName)
		}
		if m.Header.Get("X-Order") != "42" || m.Header.Get("Subject") != "hi" || !bytes.HasSuffix(sent, []byte("\r\n\r\nbody\r\n")) {
			t.Errorf("%s: the rest of the message changed:\n%s", tc.name, sent)
		}
	}

	// The Go API: another mailbox's aliases are its own, and an empty list
	// removes them.
	if a := e.sb.Aliases("bob@example.org"); len(a) != 0 {
		t.Errorf("bob has aliases %v", a)
	}
	e.sb.SetAliases("alice@example.com", nil)
	if a := e.sb.Aliases("alice@example.com"); len(a) != 0 {
		t.Errorf("after clearing, alice has aliases %v", a)
	}

	for _, body := range []string{`{"aliases": ["a@example.com"]}`, `{"email": "alice@example.com", "aliases": ["A <a@example.com>"]}`, `{"email": "alice@example.com", "alias": []}`} {
		resp, err := e.ts.Client().Post(e.ts.URL+"/sandbox/aliases", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /sandbox/aliases %s = %d, want 400", body, resp.StatusCode)
		}
	}
}
