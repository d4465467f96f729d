package sender_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// TestHappyPath: one delivery, one .eml, one sent result naming Gmail's IDs,
// and a ledger record that says sent.
func TestHappyPath(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		req := sendertest.NewRequest(alice, "order-42").With("from_name", "Alice at Acme", "subject", "Invoice 42")

		wantAck(t, e.Deliver(delivery("ps-1", req)))

		out := e.Outbox()
		wantOutbox(t, e, 1)
		if out[0].Email != alice {
			t.Errorf("sent as %q; want %q", out[0].Email, alice)
		}
		m := readEML(t, out[0].Path)
		if got, want := m.header.Get("Message-Id"), message.MessageID(sender.MessageIDKey(ledger.Scope{Account: alice, Key: "order-42"}.ID()), "example.com"); got != want {
			t.Errorf("Message-ID = %q; want %q, derived from the request's scope", got, want)
		}
		if got := m.header.Get("From"); !strings.Contains(got, "<"+alice+">") || !strings.Contains(got, "Alice at Acme") {
			t.Errorf("From = %q; want the account with from_name", got)
		}
		if got := m.header.Get("Subject"); got != "Invoice 42" {
			t.Errorf("Subject = %q", got)
		}

		r := oneResult(t, e)
		ev := r.Event
		if ev.Status != results.StatusSent || ev.IdempotencyKey != "order-42" || ev.PubSubMessageID != "ps-1" ||
			ev.Account != alice || ev.Attempt != 1 || ev.Error != nil || ev.MaybeDuplicate {
			t.Errorf("result = %+v", ev)
		}
		if ev.GmailMessageID != out[0].ID || ev.GmailThreadID != out[0].ThreadID {
			t.Errorf("result names Gmail message %q thread %q; the sandbox accepted %q thread %q", ev.GmailMessageID, ev.GmailThreadID, out[0].ID, out[0].ThreadID)
		}
		rec := record(e, alice, "order-42")
		if rec.State != ledger.StateSent || rec.GmailMessageID != out[0].ID || rec.Attempts != 1 || !rec.LeaseUntil.IsZero() {
			t.Errorf("ledger record = %+v", rec)
		}
		if n := e.Requests.Count(sendertest.RouteSend); n != 0 || e.Requests.Count(sendertest.RouteUpload) != 1 {
			t.Errorf("Gmail saw %d simple and %d upload sends; want 0 and 1", n, e.Requests.Count(sendertest.RouteUpload))
		}

		// Another key composes another Message-ID; the same key, on a
		// fresh instance after the first record is gone, the same one.
		wantAck(t, e.Deliver(delivery("ps-2", sendertest.NewRequest(alice, "order-43"))))
		if got := readEML(t, e.Outbox()[1].Path).header.Get("Message-Id"); got != message.MessageID(sender.MessageIDKey(ledger.Scope{Account: alice, Key: "order-43"}.ID()), "example.com") || got == m.header.Get("Message-Id") {
			t.Errorf("second Message-ID = %q", got)
		}
		e.Results()
	})
}

func TestRawMode(t *testing.T) {
	t.Parallel()
	raw := func(from string) []byte {
		return []byte("From: " + from + "\r\nTo: Bob <bob@example.org>\r\nSubject: built by the publisher\r\n" +
			"Message-ID: <raw-1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nRaw body.\r\n")
	}
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		cases := []struct {
			name string
			from string
			ok   bool
		}{
			{"from is the account", "Alice <alice@example.com>", true},
			{"from in another case", "ALICE@Example.COM", true},
			{"from is someone else", "Mallory <mallory@example.com>", false},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				e := sendertest.New(t, sendertest.Options{Store: store})
				e.Connect(alice)
				body := raw(c.from)
				req := sendertest.Request{"account": alice, "raw": body, "idempotency_key": "raw-1"}

				wantAck(t, e.Deliver(delivery("ps-1", req)))

				r := oneResult(t, e)
				if !c.ok {
					wantFailed(t, r, "invalid_request", false, "From", "mallory@example.com")
					wantOutbox(t, e, 0)
					if n := e.Requests.Gmail(); n != 0 {
						t.Errorf("Gmail saw %d sends for an invalid raw message", n)
					}
					return
				}
				if r.Event.Status != results.StatusSent {
					t.Fatalf("result = %+v", r.Event)
				}
				wantOutbox(t, e, 1)
				if got := readEML(t, e.Outbox()[0].Path).raw; !bytes.Equal(got, body) {
					t.Errorf("Gmail got\n%q\nwant the publisher's bytes\n%q", got, body)
				}
			})
		}
	})
}

