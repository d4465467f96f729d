package sender_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// TestRateLimitRetryAfter: a 429 with "Retry after" is nacked, and the time
// Gmail gave is honoured for every message of the account: redeliveries
// before it do not reach Gmail, the first after it sends.
func TestRateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		e.Connect(bob)
		e.Sandbox.SetFaultRetryAfter(2 * time.Minute)
		if err := e.Sandbox.InjectGmailErrors(alice, sandbox.RateLimit429, 1); err != nil {
			t.Fatal(err)
		}
		d := delivery("ps-1", sendertest.NewRequest(alice, "rl-1"))

		wantNack(t, e.Deliver(d))
		noResult(t, e)
		rec := record(e, alice, "rl-1")
		if rec.State != ledger.StateSending || rec.ErrorCode != "rate_limited" || !rec.LeaseUntil.IsZero() {
			t.Errorf("after the 429 the record is %+v; want sending, rate_limited, lease released", rec)
		}

		// Before the time: the message, and another for the same account,
		// are nacked without a Gmail call; another account is unaffected.
		e.Clock.Advance(time.Minute + 50*time.Second)
		wantNack(t, e.Deliver(d))
		wantNack(t, e.Deliver(delivery("ps-2", sendertest.NewRequest(alice, "rl-2"))))
		if n := e.Requests.Gmail(); n != 1 {
			t.Errorf("Gmail saw %d sends during the hold; want only the first", n)
		}
		wantAck(t, e.Deliver(delivery("ps-3", sendertest.NewRequest(bob, "rl-3"))))
		if r := oneResult(t, e); r.Event.Status != results.StatusSent || r.Event.Account != bob {
			t.Errorf("another account during the hold: %+v", r.Event)
		}

		// After it: one send.
		e.Clock.Advance(11 * time.Second)
		wantAck(t, e.Deliver(d))
		r := oneResult(t, e)
		// The delivery refused during the hold never claimed the request,
		// so it is not an attempt.
		if r.Event.Status != results.StatusSent || r.Event.IdempotencyKey != "rl-1" || r.Event.Attempt != 2 {
			t.Errorf("after the hold: %+v; want sent on the second attempt", r.Event)
		}
		wantOutbox(t, e, 2)
	})
}

// TestTransientServerErrors: 500 and 503 are nacked and the redelivery
// sends, once.
func TestTransientServerErrors(t *testing.T) {
	t.Parallel()
	for _, fault := range []sandbox.Fault{sandbox.ServerError500, sandbox.Unavailable503, sandbox.UserRateLimit403} {
		t.Run(string(fault), func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, store sendertest.Store) {
				e := sendertest.New(t, sendertest.Options{Store: store})
				e.Connect(alice)
				if err := e.Sandbox.InjectGmailErrors(alice, fault, 1); err != nil {
					t.Fatal(err)
				}
				d := delivery("ps-1", sendertest.NewRequest(alice, "t-1"))

				wantNack(t, e.Deliver(d))
				noResult(t, e)
				wantOutbox(t, e, 0)
				if rec := record(e, alice, "t-1"); rec.State != ledger.StateSending || !rec.LeaseUntil.IsZero() || rec.MaybeDuplicate {
					t.Errorf("after %s the record is %+v; want sending with the lease released", fault, rec)
				}

				wantAck(t, e.Deliver(d))
				r := oneResult(t, e)
				if r.Event.Status != results.StatusSent || r.Event.Attempt != 2 || r.Event.MaybeDuplicate {
					t.Errorf("redelivery: %+v", r.Event)
				}
				wantOutbox(t, e, 1)
				if n := e.Requests.Gmail(); n != 2 {
					t.Errorf("Gmail saw %d sends; want 2", n)
				}
			})
		})
	}
}

