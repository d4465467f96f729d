package sender_test

import (
	"bytes"
	"context"
	"net/mail"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// TestSendAsAlias runs through the relay to the sandbox's Gmail: a from, or
// a raw From, that is a registered alias goes out with that From; one that
// is not registered is refused with the way to register it and never
// reaches Gmail. Registered with the relay but not verified in Gmail, the
// alias is rewritten to the account by Gmail, as the sandbox models it.
func TestSendAsAlias(t *testing.T) {
	t.Parallel()
	const billing = "billing@example.com"
	raw := func(from string) []byte {
		return []byte("From: " + from + "\r\nTo: Bob <bob@example.org>\r\nSubject: raw\r\nMessage-ID: <raw-1@example.com>\r\n\r\nRaw body.\r\n")
	}
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		cases := []struct {
			name       string
			req        sendertest.Request
			registered bool // with the relay
			verified   bool // in Gmail (the sandbox)
			wantFrom   string
			refused    bool
		}{
			{name: "registered alias", req: sendertest.NewRequest(alice, "k").With("from", "Billing@Example.com", "from_name", "Acme Billing"),
				registered: true, verified: true, wantFrom: "Billing@Example.com"},
			{name: "the account itself", req: sendertest.NewRequest(alice, "k").With("from", alice), wantFrom: alice},
			{name: "unregistered alias", req: sendertest.NewRequest(alice, "k").With("from", billing), verified: true, refused: true},
			{name: "registered, not verified in Gmail", req: sendertest.NewRequest(alice, "k").With("from", billing),
				registered: true, wantFrom: alice},
			{name: "raw from a registered alias", req: sendertest.Request{"account": alice, "raw": raw("Billing <billing@example.com>"), "idempotency_key": "k"},
				registered: true, verified: true, wantFrom: billing},
			{name: "raw from another address", req: sendertest.Request{"account": alice, "raw": raw("sales@example.com"), "idempotency_key": "k"},
				registered: true, verified: true, refused: true},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				e := sendertest.New(t, sendertest.Options{Store: store})
				e.Connect(alice)
				if c.registered {
					if _, err := e.Registry.SetAliases(context.Background(), alice, []string{billing}, e.Clock.Now()); err != nil {
						t.Fatal(err)
					}
				}
				if c.verified {
					e.Sandbox.SetAliases(alice, []string{billing})
				}

				wantAck(t, e.Deliver(delivery("ps-1", c.req)))

				r := oneResult(t, e)
				if c.refused {
					wantFailed(t, r, "invalid_request", false, "does not match account", `"Send mail as"`, "scripts/admin.sh aliases "+alice)
					wantOutbox(t, e, 0)
					if n := e.Requests.Gmail(); n != 0 {
						t.Errorf("Gmail saw %d sends for a refused From", n)
					}
					return
				}
				if r.Event.Status != results.StatusSent {
					t.Fatalf("result = %+v", r.Event)
				}
				wantOutbox(t, e, 1)
				m := readEML(t, e.Outbox()[0].Path)
				from, err := mail.ParseAddress(m.header.Get("From"))
				if err != nil || from.Address != c.wantFrom {
					t.Errorf("the .eml is From %q (%v); want %s", m.header.Get("From"), err, c.wantFrom)
				}
				if raw, ok := c.req["raw"].([]byte); ok && c.verified && !bytes.Equal(m.raw, raw) {
					t.Errorf("Gmail got\n%q\nwant the publisher's bytes", m.raw)
				}
			})
		}
	})
}
