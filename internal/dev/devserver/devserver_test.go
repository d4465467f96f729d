package devserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/mail"
	"testing"
	"time"
)

// TestEndToEnd is the walking skeleton, as a person with `make dev` and curl
// would do it: connect a mailbox through the sandbox's plain HTML consent
// form, publish a send request, and find the message in the outbox.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	resp := connect(ctx, t, "alice@example.com", "application/json")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm answered %d: %s", resp.StatusCode, body)
	}
	var connected struct {
		Account, Status string
		Scopes          []string
	}
	if err := json.Unmarshal(body, &connected); err != nil || connected.Account != "alice@example.com" || connected.Status != "connected" {
		t.Fatalf("confirm answered %s", body)
	}

	publish(ctx, t, `{"account":"alice@example.com","from_name":"Alice at Acme","to":["Bob <bob@example.org>"],"subject":"Invoice 42","text":"Hello Bob","idempotency_key":"e2e-invoice-42"}`)
	var msgs []*mail.Message
	waitFor(ctx, t, "the message in the outbox", func() bool { msgs = outboxFor(t, "bob@example.org"); return len(msgs) > 0 })
	if len(msgs) != 1 {
		t.Fatalf("%d messages for bob, want 1", len(msgs))
	}
	m := msgs[0]
	from, _ := mail.ParseAddress(m.Header.Get("From"))
	to, _ := mail.ParseAddress(m.Header.Get("To"))
	if from == nil || from.Address != "alice@example.com" || from.Name != "Alice at Acme" {
		t.Errorf("From = %q", m.Header.Get("From"))
	}
	if to == nil || to.Address != "bob@example.org" {
		t.Errorf("To = %q", m.Header.Get("To"))
	}
	if got := m.Header.Get("Subject"); got != "Invoice 42" {
		t.Errorf("Subject = %q", got)
	}
	waitFor(ctx, t, "the sent result", func() bool { return contains(out.String(), `"idempotency_key":"e2e-invoice-42"`, `"status":"sent"`) })
}