// TestFinalGmailFailures: Gmail's permanent answers end in a failed result
// and an ack, and do not hold the account.
func TestFinalGmailFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		fault     sandbox.Fault
		code      string
		retryable bool
		contains  []string
	}{
		{sandbox.MailDisabled400, "mail_disabled", false, []string{"Mail service not enabled", "administrator"}},
		{sandbox.DomainPolicy403, "domain_policy", false, []string{"The domain administrators have disabled Gmail apps.", "Trusted"}},
		{sandbox.APIDisabled403, "gmail_error", false, []string{
			"Gmail API has not been used in project 123456789012",
			"https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project=123456789012",
			"enable the Gmail API",
		}},
	}
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, store sendertest.Store) {
				e := sendertest.New(t, sendertest.Options{Store: store})
				e.Connect(alice)
				if err := e.Sandbox.InjectGmailErrors(alice, c.fault, 1); err != nil {
					t.Fatal(err)
				}
				wantAck(t, e.Deliver(delivery("ps-1", sendertest.NewRequest(alice, "f-1"))))
				wantFailed(t, oneResult(t, e), c.code, c.retryable, c.contains...)
				if rec := record(e, alice, "f-1"); rec.State != ledger.StateFailed || rec.ErrorCode != c.code {
					t.Errorf("ledger record = %+v", rec)
				}
				wantOutbox(t, e, 0)

				// The next message is sent: nothing holds the account.
				e.Clock.Advance(time.Minute)
				wantAck(t, e.Deliver(delivery("ps-2", sendertest.NewRequest(alice, "f-2"))))
				r := oneResult(t, e)
				if r.Event.Status != results.StatusSent {
					t.Errorf("next message: %+v", r.Event)
				}
			})
		})
	}
}

// TestInvalidGrant: a revoked grant fails the message with a reconnect link,
// marks the account, and later messages fail at once without touching
// Google or Secret Manager.
func TestInvalidGrant(t *testing.T) {
	t.Parallel()
	for _, warm := range []bool{false, true} {
		name := "cold cache"
		if warm {
			name = "after a send"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, store sendertest.Store) {
				e := sendertest.New(t, sendertest.Options{Store: store})
				e.Connect(alice)
				if warm {
					wantAck(t, e.Deliver(delivery("ps-0", sendertest.NewRequest(alice, "g-0"))))
					e.Results()
				}
				e.Sandbox.RevokeAll(alice)
				sm0 := e.Secrets.Calls("AccessSecretVersion")

				wantAck(t, e.Deliver(delivery("ps-1", sendertest.NewRequest(alice, "g-1"))))

				r := oneResult(t, e)
				wantFailed(t, r, "reauth_required", false, "Token has been expired or revoked", "reconnect")
				want := sendertest.ConnectURL + "?login_hint=" + url.QueryEscape(alice)
				if r.Event.Error.ReconnectURL != want {
					t.Errorf("reconnect_url = %q; want %q", r.Event.Error.ReconnectURL, want)
				}
				if a := e.Account(alice); a.Status != registry.StatusReauthRequired || !strings.Contains(a.LastError, "expired or revoked") {
					t.Errorf("account = %+v; want reauth_required with the reason", a)
				}
				// The token was read once more, in case a reconnect had
				// replaced it (a cold instance also read it first).
				wantReads := int64(1)
				if !warm {
					wantReads = 2
				}
				if n := e.Secrets.Calls("AccessSecretVersion") - sm0; n != wantReads {
					t.Errorf("Secret Manager read %d times; want %d", n, wantReads)
				}

				tok, gm, sm := e.Requests.Count(sendertest.RouteToken), e.Requests.Gmail(), e.Secrets.Calls("AccessSecretVersion")
				wantAck(t, e.Deliver(delivery("ps-2", sendertest.NewRequest(alice, "g-2"))))
				wantFailed(t, oneResult(t, e), "reauth_required", false, alice)
				if e.Requests.Count(sendertest.RouteToken) != tok || e.Requests.Gmail() != gm || e.Secrets.Calls("AccessSecretVersion") != sm {
					t.Error("the message for a reauth_required account reached Google or Secret Manager")
				}
			})
		})
	}
}

