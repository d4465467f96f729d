package sender_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/policy"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// TestIdempotencyScopedByAccount: one key from two mailboxes of one domain
// is two sends, each with its own Message-ID, and a redelivery of either
// answers with its own Gmail IDs and account, never the other's.
func TestIdempotencyScopedByAccount(t *testing.T) {
	t.Parallel()
	const carol = "carol@example.com"
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		e.Connect(carol)
		da := delivery("ps-a", sendertest.NewRequest(alice, "shared"))
		dc := delivery("ps-c", sendertest.NewRequest(carol, "shared"))
		wantAck(t, e.Deliver(da))
		first := map[string]results.Event{alice: oneResult(t, e).Event}
		wantAck(t, e.Deliver(dc))
		first[carol] = oneResult(t, e).Event

		out := e.Outbox()
		wantOutbox(t, e, 2)
		if out[0].Email == out[1].Email {
			t.Fatalf("both sends went from %s", out[0].Email)
		}
		if a, c := readEML(t, out[0].Path).header.Get("Message-Id"), readEML(t, out[1].Path).header.Get("Message-Id"); a == c {
			t.Errorf("both mailboxes sent Message-ID %s; a recipient's Gmail may take them for one message", a)
		}
		for acct, ev := range first {
			if ev.Status != results.StatusSent || ev.Account != acct || ev.IdempotencyKey != "shared" {
				t.Errorf("first result of %s = %+v", acct, ev)
			}
		}
		if first[alice].GmailMessageID == first[carol].GmailMessageID {
			t.Fatalf("both sends report Gmail ID %s", first[alice].GmailMessageID)
		}

		for acct, d := range map[string]sender.Delivery{alice: da, carol: dc} {
			wantAck(t, e.Deliver(d))
			ev := oneResult(t, e).Event
			if ev.Status != results.StatusDuplicate || ev.Account != acct ||
				ev.GmailMessageID != first[acct].GmailMessageID || ev.GmailThreadID != first[acct].GmailThreadID {
				t.Errorf("redelivery for %s = %+v; want a duplicate carrying only %s's IDs %+v", acct, ev, acct, first[acct])
			}
		}
		wantOutbox(t, e, 2)
		for _, acct := range []string{alice, carol} {
			if rec := record(e, acct, "shared"); rec.Account != acct || rec.App != ledger.DefaultApp || rec.GmailMessageID != first[acct].GmailMessageID {
				t.Errorf("ledger record of %s = %+v", acct, rec)
			}
		}
	})
}

