package sender_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// limitTo sets account's daily message limit as an operator would.
func limitTo(t *testing.T, e *sendertest.Env, account string, n int) {
	t.Helper()
	if _, err := e.Registry.SetDailyLimit(context.Background(), account, n, e.Clock.Now()); err != nil {
		t.Fatalf("SetDailyLimit: %v", err)
	}
}

// sendAll delivers one request per key to s and requires each acked with
// a sent result.
func sendAll(t *testing.T, e *sendertest.Env, s *sender.Sender, account string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		wantAck(t, e.DeliverTo(s, delivery("ps-"+k, sendertest.NewRequest(account, k))))
		if r := oneResult(t, e); r.Event.Status != results.StatusSent {
			t.Fatalf("%s: result %+v; want sent", k, r.Event)
		}
	}
}

// TestDailyLimitAnswersLongHold: with daily_limit 2, the third message
// waits about 25 hours, longer than the deployed redeliveries can (99 x
// 600 s), so its first delivery is answered: failed, daily_limit,
// retryable, with retry_at and the fix, no Gmail call, and its claim
// released, so that publishing it again after retry_at sends it.
func TestDailyLimitAnswersLongHold(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		limitTo(t, e, alice, 2)
		s := senderFor(t, e, 0)
		sendAll(t, e, s, alice, "q-1", "q-2")
		calls := e.Requests.Gmail()

		wantAck(t, e.DeliverTo(s, delivery("ps-q-3", sendertest.NewRequest(alice, "q-3"))))

		r := oneResult(t, e)
		wantFailed(t, r, string(gmail.CodeDailyLimit), true, alice+" has sent 2 messages", "daily limit is 2 messages",
			`PATCH /admin/accounts/`+alice+` {"daily_limit": N}`)
		want := registry.HourOf(e.Clock.Now()).Add(time.Hour + registry.QuotaWindow)
		if !r.Event.Error.RetryAt.Equal(want) {
			t.Errorf("retry_at = %v; want %v, when the first hour leaves the window", r.Event.Error.RetryAt, want)
		}
		if n := e.Requests.Gmail() - calls; n != 0 {
			t.Errorf("Gmail saw %d sends for the refused message", n)
		}
		wantOutbox(t, e, 2)
		if rec := record(e, alice, "q-3"); rec.State != ledger.StateSending || !rec.LeaseUntil.IsZero() || rec.ErrorCode != string(gmail.CodeDailyLimit) {
			t.Errorf("record %+v; want released with daily_limit", rec)
		}

		// After retry_at the same request, published again, is sent.
		e.Clock.Advance(want.Sub(e.Clock.Now()) + time.Second)
		sendAll(t, e, s, alice, "q-3")
		wantOutbox(t, e, 3)
	})
}

// TestDailyLimitHoldsThenSends: when the window frees a place within what
// redeliveries can wait, the message is nacked on Pub/Sub's schedule,
// with no claim, no Gmail call and no result, and sent once it fits,
// without ever being dead-lettered.
func TestDailyLimitHoldsThenSends(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		limitTo(t, e, alice, 2)
		s := senderFor(t, e, 0)
		sendAll(t, e, s, alice, "h-1", "h-2")
		first := registry.HourOf(e.Clock.Now())
		// Twelve hours on, the first sends leave the window in about 13.
		e.Clock.Advance(12 * time.Hour)
		calls, rejected := e.Requests.Gmail(), e.Sandbox.Stats().SendsRejected
		d := delivery("ps-h-3", sendertest.NewRequest(alice, "h-3"))

		acked := redeliver(t, e, s, d, func(attempt int) {
			noResult(t, e)
			if rec, err := e.Ledger.Get(context.Background(), ledger.Scope{Account: alice, Key: "h-3"}.ID()); !errors.Is(err, ledger.ErrNotFound) {
				t.Fatalf("delivery %d during the hold: record %+v, %v; want none (no claim)", attempt, rec, err)
			}
		})

		if acked == 0 {
			t.Fatal("the held message was dead-lettered")
		}
		if now := e.Clock.Now(); now.Before(first.Add(time.Hour + registry.QuotaWindow)) {
			t.Errorf("sent at %v, before the first hour left the window", now)
		}
		// As in TestDailyCapHoldOutlastsSixHours, the access token cached
		// half a day ago may first meet one 401 on the shared clock.
		if n, rejected := e.Requests.Gmail()-calls, int(e.Sandbox.Stats().SendsRejected-rejected); n-rejected != 1 || rejected > 1 {
			t.Errorf("Gmail saw %d sends (%d expired-token 401s) for the held message; want 1", n, rejected)
		}
		if r := oneResult(t, e); r.Event.Status != results.StatusSent || r.Event.Attempt != 1 {
			t.Errorf("result %+v; want sent on its first attempt", r.Event)
		}
		wantOutbox(t, e, 3)
	})
}

