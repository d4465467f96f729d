package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
)

// store is what the contract suite drives: the Store plus its counters.
type store interface {
	ledger.Store
	Stats() ledger.Stats
}

// t0 has nanoseconds on purpose: both stores must keep microseconds only,
// as Firestore does, so that records compare equal across stores.
var t0 = time.Date(2030, 3, 4, 5, 6, 7, 123456789, time.UTC)

const lease = time.Minute

func us(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// id is the ledger ID of key sent by alice in the default app, the scope
// most tests need.
func id(key string) string { return ledger.Scope{Account: "alice@example.com", Key: key}.ID() }

func claim(t *testing.T, s ledger.Store, key string, now time.Time) (*ledger.Record, ledger.ClaimOutcome) {
	t.Helper()
	rec, out, err := s.Claim(context.Background(), id(key), ledger.ClaimRequest{
		PubSubMessageID: "m-" + now.Format(time.RFC3339Nano), Lease: lease, Now: now,
	})
	if err != nil {
		t.Fatalf("Claim(%q, %v): %v", key, now, err)
	}
	return rec, out
}

func get(t *testing.T, s ledger.Store, key string) *ledger.Record {
	t.Helper()
	rec, err := s.Get(context.Background(), id(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return rec
}

func wantOutcome(t *testing.T, got, want ledger.ClaimOutcome) {
	t.Helper()
	if got != want {
		t.Fatalf("outcome = %v, want %v", got, want)
	}
}

func sameRecord(t *testing.T, what string, got, want *ledger.Record) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// runContract runs the Store contract against the stores open returns; each
// call must give an empty store that no other test sees.
func runContract(t *testing.T, open func(t *testing.T) store) {
	ctx := context.Background()

	t.Run("ClaimNew", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		rec, out, err := s.Claim(ctx, id("order/42"), ledger.ClaimRequest{PubSubMessageID: "p1", Lease: lease, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, out, ledger.ClaimNew)
		want := &ledger.Record{
			Key: "order/42", App: ledger.DefaultApp, State: ledger.StateSending, Account: "alice@example.com", PubSubMessageID: "p1",
			Attempts: 1, LeaseUntil: us(t0.Add(lease)), CreatedAt: us(t0), UpdatedAt: us(t0), ExpireAt: us(t0.Add(ledger.TTL)),
		}
		sameRecord(t, "Claim result", rec, want)
		sameRecord(t, "stored record", get(t, s, "order/42"), want)
	})

	t.Run("ClaimBusyWhileLeased", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		first, _ := claim(t, s, "k", t0)
		for _, at := range []time.Time{t0, t0.Add(time.Second), t0.Add(lease - time.Microsecond)} {
			rec, out := claim(t, s, "k", at)
			wantOutcome(t, out, ledger.ClaimBusy)
			sameRecord(t, fmt.Sprintf("busy record at %v", at), rec, first)
		}
		sameRecord(t, "stored record", get(t, s, "k"), first)
	})

	t.Run("ClaimTakeoverAfterLeaseExpiry", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		first, _ := claim(t, s, "k", t0)
		at := t0.Add(lease) // a lease ending exactly now has lapsed
		rec, out := claim(t, s, "k", at)
		wantOutcome(t, out, ledger.ClaimTakeover)
		want := *first
		want.Attempts = 2
		// Nothing released the lease: its holder may have died mid-send.
		want.MaybeDuplicate = true
		want.Lapsed = 1
		want.LeaseUntil = us(at.Add(lease))
		want.UpdatedAt = us(at)
		want.ExpireAt = us(at.Add(ledger.TTL))
		sameRecord(t, "takeover record", rec, &want)
		sameRecord(t, "stored record", get(t, s, "k"), &want)

		_, out = claim(t, s, "k", at.Add(time.Second))
		wantOutcome(t, out, ledger.ClaimBusy)
	})

	t.Run("FinishThenClaimIsDone", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name string
			fin  ledger.Finish
		}{
			{"sent", ledger.Finish{State: ledger.StateSent, GmailMessageID: "g1", GmailThreadID: "th1"}},
			{"failed", ledger.Finish{State: ledger.StateFailed, ErrorCode: "mail_disabled", ErrorMessage: "Mail service not enabled"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := open(t)
				first, _ := claim(t, s, "k", t0)
				fin := tc.fin
				fin.Now = t0.Add(2 * time.Second)
				if err := s.Finish(ctx, id("k"), fin); err != nil {
					t.Fatal(err)
				}
				want := *first
				want.State = fin.State
				want.GmailMessageID, want.GmailThreadID = fin.GmailMessageID, fin.GmailThreadID
				want.ErrorCode, want.ErrorMessage = fin.ErrorCode, fin.ErrorMessage
				want.LeaseUntil = time.Time{}
				want.UpdatedAt = us(fin.Now)
				want.ExpireAt = us(fin.Now.Add(ledger.TTL))
				sameRecord(t, "finished record", get(t, s, "k"), &want)

				// Done holds even after the old lease would have lapsed.
				for _, at := range []time.Time{t0.Add(3 * time.Second), t0.Add(lease + time.Hour)} {
					rec, out := claim(t, s, "k", at)
					wantOutcome(t, out, ledger.ClaimDone)
					sameRecord(t, "done record", rec, &want)
				}
			})
		}
	})

	t.Run("FinishClearsEarlierError", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		claim(t, s, "k", t0)
		if err := s.Release(ctx, id("k"), "rate_limited", "User-rate limit exceeded", t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		claim(t, s, "k", t0.Add(2*time.Second))
		if err := s.Finish(ctx, id("k"), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g", Now: t0.Add(3 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		rec := get(t, s, "k")
		if rec.ErrorCode != "" || rec.ErrorMessage != "" || rec.State != ledger.StateSent || rec.Attempts != 2 {
			t.Fatalf("record after release, takeover and finish = %+v; want sent, attempts 2, no error", rec)
		}
	})

	t.Run("ReleaseThenClaimTakesOverAtOnce", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		first, _ := claim(t, s, "k", t0)
		rel := t0.Add(time.Second)
		if err := s.Release(ctx, id("k"), "gmail_error", "503 backend error", rel); err != nil {
			t.Fatal(err)
		}
		want := *first
		want.LeaseUntil = time.Time{}
		want.ErrorCode, want.ErrorMessage = "gmail_error", "503 backend error"
		want.UpdatedAt = us(rel)
		want.ExpireAt = us(rel.Add(ledger.TTL))
		sameRecord(t, "released record", get(t, s, "k"), &want)

		// Well inside the original lease: the release is what allows it.
		at := t0.Add(2 * time.Second)
		rec, out := claim(t, s, "k", at)
		wantOutcome(t, out, ledger.ClaimTakeover)
		if rec.Attempts != 2 || !rec.LeaseUntil.Equal(us(at.Add(lease))) || rec.State != ledger.StateSending || rec.MaybeDuplicate || rec.Lapsed != 0 {
			t.Fatalf("takeover after release = %+v; want attempts 2, sending, lease until %v, no maybe_duplicate", rec, us(at.Add(lease)))
		}
	})

	t.Run("ReleaseLeavesFinishedRecordAlone", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		claim(t, s, "k", t0)
		if err := s.Finish(ctx, id("k"), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g", Now: t0}); err != nil {
			t.Fatal(err)
		}
		before := get(t, s, "k")
		if err := s.Release(ctx, id("k"), "gmail_error", "late", t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		sameRecord(t, "record after late release", get(t, s, "k"), before)
		_, out := claim(t, s, "k", t0.Add(2*time.Second))
		wantOutcome(t, out, ledger.ClaimDone)
	})

	t.Run("AmbiguousThenTakeoverKeepsMaybeDuplicate", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		first, _ := claim(t, s, "k", t0)
		amb := t0.Add(time.Second)
		if err := s.MarkAmbiguous(ctx, id("k"), amb); err != nil {
			t.Fatal(err)
		}
		want := *first
		want.MaybeDuplicate = true
		want.UpdatedAt = us(amb)
		want.ExpireAt = us(amb.Add(ledger.TTL))
		sameRecord(t, "ambiguous record", get(t, s, "k"), &want)

		// The lease still holds: a redelivery waits instead of resending.
		_, out := claim(t, s, "k", amb.Add(time.Second))
		wantOutcome(t, out, ledger.ClaimBusy)

		rec, out := claim(t, s, "k", t0.Add(lease))
		wantOutcome(t, out, ledger.ClaimTakeover)
		if !rec.MaybeDuplicate || rec.Attempts != 2 {
			t.Fatalf("takeover after ambiguity = %+v; want MaybeDuplicate and attempts 2", rec)
		}
		if err := s.Finish(ctx, id("k"), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g2", Now: t0.Add(lease + time.Second)}); err != nil {
			t.Fatal(err)
		}
		if rec := get(t, s, "k"); !rec.MaybeDuplicate || rec.State != ledger.StateSent {
			t.Fatalf("finished record = %+v; want sent with MaybeDuplicate kept", rec)
		}
	})

	t.Run("ExpiredRecordCountsAsAbsent", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		claim(t, s, "k", t0)
		if err := s.MarkAmbiguous(ctx, id("k"), t0); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, id("k"), ledger.Finish{State: ledger.StateSent, Now: t0}); err != nil {
			t.Fatal(err)
		}
		_, out := claim(t, s, "k", t0.Add(ledger.TTL-time.Microsecond))
		wantOutcome(t, out, ledger.ClaimDone)

		at := t0.Add(ledger.TTL)
		rec, out := claim(t, s, "k", at)
		wantOutcome(t, out, ledger.ClaimNew)
		if rec.Attempts != 1 || rec.MaybeDuplicate || rec.State != ledger.StateSending || !rec.CreatedAt.Equal(us(at)) {
			t.Fatalf("record claimed after TTL = %+v; want a fresh one", rec)
		}
		sameRecord(t, "stored record", get(t, s, "k"), rec)
	})

	t.Run("ConcurrentClaimsYieldOneNew", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		outs := claimConcurrently(t, s, "k", t0, 20)
		if outs[ledger.ClaimNew] != 1 || outs[ledger.ClaimBusy] != 19 {
			t.Fatalf("outcomes of 20 concurrent claims = %v; want 1 new and 19 busy", outs)
		}
		if rec := get(t, s, "k"); rec.Attempts != 1 {
			t.Fatalf("attempts = %d, want 1", rec.Attempts)
		}
	})

	t.Run("ConcurrentTakeoversYieldOne", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		claim(t, s, "k", t0)
		outs := claimConcurrently(t, s, "k", t0.Add(lease), 20)
		// The losers of the race reread and must see the winner's lease.
		if outs[ledger.ClaimTakeover] != 1 || outs[ledger.ClaimBusy] != 19 {
			t.Fatalf("outcomes of 20 concurrent takeovers = %v; want 1 takeover and 19 busy", outs)
		}
		if rec := get(t, s, "k"); rec.Attempts != 2 {
			t.Fatalf("attempts = %d, want 2", rec.Attempts)
		}
	})

	t.Run("ClaimAndFinishCostTwoWrites", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		const n = 5
		for i := range n {
			key := fmt.Sprintf("msg-%d", i)
			if _, out := claim(t, s, key, t0); out != ledger.ClaimNew {
				t.Fatalf("Claim(%s) = %v, want new", key, out)
			}
			if err := s.Finish(ctx, id(key), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g", Now: t0}); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := s.Stats(), (ledger.Stats{Reads: 0, Writes: 2 * n}); got != want {
			t.Fatalf("Stats after %d messages = %+v, want %+v", n, got, want)
		}
		// A duplicate delivery costs one read and no write.
		claim(t, s, "msg-0", t0.Add(time.Second))
		if got, want := s.Stats(), (ledger.Stats{Reads: 1, Writes: 2 * n}); got != want {
			t.Fatalf("Stats after a duplicate = %+v, want %+v", got, want)
		}
	})

	t.Run("KeysAreExactAndMayHoldSlashes", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		keys := []string{"a/b/c", "A/b/c", "a/b/c ", "..", "ключ-🔑"}
		for _, k := range keys {
			if _, out := claim(t, s, k, t0); out != ledger.ClaimNew {
				t.Fatalf("Claim(%q) = %v, want new: keys must not collide", k, out)
			}
		}
		for _, k := range keys {
			if got := get(t, s, k).Key; got != k {
				t.Fatalf("Get(%q).Key = %q", k, got)
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		for name, call := range map[string]func() error{
			"Get":           func() error { _, err := s.Get(ctx, id("nope")); return err },
			"Finish":        func() error { return s.Finish(ctx, id("nope"), ledger.Finish{State: ledger.StateSent, Now: t0}) },
			"Release":       func() error { return s.Release(ctx, id("nope"), "c", "m", t0) },
			"MarkAmbiguous": func() error { return s.MarkAmbiguous(ctx, id("nope"), t0) },
		} {
			if err := call(); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("%s on a missing key: err = %v, want ErrNotFound", name, err)
			}
		}
		if got := s.Stats().Writes; got != 0 {
			t.Errorf("writes = %d, want 0", got)
		}
	})

	t.Run("InvalidInput", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		for name, call := range map[string]func() error{
			"Claim empty key":    func() error { _, _, err := s.Claim(ctx, "", ledger.ClaimRequest{Lease: lease, Now: t0}); return err },
			"Claim unscoped key": func() error { _, _, err := s.Claim(ctx, "k", ledger.ClaimRequest{Lease: lease, Now: t0}); return err },
			"Claim scoped empty": func() error {
				_, _, err := s.Claim(ctx, id(""), ledger.ClaimRequest{Lease: lease, Now: t0})
				return err
			},
			"Get unscoped key": func() error { _, err := s.Get(ctx, "k"); return err },
			"Claim zero lease": func() error { _, _, err := s.Claim(ctx, id("k"), ledger.ClaimRequest{Now: t0}); return err },
			"Claim negative": func() error {
				_, _, err := s.Claim(ctx, id("k"), ledger.ClaimRequest{Lease: -lease, Now: t0})
				return err
			},
			"Finish sending":      func() error { return s.Finish(ctx, id("k"), ledger.Finish{State: ledger.StateSending, Now: t0}) },
			"Finish empty state":  func() error { return s.Finish(ctx, id("k"), ledger.Finish{Now: t0}) },
			"Finish empty key":    func() error { return s.Finish(ctx, "", ledger.Finish{State: ledger.StateSent, Now: t0}) },
			"Release empty key":   func() error { return s.Release(ctx, "", "c", "m", t0) },
			"Ambiguous empty key": func() error { return s.MarkAmbiguous(ctx, "", t0) },
			"Get empty key":       func() error { _, err := s.Get(ctx, ""); return err },
		} {
			err := call()
			if err == nil || errors.Is(err, ledger.ErrNotFound) || errors.Is(err, ledger.ErrUnavailable) {
				t.Errorf("%s: err = %v, want a plain validation error", name, err)
			}
		}
		if got := s.Stats(); got != (ledger.Stats{}) {
			t.Errorf("Stats = %+v, want nothing touched", got)
		}
	})

	t.Run("ScopesAreSeparate", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		scopes := []ledger.Scope{
			{Account: "alice@example.com", Key: "order-42"},
			{Account: "dan@example.org", Key: "order-42"},
			{App: "billing", Account: "alice@example.com", Key: "order-42"},
			{App: "crm", Account: "alice@example.com", Key: "order-42"},
		}
		for i, sc := range scopes {
			rec, out, err := s.Claim(ctx, sc.ID(), ledger.ClaimRequest{PubSubMessageID: fmt.Sprint(i), Lease: lease, Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			wantOutcome(t, out, ledger.ClaimNew)
			want := sc
			if want.App == "" {
				want.App = ledger.DefaultApp
			}
			if rec.Scope() != want {
				t.Fatalf("record scope = %+v, want %+v", rec.Scope(), want)
			}
			if err := s.Finish(ctx, sc.ID(), ledger.Finish{State: ledger.StateSent, GmailMessageID: fmt.Sprint("g", i), Now: t0}); err != nil {
				t.Fatal(err)
			}
		}
		for i, sc := range scopes {
			rec, out, err := s.Claim(ctx, sc.ID(), ledger.ClaimRequest{Lease: lease, Now: t0.Add(time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			wantOutcome(t, out, ledger.ClaimDone)
			if want := fmt.Sprint("g", i); rec.GmailMessageID != want {
				t.Errorf("duplicate of %+v answers Gmail ID %q, want its own %q", sc, rec.GmailMessageID, want)
			}
		}
		// The account is compared normalised, the app and key exactly.
		_, out, err := s.Claim(ctx, ledger.Scope{App: "default", Account: " ALICE@example.com", Key: "order-42"}.ID(), ledger.ClaimRequest{Lease: lease, Now: t0.Add(2 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, out, ledger.ClaimDone)
		_, out, err = s.Claim(ctx, ledger.Scope{App: "Billing", Account: "alice@example.com", Key: "order-42"}.ID(), ledger.ClaimRequest{Lease: lease, Now: t0.Add(2 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, out, ledger.ClaimNew)
	})

	t.Run("FingerprintDecidesReuseOfAFailedKey", func(t *testing.T) {
		t.Parallel()
		cases := []struct {
			name  string
			fin   ledger.Finish
			ambig bool // MarkAmbiguous before Finish
			fp    string
			want  ledger.ClaimOutcome
		}{
			{"permanent failure, other content", ledger.Finish{State: ledger.StateFailed, ErrorCode: "invalid_request", ErrorMessage: "bad base64"}, false, "fp-2", ledger.ClaimNew},
			{"permanent failure, same content", ledger.Finish{State: ledger.StateFailed, ErrorCode: "invalid_request", ErrorMessage: "bad base64"}, false, "fp-1", ledger.ClaimDone},
			{"permanent failure, no fingerprint", ledger.Finish{State: ledger.StateFailed, ErrorCode: "invalid_request"}, false, "", ledger.ClaimDone},
			{"failure that may have sent", ledger.Finish{State: ledger.StateFailed, ErrorCode: "gmail_error", MaybeDuplicate: true}, false, "fp-2", ledger.ClaimDone},
			{"failure after an ambiguous send", ledger.Finish{State: ledger.StateFailed, ErrorCode: "gmail_error"}, true, "fp-2", ledger.ClaimDone},
			{"sent, other content", ledger.Finish{State: ledger.StateSent, GmailMessageID: "g1"}, false, "fp-2", ledger.ClaimDone},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				s := open(t)
				if _, out, err := s.Claim(ctx, id("k"), ledger.ClaimRequest{PubSubMessageID: "p1", Fingerprint: "fp-1", Lease: lease, Now: t0}); err != nil || out != ledger.ClaimNew {
					t.Fatalf("first Claim = %v, %v", out, err)
				}
				if c.ambig {
					if err := s.MarkAmbiguous(ctx, id("k"), t0); err != nil {
						t.Fatal(err)
					}
				}
				fin := c.fin
				fin.Now = t0.Add(time.Second)
				if err := s.Finish(ctx, id("k"), fin); err != nil {
					t.Fatal(err)
				}
				before := get(t, s, "k")
				if c.fin.MaybeDuplicate && !before.MaybeDuplicate {
					t.Fatalf("Finish with MaybeDuplicate left %+v", before)
				}
				at := t0.Add(2 * time.Second)
				rec, out, err := s.Claim(ctx, id("k"), ledger.ClaimRequest{PubSubMessageID: "p2", Fingerprint: c.fp, Lease: lease, Now: at})
				if err != nil {
					t.Fatal(err)
				}
				wantOutcome(t, out, c.want)
				if c.want == ledger.ClaimDone {
					sameRecord(t, "duplicate answer", rec, before)
					sameRecord(t, "stored record", get(t, s, "k"), before)
					return
				}
				want := &ledger.Record{Key: "k", App: ledger.DefaultApp, State: ledger.StateSending, Account: "alice@example.com",
					Fingerprint: c.fp, PubSubMessageID: "p2", Attempts: 1, LeaseUntil: us(at.Add(lease)),
					CreatedAt: us(at), UpdatedAt: us(at), ExpireAt: us(at.Add(ledger.TTL))}
				sameRecord(t, "reused record", rec, want)
				sameRecord(t, "stored record", get(t, s, "k"), want)
				// The reused key is an ordinary claim again: busy, then done.
				wantOutcome(t, func() ledger.ClaimOutcome { _, o := claim(t, s, "k", at.Add(time.Second)); return o }(), ledger.ClaimBusy)
				if err := s.Finish(ctx, id("k"), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g2", Now: at.Add(time.Second)}); err != nil {
					t.Fatal(err)
				}
				_, out, err = s.Claim(ctx, id("k"), ledger.ClaimRequest{Fingerprint: "fp-3", Lease: lease, Now: at.Add(2 * time.Second)})
				if err != nil {
					t.Fatal(err)
				}
				wantOutcome(t, out, ledger.ClaimDone)
			})
		}
	})

	t.Run("LapsedTakeoversAreCounted", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		claim(t, s, "k", t0)
		rec, out := claim(t, s, "k", t0.Add(lease))
		wantOutcome(t, out, ledger.ClaimTakeover)
		if !rec.MaybeDuplicate || rec.Lapsed != 1 {
			t.Fatalf("first lapsed takeover = %+v; want maybe_duplicate, lapsed 1", rec)
		}
		rec, out = claim(t, s, "k", t0.Add(2*lease))
		wantOutcome(t, out, ledger.ClaimTakeover)
		if !rec.MaybeDuplicate || rec.Lapsed != 2 || rec.Attempts != 3 {
			t.Fatalf("second lapsed takeover = %+v; want maybe_duplicate, lapsed 2, attempts 3", rec)
		}
		if err := s.Release(ctx, id("k"), "gmail_error", "503", t0.Add(2*lease+time.Second)); err != nil {
			t.Fatal(err)
		}
		rec, out = claim(t, s, "k", t0.Add(2*lease+2*time.Second))
		wantOutcome(t, out, ledger.ClaimTakeover)
		if rec.Lapsed != 2 || rec.Attempts != 4 {
			t.Fatalf("takeover after release = %+v; want lapsed still 2, attempts 4", rec)
		}
	})

	t.Run("ZeroNowMeansWallClock", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		before := time.Now().Add(-time.Second)
		rec, out, err := s.Claim(ctx, id("k"), ledger.ClaimRequest{Lease: lease})
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, out, ledger.ClaimNew)
		if rec.CreatedAt.Before(before) || rec.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("CreatedAt = %v, want about now", rec.CreatedAt)
		}
	})
}

// unavailable stands, in claimConcurrently's tally, for ErrUnavailable.
const unavailable ledger.ClaimOutcome = -1

func claimConcurrently(t *testing.T, s ledger.Store, key string, now time.Time, n int) map[ledger.ClaimOutcome]int {
	t.Helper()
	var (
		mu   sync.Mutex
		outs = make(map[ledger.ClaimOutcome]int)
		errs []error
		wg   sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, out, err := s.Claim(context.Background(), id(key), ledger.ClaimRequest{PubSubMessageID: fmt.Sprint(i), Lease: lease, Now: now})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ledger.ErrUnavailable):
				outs[unavailable]++
			case err != nil:
				errs = append(errs, err)
			default:
				outs[out]++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent claims failed: %v", errs)
	}
	return outs
}