// TestReconnectAfterInvalidGrant: the owner reconnects between two sends,
// which stores a new refresh token; the sender's cached token is dead, and
// its one re-read of Secret Manager finds the new one and sends.
func TestReconnectAfterInvalidGrant(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		old := e.Connect(alice)
		wantAck(t, e.Deliver(delivery("ps-1", sendertest.NewRequest(alice, "c-1"))))
		e.Results()

		e.Sandbox.RevokeAll(alice)
		fresh := e.Consent(alice)
		if fresh == old {
			t.Fatal("the reconnect returned the old token")
		}
		e.StoreToken(alice, fresh)
		sm := e.Secrets.Calls("AccessSecretVersion")

		wantAck(t, e.Deliver(delivery("ps-2", sendertest.NewRequest(alice, "c-2"))))

		if r := oneResult(t, e); r.Event.Status != results.StatusSent {
			t.Fatalf("after the reconnect: %+v", r.Event)
		}
		if n := e.Secrets.Calls("AccessSecretVersion") - sm; n != 1 {
			t.Errorf("Secret Manager read %d times; want 1 re-read", n)
		}
		if a := e.Account(alice); a.Status != registry.StatusConnected {
			t.Errorf("account status = %s; want connected", a.Status)
		}
		wantOutbox(t, e, 2)
	})
}

// TestExpiredAccessToken: a 401 is answered by one refresh and a resend.
func TestExpiredAccessToken(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		e.Connect(alice)
		wantAck(t, e.Deliver(delivery("ps-1", sendertest.NewRequest(alice, "x-1"))))
		e.Results()
		if n := e.Sandbox.ExpireAccessTokens(alice); n == 0 {
			t.Fatal("no access token to expire")
		}
		refreshes, gm, sm := e.Sandbox.Stats().TokenRefreshes, e.Requests.Gmail(), e.Secrets.Calls("AccessSecretVersion")

		wantAck(t, e.Deliver(delivery("ps-2", sendertest.NewRequest(alice, "x-2"))))

		if r := oneResult(t, e); r.Event.Status != results.StatusSent {
			t.Fatalf("result = %+v", r.Event)
		}
		if n := e.Sandbox.Stats().TokenRefreshes - refreshes; n != 1 {
			t.Errorf("%d refreshes; want 1", n)
		}
		if n := e.Requests.Gmail() - gm; n != 2 {
			t.Errorf("Gmail saw %d sends; want the 401 and the resend", n)
		}
		if n := e.Secrets.Calls("AccessSecretVersion") - sm; n != 0 {
			t.Errorf("a 401 read Secret Manager %d times", n)
		}
		if a := e.Account(alice); a.Status != registry.StatusConnected {
			t.Errorf("account status = %s", a.Status)
		}
		wantOutbox(t, e, 2)
	})
}

// TestRotatedRefreshToken: when Google rotates the refresh token, the new
// one is saved, and it is the one that works.
func TestRotatedRefreshToken(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		old := e.Connect(alice)
		e.Sandbox.RotateRefreshTokens(true)
		adds := e.Secrets.Calls("AddSecretVersion")

		wantAck(t, e.Deliver(delivery("ps-1", sendertest.NewRequest(alice, "r-1"))))
		if r := oneResult(t, e); r.Event.Status != results.StatusSent {
			t.Fatalf("result = %+v", r.Event)
		}

		stored := e.StoredToken(alice)
		if stored == old {
			t.Fatal("Secret Manager still holds the refresh token that Google rotated away")
		}
		if n := e.Secrets.Calls("AddSecretVersion") - adds; n != 1 {
			t.Errorf("%d versions added; want 1", n)
		}
		if _, err := e.OAuth.Refresh(context.Background(), old); !oauth.IsInvalidGrant(err) {
			t.Errorf("the old token still refreshes (%v); the test proves nothing", err)
		}
		// A new instance starts from Secret Manager, and sends.
		wantAck(t, e.DeliverTo(e.NewSender(), delivery("ps-2", sendertest.NewRequest(alice, "r-2"))))
		if r := oneResult(t, e); r.Event.Status != results.StatusSent {
			t.Fatalf("a new instance after the rotation: %+v", r.Event)
		}
		wantOutbox(t, e, 2)
	})
}