// TestDailyLimitCountsEverySend: what the sender counted is in the
// registry once it closes, including sends whose write it coalesced, and
// a second instance reading it holds the mailbox at the same limit.
func TestDailyLimitCountsEverySend(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		limitTo(t, e, alice, 4)
		s := senderFor(t, e, 0)
		sendAll(t, e, s, alice, "c-1", "c-2", "c-3")
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if m, r := e.Account(alice).Used(e.Clock.Now()); m != 3 || r != 3 {
			t.Fatalf("registry counts %d messages, %d recipients; want 3 and 3", m, r)
		}
		other := senderFor(t, e, 0)
		sendAll(t, e, other, alice, "c-4")
		wantAck(t, e.DeliverTo(other, delivery("ps-c-5", sendertest.NewRequest(alice, "c-5"))))
		wantFailed(t, oneResult(t, e), string(gmail.CodeDailyLimit), true, "has sent 4 messages")
		wantOutbox(t, e, 4)
	})
}

// TestDailyLimitConcurrentDeliveries: deliveries racing on one instance
// cannot all slip under the limit: each reserves its place before Gmail.
func TestDailyLimitConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	const limit, n = 5, 24
	e := sendertest.New(t, sendertest.Options{})
	e.Connect(alice)
	limitTo(t, e, alice, limit)
	s := senderFor(t, e, 0)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := fmt.Sprintf("r-%d", i)
			if err := e.DeliverTo(s, delivery("ps-"+k, sendertest.NewRequest(alice, k))); err != nil {
				t.Errorf("%s: Handle = %v; want an ack", k, err)
			}
		}()
	}
	wg.Wait()
	sent, refused := 0, 0
	for _, r := range e.Results() {
		switch {
		case r.Event.Status == results.StatusSent:
			sent++
		case r.Event.Error != nil && r.Event.Error.Code == string(gmail.CodeDailyLimit):
			refused++
		default:
			t.Errorf("unexpected result %+v", r.Event)
		}
	}
	if sent != limit || refused != n-limit {
		t.Errorf("%d sent and %d refused; want %d and %d", sent, refused, limit, n-limit)
	}
	wantOutbox(t, e, limit)
}

// TestDailyLimitDuplicateIsNotRefused: a redelivery of a message already
// sent, arriving once the mailbox is at its limit, is answered as the
// duplicate it is.
func TestDailyLimitDuplicateIsNotRefused(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{})
	e.Connect(alice)
	limitTo(t, e, alice, 1)
	s := senderFor(t, e, 0)
	sendAll(t, e, s, alice, "d-1")
	wantAck(t, e.DeliverTo(s, delivery("ps-d-1", sendertest.NewRequest(alice, "d-1"))))
	if r := oneResult(t, e); r.Event.Status != results.StatusDuplicate || r.Event.GmailMessageID == "" {
		t.Errorf("result %+v; want the duplicate with the original's Gmail ID", r.Event)
	}
	wantOutbox(t, e, 1)
}

// TestDailyLimitByKind: without an override a consumer mailbox stops at
// 500 a day and a Workspace one (hd at connect) goes on to 2,000, until
// its 10,000 recipients run out.
func TestDailyLimitByKind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := sendertest.New(t, sendertest.Options{})
	const ws = "carol@corp.example"
	e.Connect(alice)
	e.Connect(ws)
	a := e.Account(ws)
	a.HostedDomain = "corp.example"
	must(t, e.Registry.Upsert(ctx, a))
	now := e.Clock.Now()
	// 500 sends already counted this hour, as other instances would have.
	for _, acct := range []string{alice, ws} {
		must(t, e.Registry.AddUsage(ctx, acct, []registry.Bucket{{Hour: registry.HourOf(now), Messages: 500, Recipients: 9999}}, nil))
	}
	s := senderFor(t, e, 0)

	wantAck(t, e.DeliverTo(s, delivery("ps-k-1", sendertest.NewRequest(alice, "k-1"))))
	wantFailed(t, oneResult(t, e), string(gmail.CodeDailyLimit), true, "daily limit is 500 messages")
	sendAll(t, e, s, ws, "k-2")
	wantAck(t, e.DeliverTo(s, delivery("ps-k-3", sendertest.NewRequest(ws, "k-3").With("to", []string{"a@example.org", "b@example.org"}))))
	wantFailed(t, oneResult(t, e), string(gmail.CodeDailyLimit), true, "10000 recipients")

}