// TestUploadEndpoint: a message over 5 MB goes through a resumable upload,
// and its attachment arrives byte for byte.
func TestUploadEndpoint(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		data := make([]byte, 6<<20)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		req := sendertest.NewRequest(alice, "big-1").With("attachments", []map[string]any{{
			"filename": "scan.bin", "content_type": "application/octet-stream", "data": data,
		}})

		wantAck(t, e.Deliver(delivery("ps-1", req)))

		if r := oneResult(t, e); r.Event.Status != results.StatusSent {
			t.Fatalf("result = %+v", r.Event)
		}
		out := e.Outbox()
		wantOutbox(t, e, 1)
		if out[0].Size <= gmail.ResumableAbove {
			t.Fatalf("the composed message is %d bytes; the test needs it over %d", out[0].Size, gmail.ResumableAbove)
		}
		// A resumable session: one request to open it, one per piece.
		pieces := (int(out[0].Size) + gmail.ResumableChunk - 1) / gmail.ResumableChunk
		if up, simple := e.Requests.Count(sendertest.RouteUpload), e.Requests.Count(sendertest.RouteSend); up != 1+pieces || simple != 0 {
			t.Errorf("Gmail saw %d upload and %d simple sends; want %d and 0", up, simple, 1+pieces)
		}
		var found bool
		for _, p := range readEML(t, out[0].Path).parts(t) {
			if p.filename == "scan.bin" {
				found = true
				if !bytes.Equal(p.body, data) {
					t.Errorf("attachment is %d bytes and differs from the %d sent", len(p.body), len(data))
				}
			}
		}
		if !found {
			t.Error("the attachment is missing from the sent message")
		}
	})
}

// TestThread: thread_id reaches Gmail (the sandbox echoes it), and the
// reply headers are in the message.
func TestThread(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		const thread = "18f4a2b3c5d6e7f8"
		req := sendertest.NewRequest(alice, "reply-1").With("thread_id", thread,
			"in_reply_to", "<first@example.org>", "references", []string{"<first@example.org>"})

		wantAck(t, e.Deliver(delivery("ps-1", req)))

		r := oneResult(t, e)
		out := e.Outbox()
		wantOutbox(t, e, 1)
		if out[0].ThreadID != thread || r.Event.GmailThreadID != thread {
			t.Errorf("Gmail filed the message in thread %q and the result says %q; want %q", out[0].ThreadID, r.Event.GmailThreadID, thread)
		}
		h := readEML(t, out[0].Path).header
		if h.Get("In-Reply-To") != "<first@example.org>" || h.Get("References") != "<first@example.org>" {
			t.Errorf("In-Reply-To %q, References %q", h.Get("In-Reply-To"), h.Get("References"))
		}
	})
}