// TestAmbiguousSend: Gmail takes the body and never answers. The ledger
// keeps the lease; a redelivery within it waits without calling Gmail; after
// it the sender sends once more and flags a possible duplicate. A second
// ambiguity is final: never a third copy.
func TestAmbiguousSend(t *testing.T) {
	t.Parallel()
	for _, fault := range []sandbox.Fault{sandbox.HangAfterBody, sandbox.ResetAfterBody} {
		t.Run(string(fault), func(t *testing.T) {
			t.Parallel()
			for _, twice := range []bool{false, true} {
				name := "then answered"
				if twice {
					name = "twice"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					forEachStore(t, func(t *testing.T, store sendertest.Store) {
						testAmbiguous(t, store, fault, twice)
					})
				})
			}
		})
	}
}

func testAmbiguous(t *testing.T, store sendertest.Store, fault sandbox.Fault, twice bool) {
	const lease = time.Minute
	e := sendertest.New(t, sendertest.Options{Store: store, Lease: lease, SendTimeout: lease / 2})
	e.Connect(alice)
	wantAck(t, e.Deliver(delivery("ps-0", sendertest.NewRequest(alice, "warm-up"))))
	e.Results()
	n := 1
	if twice {
		n = 2
	}
	if err := e.Sandbox.InjectGmailErrors(alice, fault, n); err != nil {
		t.Fatal(err)
	}
	d := delivery("ps-1", sendertest.NewRequest(alice, "amb-1"))
	// unanswered delivers d into the fault. A hang lasts until the client
	// gives up: here the delivery's context ends once Gmail has stored the
	// message (TestSendTimeoutAfterBody covers the sender's own timeout).
	unanswered := func(stored int) error {
		ctx := context.Background()
		if fault == sandbox.HangAfterBody {
			ctx = e.CancelWhenStored(ctx, stored)
		}
		return e.DeliverContext(ctx, e.Sender, d)
	}

	wantNack(t, unanswered(2))
	noResult(t, e)
	wantOutbox(t, e, 2) // Gmail has it; the sender cannot know
	rec := record(e, alice, "amb-1")
	if rec.State != ledger.StateSending || !rec.MaybeDuplicate || !rec.LeaseUntil.After(e.Clock.Now()) {
		t.Fatalf("after the unanswered send the record is %+v; want sending, maybe_duplicate, lease held", rec)
	}

	// Within the lease: nack, no Gmail call.
	e.Clock.Advance(lease / 2)
	wantNack(t, e.Deliver(d))
	noResult(t, e)
	if n := e.Requests.Gmail(); n != 2 {
		t.Fatalf("Gmail saw %d sends within the lease; want the warm-up and 1", n)
	}

	// After the lease: one more send.
	e.Clock.Advance(lease)
	if twice {
		wantAck(t, unanswered(3))
	} else {
		wantAck(t, e.Deliver(d))
	}
	r := oneResult(t, e)
	if !r.Event.MaybeDuplicate || r.Event.Attempt != 2 {
		t.Errorf("result = %+v; want maybe_duplicate on attempt 2", r.Event)
	}
	if twice {
		wantFailed(t, r, "gmail_error", false, "third")
	} else if r.Event.Status != results.StatusSent || r.Event.GmailMessageID != e.Outbox()[2].ID {
		t.Errorf("result = %+v; want sent as the second outbox message", r.Event)
	}
	out := e.Outbox()
	wantOutbox(t, e, 3)
	if a, b := readEML(t, out[1].Path).header.Get("Message-Id"), readEML(t, out[2].Path).header.Get("Message-Id"); a != b || a == "" {
		t.Errorf("the two copies have Message-IDs %q and %q; want one, so that mail clients can fold them", a, b)
	}
	wantState := ledger.StateSent
	if twice {
		wantState = ledger.StateFailed
	}
	if rec := record(e, alice, "amb-1"); rec.State != wantState || !rec.MaybeDuplicate || !rec.LeaseUntil.IsZero() {
		t.Errorf("final record = %+v; want %s and maybe_duplicate", rec, wantState)
	}

	// Whatever happens next is a duplicate, never a third send.
	e.Clock.Advance(2 * lease)
	wantAck(t, e.Deliver(d))
	if r := oneResult(t, e); r.Event.Status != results.StatusDuplicate || !r.Event.MaybeDuplicate {
		t.Errorf("later redelivery: %+v", r.Event)
	}
	if n := e.Requests.Gmail(); n != 3 {
		t.Errorf("Gmail saw %d sends; want the warm-up and 2", n)
	}
	wantOutbox(t, e, 3)
}

