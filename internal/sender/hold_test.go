package sender_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// deployedDeliveries is the deployed subscription's max_delivery_attempts
// (infra/variables.tf).
const deployedDeliveries = 100

// senderFor builds a sender instance on e's stores and clock with the
// deployed attempt settings (maxSend 0: the sender's default, 10).
func senderFor(t *testing.T, e *sendertest.Env, maxSend int) *sender.Sender {
	t.Helper()
	s, err := sender.New(sender.Options{
		Ledger: e.Ledger, Accounts: e.Registry, Tokens: e.Tokens, Results: e.Publisher, OAuth: e.OAuth,
		Gmail: gmail.New(e.URL+"/", nil), ConnectURL: sendertest.ConnectURL, Now: e.Clock.Now,
		MaxDeliveryAttempts: deployedDeliveries, MaxSendAttempts: maxSend,
	})
	if err != nil {
		t.Fatalf("sender.New: %v", err)
	}
	return s
}

// pubsubBackoff is the wait before the redelivery that follows delivery n
// under the deployed retry_policy (10 s minimum, 600 s maximum): Pub/Sub's
// exponential backoff doubles from the minimum up to the maximum.
func pubsubBackoff(n int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < n && d < 600*time.Second; i++ {
		d *= 2
	}
	return min(d, 600*time.Second)
}

// redeliver plays Pub/Sub for d: it delivers to s with deliveryAttempt 1,
// 2, … and, after each nack, advances the clock by Pub/Sub's backoff, until
// an ack or the last attempt. It returns the attempt that was acked (0: the
// last one was nacked, so Pub/Sub dead-letters the request). every runs
// after each nacked delivery but the last.
func redeliver(t *testing.T, e *sendertest.Env, s *sender.Sender, d sender.Delivery, every func(attempt int)) int {
	t.Helper()
	for attempt := 1; attempt <= deployedDeliveries; attempt++ {
		d.DeliveryAttempt = attempt
		err := e.DeliverTo(s, d)
		if err == nil {
			return attempt
		}
		if !errors.Is(err, sender.ErrRetry) {
			t.Fatalf("attempt %d: Handle = %v; want an ack or a nack", attempt, err)
		}
		if attempt == deployedDeliveries {
			return 0
		}
		if every != nil {
			every(attempt)
		}
		e.Clock.Advance(pubsubBackoff(attempt))
	}
	return 0
}

func dailyCap(until time.Time) sandbox.Response {
	return jsonAnswer(429, fmt.Sprintf(userRateLimitMailing, retryTime(until)))
}

// TestDailyCapHoldOutlastsSixHours: Gmail refuses a mailbox for its daily
// cap until six hours from now. Redelivered on Pub/Sub's schedule, the
// request is never dead-lettered, never claimed during the hold, and Gmail
// sees exactly two sends: the refused one and the one after the time.
func TestDailyCapHoldOutlastsSixHours(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		s := senderFor(t, e, 0)
		start := e.Clock.Now()
		until := start.Add(6 * time.Hour)
		must(t, e.Sandbox.InjectResponse(alice, dailyCap(until), 1))
		d := delivery("ps-1", sendertest.NewRequest(alice, "cap-1"))

		acked := redeliver(t, e, s, d, func(attempt int) {
			noResult(t, e)
			if rec := record(e, alice, "cap-1"); rec.Attempts != 1 || rec.ErrorCode != string(gmail.CodeDailyLimit) {
				t.Fatalf("delivery %d during the hold: record %+v; want the one claim, daily_limit", attempt, rec)
			}
		})

		if acked == 0 {
			t.Fatalf("the request was dead-lettered after %d deliveries", deployedDeliveries)
		}
		// 10+20+…+320 s, then 600 s each: delivery 42 is the first after
		// six hours, which README's Reliability section quotes.
		if acked != 42 || e.Clock.Now().Before(until) {
			t.Errorf("acked on delivery %d at %v after the 429; want delivery 42, the first after 6h", acked, e.Clock.Now().Sub(start))
		}
		// The access token cached six hours ago is expired on the shared
		// clock but not on oauth2's real one, so the final send may first
		// meet one 401 and renew it: in production oauth2 renews it before
		// the call. Apart from that, Gmail sees two sends.
		st := e.Sandbox.Stats()
		if n := int64(e.Requests.Gmail()) - st.SendsRejected; n != 2 || st.SendsFaulted != 1 || st.SendsAccepted != 1 || st.SendsRejected > 1 {
			t.Errorf("Gmail saw %d sends besides %d expired-token 401s (%d refused, %d accepted); want 2: the refused one and the one after the hold",
				n, st.SendsRejected, st.SendsFaulted, st.SendsAccepted)
		}
		r := oneResult(t, e)
		if r.Event.Status != results.StatusSent || r.Event.Attempt != 2 {
			t.Errorf("result %+v; want sent on the second real attempt", r.Event)
		}
		wantOutbox(t, e, 1)
		if a := e.Account(alice); !a.HoldUntil.Equal(until) || a.HoldReason == "" {
			t.Errorf("registry hold %v %q; want %v with Gmail's reason", a.HoldUntil, a.HoldReason, until)
		}
	})
}