// TestRedeliveryOfSent: Pub/Sub delivers a sent message again; the sender
// reports a duplicate with the first send's IDs and does not call Gmail.
func TestRedeliveryOfSent(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		d := delivery("ps-1", sendertest.NewRequest(alice, "k-1"))
		wantAck(t, e.Deliver(d))
		first := oneResult(t, e)

		// The same instance, and another one with cold caches.
		for i, s := range []*sender.Sender{e.Sender, e.NewSender()} {
			wantAck(t, e.DeliverTo(s, d))
			r := oneResult(t, e)
			if r.Event.Status != results.StatusDuplicate || r.Event.GmailMessageID != first.Event.GmailMessageID ||
				r.Event.GmailThreadID != first.Event.GmailThreadID || r.Event.IdempotencyKey != "k-1" {
				t.Errorf("redelivery %d: result = %+v; want a duplicate of %+v", i+1, r.Event, first.Event)
			}
		}
		wantOutbox(t, e, 1)
		if n := e.Requests.Gmail(); n != 1 {
			t.Errorf("Gmail saw %d sends; want 1", n)
		}
	})
}

// TestConcurrentDuplicates: 20 deliveries of one key at once, spread over
// two instances, make one send; the others nack or report a duplicate, and
// redelivering the nacked ones only ever adds duplicates.
func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		instances := []*sender.Sender{e.Sender, e.NewSender()}
		req := sendertest.NewRequest(alice, "same-key")

		pending := make([]int, 20)
		for i := range pending {
			pending[i] = i
		}
		for round := 0; len(pending) > 0; round++ {
			if round == 10 {
				t.Fatalf("%d deliveries still nacked after %d rounds", len(pending), round)
			}
			var mu sync.Mutex
			var again []int
			var wg sync.WaitGroup
			for _, i := range pending {
				wg.Go(func() {
					err := e.DeliverTo(instances[i%2], delivery(fmt.Sprintf("ps-%d", i), req))
					if err != nil {
						wantNack(t, err)
						mu.Lock()
						again = append(again, i)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			pending = again
		}

		wantOutbox(t, e, 1)
		if n := e.Requests.Gmail(); n != 1 {
			t.Errorf("Gmail saw %d sends; want 1", n)
		}
		count := map[results.Status]int{}
		for _, r := range e.Results() {
			checkAttrs(t, r)
			count[r.Event.Status]++
		}
		if count[results.StatusSent] != 1 || count[results.StatusDuplicate] != 19 || len(count) != 2 {
			t.Errorf("results by status = %v; want 1 sent and 19 duplicate", count)
		}
	})
}

// TestKeyPrecedence: the body's idempotency_key wins over the attribute,
// which wins over the Pub/Sub message ID.
func TestKeyPrecedence(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body, attr, want string
	}{
		{"body over attribute", "from-body", "from-attr", "from-body"},
		{"attribute over message ID", "", "from-attr", "from-attr"},
		{"message ID last", "", "", "ps-77"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := sendertest.New(t, sendertest.Options{})
			e.Connect(alice)
			d := delivery("ps-77", sendertest.NewRequest(alice, c.body))
			if c.attr != "" {
				d.Attributes = map[string]string{"idempotency_key": c.attr}
			}
			wantAck(t, e.Deliver(d))
			r := oneResult(t, e)
			if r.Event.IdempotencyKey != c.want || r.Attributes["idempotency_key"] != c.want {
				t.Errorf("result key %q (attribute %q); want %q", r.Event.IdempotencyKey, r.Attributes["idempotency_key"], c.want)
			}
			if rec := record(e, alice, c.want); rec.State != ledger.StateSent {
				t.Errorf("ledger record under %q = %+v", c.want, rec)
			}
			// Whichever way the key came, it fixes the Message-ID, so every
			// delivery of one request composes the same message.
			if got := readEML(t, e.Outbox()[0].Path).header.Get("Message-Id"); got != message.MessageID(sender.MessageIDKey(ledger.Scope{Account: alice, Key: c.want}.ID()), "example.com") {
				t.Errorf("Message-ID = %q; want the one derived from the key %q", got, c.want)
			}
			// The same request again under the winning key is a duplicate.
			wantAck(t, e.Deliver(d))
			if r := oneResult(t, e); r.Event.Status != results.StatusDuplicate {
				t.Errorf("redelivery: %+v", r.Event)
			}
		})
	}
}