// TestSendTimeoutAfterBody: the sender's own Gmail timeout ends a hang after
// the body was sent, which is ambiguous like any other lost answer.
func TestSendTimeoutAfterBody(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		// Long enough for a small request on a loaded machine; the hang
		// makes the test wait for all of it.
		e := sendertest.New(t, sendertest.Options{Store: store, SendTimeout: 10 * time.Second})
		e.Connect(alice)
		wantAck(t, e.Deliver(delivery("ps-0", sendertest.NewRequest(alice, "warm-up"))))
		e.Results()
		must(t, e.Sandbox.InjectGmailErrors(alice, sandbox.HangAfterBody, 1))

		wantNack(t, e.Deliver(delivery("ps-1", sendertest.NewRequest(alice, "to-1"))))

		noResult(t, e)
		wantOutbox(t, e, 2)
		if rec := record(e, alice, "to-1"); rec.State != ledger.StateSending || !rec.MaybeDuplicate || !rec.LeaseUntil.After(e.Clock.Now()) {
			t.Errorf("record = %+v; want sending, maybe_duplicate, lease held", rec)
		}
	})
}

// TestSecretManagerFaults: Secret Manager failing for a moment is retried
// through a nack; an account whose secret is gone needs a reconnect.
func TestSecretManagerFaults(t *testing.T) {
	t.Parallel()
	t.Run("unavailable", func(t *testing.T) {
		t.Parallel()
		forEachStore(t, func(t *testing.T, store sendertest.Store) {
			e := sendertest.New(t, sendertest.Options{Store: store})
			e.Connect(alice)
			e.Secrets.FailNext("AccessSecretVersion", codes.Internal, 1)
			d := delivery("ps-1", sendertest.NewRequest(alice, "sm-1"))

			wantNack(t, e.Deliver(d))
			noResult(t, e)
			if n := e.Requests.Gmail(); n != 0 {
				t.Errorf("Gmail saw %d sends without a token", n)
			}
			wantAck(t, e.Deliver(d))
			if r := oneResult(t, e); r.Event.Status != results.StatusSent || r.Event.Attempt != 2 {
				t.Errorf("redelivery: %+v", r.Event)
			}
			if a := e.Account(alice); a.Status != registry.StatusConnected {
				t.Errorf("account status = %s", a.Status)
			}
		})
	})
	t.Run("no secret", func(t *testing.T) {
		t.Parallel()
		forEachStore(t, func(t *testing.T, store sendertest.Store) {
			e := sendertest.New(t, sendertest.Options{Store: store})
			if err := e.Registry.Upsert(context.Background(), &registry.Account{Email: alice, Status: registry.StatusConnected}); err != nil {
				t.Fatal(err)
			}
			wantAck(t, e.Deliver(delivery("ps-1", sendertest.NewRequest(alice, "sm-2"))))
			r := oneResult(t, e)
			wantFailed(t, r, "reauth_required", false, "no stored token", alice)
			if r.Event.Error.ReconnectURL == "" {
				t.Error("no reconnect_url")
			}
			if a := e.Account(alice); a.Status != registry.StatusReauthRequired {
				t.Errorf("account status = %s; want reauth_required", a.Status)
			}
		})
	})
}

// TestDeliveryEndsAfterGmailTookIt: the delivery's context ends (the push
// request timed out, the client went away) once Gmail has the message. The
// sender must still record what it knows: sent, or sending with
// maybe_duplicate. Never a bare "sending", which a redelivery after the lease
// would take over and send again as if for the first time.
func TestDeliveryEndsAfterGmailTookIt(t *testing.T) {
	t.Parallel()
	for _, fault := range []sandbox.Fault{"", sandbox.HangAfterBody} {
		name := string(fault)
		if name == "" {
			name = "answered"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, store sendertest.Store) {
				e := sendertest.New(t, sendertest.Options{Store: store})
				e.Connect(alice)
				wantAck(t, e.Deliver(delivery("ps-0", sendertest.NewRequest(alice, "warm-up"))))
				e.Results()
				if fault != "" {
					must(t, e.Sandbox.InjectGmailErrors(alice, fault, 1))
				}
				d := delivery("ps-1", sendertest.NewRequest(alice, "end-1"))

				err := e.DeliverContext(e.CancelWhenStored(context.Background(), 2), e.Sender, d)

				wantOutbox(t, e, 2)
				rec := record(e, alice, "end-1")
				switch {
				case rec.State == ledger.StateSent:
					wantAck(t, err)
					if r := oneResult(t, e); r.Event.Status != results.StatusSent || r.Event.GmailMessageID != e.Outbox()[1].ID {
						t.Errorf("result = %+v", r.Event)
					}
				case rec.State == ledger.StateSending && rec.MaybeDuplicate:
					wantNack(t, err)
					noResult(t, e)
				default:
					t.Fatalf("after the delivery ended the record is %+v (Handle = %v); want sent, or sending with maybe_duplicate", rec, err)
				}
			})
		})
	}
}