// TestHoldLongerThanDeliveriesFails: a hold that outlasts every delivery
// Pub/Sub makes (about 15.7 h at the deployed settings) ends on the last
// one in a failed result with the hold's code and retry_at, so nothing is
// lost silently; the request then goes to the dead-letter topic with its
// record released, so republishing it sends it.
func TestHoldLongerThanDeliveriesFails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		code   gmail.Code
		inject func(t *testing.T, e *sendertest.Env) time.Time
	}{
		{"daily cap for 24 hours", gmail.CodeDailyLimit, func(t *testing.T, e *sendertest.Env) time.Time {
			until := e.Clock.Now().Add(24 * time.Hour)
			must(t, e.Sandbox.InjectResponse(alice, dailyCap(until), 1))
			return until
		}},
		{"project quota until next midnight Pacific", gmail.CodeProjectQuota, func(t *testing.T, e *sendertest.Env) time.Time {
			must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(403, projectQuota), 1))
			return gmail.NextPacificMidnight(e.Clock.Now())
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := sendertest.New(t, sendertest.Options{})
			// Start just after midnight Pacific, so the project's quota
			// resets almost a day later, beyond the last delivery.
			now := e.Clock.Now()
			e.Clock.Advance(gmail.NextPacificMidnight(now).Sub(now) + time.Minute)
			e.Connect(alice)
			s := senderFor(t, e, 0)
			until := c.inject(t, e)
			d := delivery("ps-1", sendertest.NewRequest(alice, "long-1"))

			acked := redeliver(t, e, s, d, func(int) { noResult(t, e) })

			if acked != 0 {
				t.Fatalf("acked on delivery %d; want every delivery nacked during the hold", acked)
			}
			if n := e.Requests.Gmail(); n != 1 {
				t.Errorf("Gmail saw %d sends; want only the refused one", n)
			}
			r := oneResult(t, e)
			wantFailed(t, r, string(c.code), true, fmt.Sprintf("delivery attempt %d of %d", deployedDeliveries, deployedDeliveries))
			if !r.Event.Error.RetryAt.Equal(until) {
				t.Errorf("retry_at = %v; want %v", r.Event.Error.RetryAt, until)
			}
			if rec := record(e, alice, "long-1"); rec.State != ledger.StateSending || !rec.LeaseUntil.IsZero() || rec.Attempts != 2 {
				t.Errorf("record %+v; want sending, released, 2 claims (the refused send and the last delivery)", rec)
			}
		})
	}
}

// TestTransientFailuresEndAfterMaxSendAttempts: Gmail answering 500 to
// every try ends after SEND_MAX_ATTEMPTS real attempts in a failed result
// and an ack, long before Pub/Sub's last delivery.
func TestTransientFailuresEndAfterMaxSendAttempts(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		maxSend, want int
	}{{0, sender.DefaultMaxSendAttempts}, {3, 3}} {
		t.Run(fmt.Sprint(c.want), func(t *testing.T) {
			t.Parallel()
			e := sendertest.New(t, sendertest.Options{})
			e.Connect(alice)
			s := senderFor(t, e, c.maxSend)
			must(t, e.Sandbox.InjectGmailErrors(alice, sandbox.ServerError500, -1))
			d := delivery("ps-1", sendertest.NewRequest(alice, "t-1"))

			acked := redeliver(t, e, s, d, func(int) { noResult(t, e) })

			if acked != c.want {
				t.Fatalf("acked on delivery %d; want %d", acked, c.want)
			}
			if n := e.Requests.Gmail(); n != c.want {
				t.Errorf("Gmail saw %d sends; want %d", n, c.want)
			}
			r := oneResult(t, e)
			wantFailed(t, r, string(gmail.CodeGmailError), true, fmt.Sprintf("send attempt %d of %d", c.want, c.want))
			if rec := record(e, alice, "t-1"); rec.State != ledger.StateFailed || rec.Attempts != c.want {
				t.Errorf("record %+v; want failed after %d attempts", rec, c.want)
			}
			wantOutbox(t, e, 0)
		})
	}
}

// TestHoldSharedByInstances: the daily-cap hold one instance learns from
// Gmail is in the registry, so another instance, or one started later,
// refuses the account's messages without a claim, a token read or a Gmail
// call, and sends once the time has passed.
func TestHoldSharedByInstances(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		a, b := senderFor(t, e, 0), senderFor(t, e, 0)
		until := e.Clock.Now().Add(3 * time.Hour)
		must(t, e.Sandbox.InjectResponse(alice, dailyCap(until), 1))
		wantNack(t, e.DeliverTo(a, delivery("ps-1", sendertest.NewRequest(alice, "s-1"))))

		gm, sm, tok := e.Requests.Gmail(), e.Secrets.Calls("AccessSecretVersion"), e.Requests.Count(sendertest.RouteToken)
		e.Clock.Advance(time.Hour)
		d2 := delivery("ps-2", sendertest.NewRequest(alice, "s-2"))
		for name, s := range map[string]*sender.Sender{"another instance": b, "a restarted instance": senderFor(t, e, 0)} {
			wantNack(t, e.DeliverTo(s, d2))
			if _, err := e.Ledger.Get(context.Background(), ledger.Scope{Account: alice, Key: "s-2"}.ID()); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("%s claimed a held request: ledger.Get = %v", name, err)
			}
		}
		if e.Requests.Gmail() != gm || e.Secrets.Calls("AccessSecretVersion") != sm || e.Requests.Count(sendertest.RouteToken) != tok {
			t.Errorf("held deliveries reached Gmail (%d), Secret Manager (%d) or the token endpoint (%d)",
				e.Requests.Gmail()-gm, e.Secrets.Calls("AccessSecretVersion")-sm, e.Requests.Count(sendertest.RouteToken)-tok)
		}
		noResult(t, e)

		e.Clock.Advance(2*time.Hour + time.Second)
		wantAck(t, e.DeliverTo(b, d2))
		if r := oneResult(t, e); r.Event.Status != results.StatusSent || r.Event.Attempt != 1 {
			t.Errorf("after the hold: %+v; want sent on its first attempt", r.Event)
		}
		wantOutbox(t, e, 1)
	})
}