// TestIdempotencyScopedByApp: one key from one mailbox through two apps is
// two sends; each app's redelivery is a duplicate of its own send.
func TestIdempotencyScopedByApp(t *testing.T) {
	t.Parallel()
	apps, errs := policy.ParseApps(`{"billing":{"accounts":["alice@example.com"]},"crm":{"accounts":["alice@example.com"]}}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store, Policy: &policy.Policy{Apps: apps}})
		e.Connect(alice)
		req := sendertest.NewRequest(alice, "order-42")
		deliveries := map[string]sender.Delivery{}
		gmailID := map[string]string{}
		for _, app := range []string{"billing", "crm"} {
			d := delivery("ps-"+app, req)
			d.App = app
			deliveries[app] = d
			wantAck(t, e.Deliver(d))
			ev := oneResult(t, e).Event
			if ev.Status != results.StatusSent {
				t.Fatalf("%s: result = %+v (error %+v); want sent", app, ev, ev.Error)
			}
			gmailID[app] = ev.GmailMessageID
		}
		wantOutbox(t, e, 2)
		for app, d := range deliveries {
			wantAck(t, e.Deliver(d))
			if ev := oneResult(t, e).Event; ev.Status != results.StatusDuplicate || ev.GmailMessageID != gmailID[app] {
				t.Errorf("%s redelivery = %+v; want a duplicate of Gmail message %s", app, ev, gmailID[app])
			}
			rec := e.Record(ledger.Scope{App: app, Account: alice, Key: "order-42"}.ID())
			if rec.App != app || rec.GmailMessageID != gmailID[app] {
				t.Errorf("ledger record of %s = %+v", app, rec)
			}
		}
		wantOutbox(t, e, 2)
	})
}

// TestCorrectedRequestReusesFailedKey is the idempotency trap of issue 20:
// a request fails permanently (README's placeholder attachment), the
// publisher fixes it and republishes under the same key, and it is sent.
// The same broken content again is still a duplicate of the failure, and
// once sent, the key is a duplicate whatever the content.
func TestCorrectedRequestReusesFailedKey(t *testing.T) {
	t.Parallel()
	attach := func(data string) sendertest.Request {
		return sendertest.NewRequest(alice, "invoice-7").With("attachments",
			[]map[string]any{{"filename": "invoice.pdf", "content_type": "application/pdf", "data": data}})
	}
	broken, fixed := attach("<base64>"), attach("JVBERi0xLjQK")
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)

		wantAck(t, e.Deliver(delivery("ps-1", broken)))
		wantFailed(t, oneResult(t, e), "invalid_request", false)
		failedRec := record(e, alice, "invoice-7")

		// The same content: a duplicate that carries the original error.
		wantAck(t, e.Deliver(delivery("ps-2", broken)))
		r := oneResult(t, e)
		if r.Event.Status != results.StatusDuplicate || r.Event.Error == nil || r.Event.Error.Code != "invalid_request" ||
			!strings.Contains(r.Event.Error.Message, "the original request failed") {
			t.Fatalf("republished broken request: result = %+v (error %+v); want a duplicate of the failure", r.Event, r.Event.Error)
		}
		wantOutbox(t, e, 0)

		// Corrected content under the same key: a new send.
		wantAck(t, e.Deliver(delivery("ps-3", fixed)))
		r = oneResult(t, e)
		if r.Event.Status != results.StatusSent || r.Event.Attempt != 1 || r.Event.MaybeDuplicate || r.Event.Error != nil || r.Event.IdempotencyKey != "invoice-7" {
			t.Fatalf("corrected request: result = %+v (error %+v); want sent on attempt 1", r.Event, r.Event.Error)
		}
		wantOutbox(t, e, 1)
		sent := r.Event
		rec := record(e, alice, "invoice-7")
		if rec.State != ledger.StateSent || rec.Attempts != 1 || rec.ErrorCode != "" || rec.ErrorMessage != "" || rec.MaybeDuplicate ||
			rec.Fingerprint == failedRec.Fingerprint || rec.PubSubMessageID != "ps-3" {
			t.Errorf("ledger record after the corrected send = %+v", rec)
		}

		// Sent: every content is a duplicate now, the broken one included.
		for i, req := range []sendertest.Request{fixed, broken, fixed.With("subject", "another")} {
			wantAck(t, e.Deliver(delivery("ps-9", req)))
			if r := oneResult(t, e); r.Event.Status != results.StatusDuplicate || r.Event.GmailMessageID != sent.GmailMessageID || r.Event.Error != nil {
				t.Errorf("request %d after the send: result = %+v; want a duplicate of %s", i, r.Event, sent.GmailMessageID)
			}
		}
		wantOutbox(t, e, 1)
	})
}

// TestCrashTakeoverIsMaybeDuplicate: a delivery claims a request and dies
// (kill -9, out of memory) without a word, perhaps after Gmail took the
// message. Once its lease lapses, the redelivery sends once more and says
// maybe_duplicate. Had that delivery died too, the next one stops instead
// of risking a third copy.
func TestCrashTakeoverIsMaybeDuplicate(t *testing.T) {
	t.Parallel()
	const lease = time.Minute
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		ctx := context.Background()
		e := sendertest.New(t, sendertest.Options{Store: store, Lease: lease, SendTimeout: lease / 2})
		e.Connect(alice)
		d := delivery("ps-1", sendertest.NewRequest(alice, "crash-1"))
		id := ledger.Scope{Account: alice, Key: "crash-1"}.ID()
		// What the dead delivery left: its claim, and nothing else.
		crash := func() {
			t.Helper()
			if _, out, err := e.Ledger.Claim(ctx, id, ledger.ClaimRequest{PubSubMessageID: "ps-1", Fingerprint: ledger.Fingerprint(d.Data),
				Lease: lease, Now: e.Clock.Now()}); err != nil || (out != ledger.ClaimNew && out != ledger.ClaimTakeover) {
				t.Fatalf("the crashing delivery's claim = %v, %v", out, err)
			}
		}

		crash()
		// Within the lease the holder may still be alive: wait.
		e.Clock.Advance(lease / 2)
		wantNack(t, e.Deliver(d))
		noResult(t, e)
		wantOutbox(t, e, 0)

		e.Clock.Advance(lease / 2)
		wantAck(t, e.Deliver(d))
		r := oneResult(t, e)
		if r.Event.Status != results.StatusSent || !r.Event.MaybeDuplicate || r.Event.Attempt != 2 {
			t.Fatalf("after the crash: result = %+v; want sent, maybe_duplicate, attempt 2", r.Event)
		}
		wantOutbox(t, e, 1)
		if rec := record(e, alice, "crash-1"); rec.State != ledger.StateSent || !rec.MaybeDuplicate || rec.Lapsed != 1 {
			t.Errorf("ledger record = %+v; want sent, maybe_duplicate, lapsed 1", rec)
		}
		wantAck(t, e.Deliver(d))
		if r := oneResult(t, e); r.Event.Status != results.StatusDuplicate || !r.Event.MaybeDuplicate {
			t.Errorf("redelivery after the send: %+v; want a duplicate, still maybe_duplicate", r.Event)
		}

		// Two crashes in a row: the third delivery sends nothing.
		d2 := delivery("ps-2", sendertest.NewRequest(alice, "crash-2"))
		id = ledger.Scope{Account: alice, Key: "crash-2"}.ID()
		d = d2
		crash()
		e.Clock.Advance(lease)
		crash()
		e.Clock.Advance(lease)
		gmailBefore := e.Requests.Gmail()
		wantAck(t, e.Deliver(d2))
		r = oneResult(t, e)
		wantFailed(t, r, "gmail_error", false, "2 earlier deliveries", "Sent folder")
		if !r.Event.MaybeDuplicate {
			t.Errorf("result = %+v; want maybe_duplicate", r.Event)
		}
		if n := e.Requests.Gmail() - gmailBefore; n != 0 {
			t.Errorf("Gmail saw %d sends after two crashes; want none", n)
		}
		if rec := record(e, alice, "crash-2"); rec.State != ledger.StateFailed || !rec.MaybeDuplicate || rec.Lapsed != 2 {
			t.Errorf("ledger record = %+v; want failed, maybe_duplicate, lapsed 2", rec)
		}
		// Failed but maybe sent: not reusable, even for other content.
		wantAck(t, e.Deliver(delivery("ps-3", sendertest.NewRequest(alice, "crash-2").With("subject", "again"))))
		if r := oneResult(t, e); r.Event.Status != results.StatusDuplicate {
			t.Errorf("other content under a maybe-sent key: %+v; want a duplicate", r.Event)
		}
		wantOutbox(t, e, 1)
	})
}