// TestInvalidAttributeKey: a key from the idempotency_key attribute meets
// the request field's rules; one that does not fails the request without
// reaching Gmail.
func TestInvalidAttributeKey(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{})
	e.Connect(alice)
	d := delivery("ps-78", sendertest.NewRequest(alice, ""))
	d.Attributes = map[string]string{"idempotency_key": "bad\tkey"}
	wantAck(t, e.Deliver(d))
	r := oneResult(t, e)
	if r.Event.Status != results.StatusFailed || r.Event.Error == nil || r.Event.Error.Code != string(gmail.CodeInvalidRequest) ||
		!strings.Contains(r.Event.Error.Message, "idempotency_key") {
		t.Errorf("result = %+v", r.Event)
	}
	wantOutbox(t, e, 0)
}

// TestRejectedWithoutRetry: requests that can never succeed end in one
// failed result with a precise message and an ack, without reaching Gmail.
func TestRejectedWithoutRetry(t *testing.T) {
	t.Parallel()
	const carol = "carol@example.com" // disconnected
	const dave = "dave@example.com"   // needs a reconnect
	valid := sendertest.NewRequest(alice, "")
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("r%d@example.org", i)
	}
	cases := []struct {
		name      string
		data      []byte
		code      string
		reconnect bool
		contains  []string
	}{
		{"unknown account", sendertest.NewRequest("nobody@example.com", "").JSON(), "unknown_account", true,
			[]string{"nobody@example.com", "not connected"}},
		{"disconnected account", sendertest.NewRequest(carol, "").JSON(), "unknown_account", true,
			[]string{carol, "disconnected"}},
		{"reauth-required account", sendertest.NewRequest(dave, "").JSON(), "reauth_required", true,
			[]string{dave, "reconnected", "Token has been expired or revoked."}},
		{"malformed JSON", []byte(`{"account": "alice@example.com", "to": [`), "invalid_request", false, []string{"JSON"}},
		{"not JSON at all", []byte("\x00\x01binary"), "invalid_request", false, []string{"JSON"}},
		{"empty data", nil, "invalid_request", false, nil},
		{"no recipient", valid.With("to", nil).JSON(), "invalid_request", false, []string{"to:", "at least one recipient"}},
		{"no body", valid.With("text", nil).JSON(), "invalid_request", false, []string{"text:", "body is required"}},
		{"unknown field", valid.With("priority", "high").JSON(), "invalid_request", false, []string{"priority"}},
		{"101 recipients", valid.With("to", many).JSON(), "invalid_request", false, []string{"101 recipients", "100"}},
		{"CR LF in subject", valid.With("subject", "Hi\r\nBcc: eve@example.com").JSON(), "invalid_request", false, []string{"subject:", "line break"}},
		{"header not allowed", valid.With("headers", map[string]string{"Received": "x"}).JSON(), "invalid_request", false, []string{`headers["Received"]`, "X-*"}},
		{"raw and fields", valid.With("raw", []byte("From: alice@example.com\r\nTo: b@example.org\r\n\r\nx")).JSON(), "invalid_request", false, []string{"raw"}},
		{"account missing", valid.With("account", nil).JSON(), "invalid_request", false, []string{"account"}},
	}
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				e := sendertest.New(t, sendertest.Options{Store: store})
				e.Connect(alice)
				e.Connect(carol)
				e.Connect(dave)
				ctx := context.Background()
				if _, _, err := e.Registry.SetStatus(ctx, carol, "disconnected", "", e.Clock.Now()); err != nil {
					t.Fatal(err)
				}
				if _, _, err := e.Registry.SetStatus(ctx, dave, "reauth_required", "Token has been expired or revoked.", e.Clock.Now()); err != nil {
					t.Fatal(err)
				}
				smBefore := e.Secrets.Calls("AccessSecretVersion")

				wantAck(t, e.Deliver(sender.Delivery{MessageID: "ps-1", Data: c.data}))

				r := oneResult(t, e)
				wantFailed(t, r, c.code, false, c.contains...)
				if r.Event.Error.Message == "" {
					t.Error("the failure has no message")
				}
				if got := r.Event.Error.ReconnectURL != ""; got != c.reconnect {
					t.Errorf("reconnect_url = %q; want one: %v", r.Event.Error.ReconnectURL, c.reconnect)
				}
				if r.Event.IdempotencyKey != "ps-1" {
					t.Errorf("key = %q; want the message ID", r.Event.IdempotencyKey)
				}
				if rec := record(e, r.Event.Account, "ps-1"); rec.State != ledger.StateFailed || rec.ErrorCode != c.code {
					t.Errorf("ledger record = %+v", rec)
				}
				wantOutbox(t, e, 0)
				if n, tok := e.Requests.Gmail(), e.Requests.Count(sendertest.RouteToken); n != 0 || tok != 3 {
					t.Errorf("Gmail saw %d sends and the token endpoint %d calls; want 0 and the 3 exchanges", n, tok)
				}
				if n := e.Secrets.Calls("AccessSecretVersion") - smBefore; n != 0 {
					t.Errorf("read Secret Manager %d times for a request that cannot be sent", n)
				}
				// A redelivery is a duplicate of the failure, never a retry,
				// and says what became of the original.
				wantAck(t, e.Deliver(sender.Delivery{MessageID: "ps-1", Data: c.data}))
				if r := oneResult(t, e); r.Event.Status != results.StatusDuplicate || r.Event.Error == nil || r.Event.Error.Code != c.code {
					t.Errorf("redelivery result = %+v (error %+v)", r.Event, r.Event.Error)
				}
			})
		}
	})
}