// TestLastDeliveryAttempt: on the subscription's last attempt a failure
// that would be nacked still is, so Pub/Sub dead-letters the request, but
// a failed result reports it first; the ledger stays released, so a
// republished copy sends. Earlier attempts, and a subscription whose
// attempts are unknown, publish nothing. An unanswered send on the last
// attempt ends as a failure instead of a hold that would dead-letter a
// message that may have gone out.
func TestLastDeliveryAttempt(t *testing.T) {
	t.Parallel()
	const max = 5
	for _, c := range []struct {
		name         string
		max, attempt int
		fault        sandbox.Fault
		wantAck      bool
		wantResult   bool
	}{
		{"500, last attempt", max, max, sandbox.ServerError500, false, true},
		{"500, beyond the last (a redelivered dead letter)", max, max + 1, sandbox.ServerError500, false, true},
		{"500, earlier attempt", max, max - 1, sandbox.ServerError500, false, false},
		{"500, attempts unknown", 0, 7, sandbox.ServerError500, false, false},
		{"500, subscription without dead-lettering", max, 0, sandbox.ServerError500, false, false},
		{"429, last attempt", max, max, sandbox.RateLimit429, false, true},
		{"unanswered, last attempt", max, max, sandbox.ResetAfterBody, true, true},
		{"unanswered, earlier attempt", max, max - 1, sandbox.ResetAfterBody, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := sendertest.New(t, sendertest.Options{Store: sendertest.Local, MaxDeliveryAttempts: c.max})
			e.Connect(alice)
			must(t, e.Sandbox.InjectGmailErrors(alice, c.fault, 1))
			d := delivery("ps-1", sendertest.NewRequest(alice, "k-1"))
			d.DeliveryAttempt = c.attempt

			err := e.Deliver(d)
			if c.wantAck {
				wantAck(t, err)
			} else {
				wantNack(t, err)
			}
			if !c.wantResult {
				noResult(t, e)
				return
			}
			r := oneResult(t, e)
			ev := r.Event
			if ev.Status != results.StatusFailed || ev.Error == nil || ev.IdempotencyKey != "k-1" {
				t.Fatalf("result %+v; want failed for k-1", ev)
			}
			want := fmt.Sprintf("attempt %d of %d", c.attempt, max)
			if !strings.Contains(ev.Error.Message, want) || ev.Error.Retryable == c.wantAck {
				t.Errorf("error %+v; want %q in the message, retryable %v", ev.Error, want, !c.wantAck)
			}
			rec := record(e, alice, "k-1")
			if c.wantAck {
				// Ended: a redelivery is a duplicate, never a second send.
				if rec.State != ledger.StateFailed {
					t.Errorf("record %+v; want failed", rec)
				}
				return
			}
			if rec.State != ledger.StateSending || !rec.LeaseUntil.IsZero() {
				t.Errorf("record %+v; want sending with the lease released", rec)
			}
			// Republished from the dead-letter topic once the cause is
			// gone (and any "Retry after" has passed), it is sent.
			e.Clock.Advance(10 * time.Minute)
			d.DeliveryAttempt = 1
			wantAck(t, e.Deliver(d))
			if r := oneResult(t, e); r.Event.Status != results.StatusSent {
				t.Errorf("after republishing: %+v; want sent", r.Event)
			}
			wantOutbox(t, e, 1)
		})
	}
}