// TestInvalidRequestKeepsItsKey: a request that fails validation is still
// reported under the idempotency key and account its publisher wrote.
func TestInvalidRequestKeepsItsKey(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{})
	e.Connect(alice)
	bad := sendertest.NewRequest(alice, "order-7").With("to", nil).JSON()
	wantAck(t, e.Deliver(sender.Delivery{MessageID: "ps-9", Data: bad}))
	r := oneResult(t, e)
	wantFailed(t, r, "invalid_request", false, "to:")
	if r.Event.IdempotencyKey != "order-7" || r.Event.Account != alice {
		t.Errorf("result key %q, account %q; want order-7 and %s", r.Event.IdempotencyKey, r.Event.Account, alice)
	}
}

// TestLogsHoldNoSecrets: a full flow's logs name no token and no body.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{})
	rt := e.Connect(alice)
	const body = "Confidential body 7f3a9"
	attachment := []byte("attachment bytes 51c2e")
	req := sendertest.NewRequest(alice, "log-1").With("text", body, "attachments", []map[string]any{{
		"filename": "a.txt", "content_type": "text/plain", "data": attachment,
	}})
	e.Sandbox.ExpireAccessTokens(alice)
	wantAck(t, e.Deliver(delivery("ps-1", req)))
	e.Sandbox.ExpireAccessTokens(alice)
	wantAck(t, e.Deliver(delivery("ps-2", req.With("idempotency_key", "log-2"))))
	e.Sandbox.RevokeAll(alice)
	e.Sandbox.ExpireAccessTokens(alice)
	wantAck(t, e.Deliver(delivery("ps-3", req.With("idempotency_key", "log-3"))))
	wantAck(t, e.Deliver(delivery("ps-4", sendertest.Request{"account": alice, "text": body})))
	if rs := e.Results(); len(rs) != 4 {
		t.Fatalf("%d results", len(rs))
	}
	logs := e.Logs.String()
	if logs == "" {
		t.Fatal("nothing was logged; the check would prove nothing")
	}
	for _, secret := range []string{rt, body, string(attachment), base64.StdEncoding.EncodeToString(attachment), "ya29.", "1//0"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain %q", secret)
		}
	}
}
