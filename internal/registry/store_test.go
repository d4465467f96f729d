package registry_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/registry"
)

// store is what the contract suite drives: the Store plus its counters.
type store interface {
	registry.Store
	Stats() registry.Stats
}

// t0 has nanoseconds on purpose: both stores must keep microseconds only,
// as Firestore does.
var t0 = time.Date(2030, 3, 4, 5, 6, 7, 123456789, time.UTC)

func us(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

const alice = "alice@example.com"

func account(email string, s registry.Status) *registry.Account {
	return &registry.Account{
		Email:         email,
		Status:        s,
		Scopes:        []string{"openid", "email", "https://www.googleapis.com/auth/gmail.send"},
		ConnectedAt:   t0,
		TokenIssuedAt: t0,
		UpdatedAt:     t0,
	}
}

func upsert(t *testing.T, s registry.Store, a *registry.Account) {
	t.Helper()
	if err := s.Upsert(context.Background(), a); err != nil {
		t.Fatalf("Upsert(%s): %v", a.Email, err)
	}
}

func get(t *testing.T, s registry.Store, email string) *registry.Account {
	t.Helper()
	a, err := s.Get(context.Background(), email)
	if err != nil {
		t.Fatalf("Get(%s): %v", email, err)
	}
	return a
}

func sameAccount(t *testing.T, what string, got, want *registry.Account) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// runContract runs the Store contract against the stores open returns; each
// call must give an empty store that no other test sees.
func runContract(t *testing.T, open func(t *testing.T) store) {
	ctx := context.Background()
	runKindContract(t, open)
	runAliasContract(t, open)
	runQuotaContract(t, open)

	t.Run("UpsertNormalizesAndGetFindsAnyCase", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		in := account("  Alice@Example.COM ", registry.StatusConnected)
		in.LastRefreshAt = t0.Add(time.Minute)
		upsert(t, s, in)
		if in.Email != "  Alice@Example.COM " || in.ConnectedAt != t0 {
			t.Fatalf("Upsert modified the caller's account: %+v", in)
		}
		want := &registry.Account{
			Email: alice, Status: registry.StatusConnected, Scopes: in.Scopes,
			ConnectedAt: us(t0), TokenIssuedAt: us(t0), LastRefreshAt: us(t0.Add(time.Minute)), UpdatedAt: us(t0),
		}
		for _, email := range []string{alice, "ALICE@example.com", " alice@example.com\t"} {
			sameAccount(t, "Get("+email+")", get(t, s, email), want)
		}
	})

	t.Run("UpsertReplacesWholeAccount", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		old := account(alice, registry.StatusReauthRequired)
		old.LastError, old.LastErrorAt = "invalid_grant", t0
		old.LastRefreshAt = t0
		upsert(t, s, old)

		reconnect := &registry.Account{Email: alice, Status: registry.StatusConnected, Scopes: []string{"https://www.googleapis.com/auth/gmail.send"}, ConnectedAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Hour)}
		upsert(t, s, reconnect)
		want := &registry.Account{Email: alice, Status: registry.StatusConnected, Scopes: reconnect.Scopes, ConnectedAt: us(t0.Add(time.Hour)), UpdatedAt: us(t0.Add(time.Hour))}
		sameAccount(t, "account after reconnect", get(t, s, alice), want)
		if got := s.Stats().Writes; got != 2 {
			t.Errorf("writes = %d, want 2", got)
		}
	})

	t.Run("UpsertZeroUpdatedAtMeansNow", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		before := time.Now().Add(-time.Second)
		upsert(t, s, &registry.Account{Email: alice, Status: registry.StatusConnected})
		a := get(t, s, alice)
		if a.UpdatedAt.Before(before) || a.UpdatedAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("UpdatedAt = %v, want about now", a.UpdatedAt)
		}
		if a.Scopes != nil {
			t.Fatalf("Scopes = %#v, want nil", a.Scopes)
		}
	})

	t.Run("ListIsOrderedByEmail", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		got, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Fatalf("List of an empty registry = %v", got)
		}
		for _, e := range []string{"carol@example.com", "Bob@example.org", "alice@example.net", "aaron@example.com"} {
			upsert(t, s, account(e, registry.StatusConnected))
		}
		got, err = s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var emails []string
		for _, a := range got {
			emails = append(emails, a.Email)
		}
		want := []string{"aaron@example.com", "alice@example.net", "bob@example.org", "carol@example.com"}
		if !reflect.DeepEqual(emails, want) {
			t.Fatalf("List order = %v, want %v", emails, want)
		}
		sameAccount(t, "listed account", got[0], get(t, s, "aaron@example.com"))
	})

	t.Run("SetStatusTransitions", func(t *testing.T) {
		t.Parallel()
		const oldErr = "earlier failure"
		now := t0.Add(time.Hour)
		for _, tc := range []struct {
			from, to    registry.Status
			reason      string
			wantChanged bool
			wantStatus  registry.Status
			wantErr     string // LastError afterwards
			wantWrite   bool
		}{
			{registry.StatusConnected, registry.StatusReauthRequired, "Token has been expired or revoked.", true, registry.StatusReauthRequired, "Token has been expired or revoked.", true},
			{registry.StatusReauthRequired, registry.StatusReauthRequired, "again", false, registry.StatusReauthRequired, "again", true},
			{registry.StatusReauthRequired, registry.StatusReauthRequired, "", false, registry.StatusReauthRequired, oldErr, false},
			{registry.StatusReauthRequired, registry.StatusReauthRequired, oldErr, false, registry.StatusReauthRequired, oldErr, false},
			{registry.StatusConnected, registry.StatusConnected, "", false, registry.StatusConnected, oldErr, false},
			{registry.StatusReauthRequired, registry.StatusConnected, "", true, registry.StatusConnected, "", true},
			{registry.StatusReauthRequired, registry.StatusConnected, "reconnected by test", true, registry.StatusConnected, "reconnected by test", true},
			{registry.StatusConnected, registry.StatusDisconnected, "disconnected by operator", true, registry.StatusDisconnected, "disconnected by operator", true},
			{registry.StatusDisconnected, registry.StatusConnected, "", false, registry.StatusDisconnected, oldErr, false},
			{registry.StatusDisconnected, registry.StatusReauthRequired, "invalid_grant", false, registry.StatusDisconnected, oldErr, false},
			{registry.StatusDisconnected, registry.StatusDisconnected, "again", false, registry.StatusDisconnected, "again", true},
		} {
			t.Run(fmt.Sprintf("%s_to_%s_%q", tc.from, tc.to, tc.reason), func(t *testing.T) {
				t.Parallel()
				s := open(t)
				a := account(alice, tc.from)
				a.LastError, a.LastErrorAt = oldErr, t0
				upsert(t, s, a)
				before := get(t, s, alice)
				writes := s.Stats().Writes

				changed, prev, err := s.SetStatus(ctx, "Alice@example.com", tc.to, tc.reason, now)
				if err != nil {
					t.Fatal(err)
				}
				if changed != tc.wantChanged || prev != tc.from {
					t.Errorf("SetStatus = (changed %v, prev %q), want (%v, %q)", changed, prev, tc.wantChanged, tc.from)
				}
				after := get(t, s, alice)
				if after.Status != tc.wantStatus || after.LastError != tc.wantErr {
					t.Errorf("after SetStatus: status %q, last error %q; want %q, %q", after.Status, after.LastError, tc.wantStatus, tc.wantErr)
				}
				if wrote := s.Stats().Writes > writes; wrote != tc.wantWrite {
					t.Errorf("wrote = %v, want %v", wrote, tc.wantWrite)
				}
				if !tc.wantWrite {
					sameAccount(t, "untouched account", after, before)
					return
				}
				if !after.UpdatedAt.Equal(us(now)) {
					t.Errorf("UpdatedAt = %v, want %v", after.UpdatedAt, us(now))
				}
				switch {
				case tc.reason != "" && !after.LastErrorAt.Equal(us(now)):
					t.Errorf("LastErrorAt = %v, want %v", after.LastErrorAt, us(now))
				case tc.wantErr == "" && !after.LastErrorAt.IsZero():
					t.Errorf("LastErrorAt = %v, want it cleared", after.LastErrorAt)
				}
				want := *before
				want.Status, want.UpdatedAt, want.LastError, want.LastErrorAt = after.Status, after.UpdatedAt, after.LastError, after.LastErrorAt
				sameAccount(t, "other fields", after, &want)
			})
		}
	})

	t.Run("ConcurrentSetStatusChangesOnce", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsert(t, s, account(alice, registry.StatusConnected))
		writes := s.Stats().Writes
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			changes int
			errs    []error
		)
		start := make(chan struct{})
		for i := range 20 {
			wg.Go(func() {
				<-start
				changed, _, err := s.SetStatus(ctx, alice, registry.StatusReauthRequired, "Token has been expired or revoked.", t0.Add(time.Duration(i)*time.Second))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if changed {
					changes++
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 || changes != 1 {
			t.Fatalf("20 concurrent SetStatus: %d reported a change, errors %v; want exactly 1 change and no error", changes, errs)
		}
		if a := get(t, s, alice); a.Status != registry.StatusReauthRequired || a.LastError == "" {
			t.Fatalf("account = %+v, want reauth_required with the error", a)
		}
		// The losers reread and find the same status and error recorded.
		if got := s.Stats().Writes - writes; got != 1 {
			t.Fatalf("20 concurrent identical SetStatus wrote %d times, want 1", got)
		}
	})

	t.Run("MarkRefreshed", func(t *testing.T) {
		t.Parallel()
		refresh := t0.Add(time.Hour)
		for _, tc := range []struct {
			name        string
			status      registry.Status
			lastErrorAt time.Time
			lastRefresh time.Time
			wantStatus  registry.Status
			wantCleared bool
			wantRefresh time.Time
		}{
			{"connected clears error", registry.StatusConnected, t0, time.Time{}, registry.StatusConnected, true, refresh},
			{"reauth required comes back", registry.StatusReauthRequired, t0, t0, registry.StatusConnected, true, refresh},
			{"error newer than refresh stays", registry.StatusReauthRequired, refresh.Add(time.Minute), t0, registry.StatusReauthRequired, false, refresh},
			{"refresh time never goes back", registry.StatusConnected, t0, refresh.Add(time.Hour), registry.StatusConnected, true, refresh.Add(time.Hour)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := open(t)
				a := account(alice, tc.status)
				a.LastError, a.LastErrorAt, a.LastRefreshAt = "invalid_grant", tc.lastErrorAt, tc.lastRefresh
				upsert(t, s, a)
				before := get(t, s, alice)

				if err := s.MarkRefreshed(ctx, alice, refresh); err != nil {
					t.Fatal(err)
				}
				after := get(t, s, alice)
				if after.Status != tc.wantStatus || !after.LastRefreshAt.Equal(us(tc.wantRefresh)) {
					t.Errorf("after MarkRefreshed: status %q, last refresh %v; want %q, %v", after.Status, after.LastRefreshAt, tc.wantStatus, us(tc.wantRefresh))
				}
				if cleared := after.LastError == "" && after.LastErrorAt.IsZero(); cleared != tc.wantCleared {
					t.Errorf("last error %q at %v; cleared = %v, want %v", after.LastError, after.LastErrorAt, cleared, tc.wantCleared)
				}
				if !after.UpdatedAt.After(before.UpdatedAt) {
					t.Errorf("UpdatedAt = %v, want it moved past %v", after.UpdatedAt, before.UpdatedAt)
				}
				if !reflect.DeepEqual(after.Scopes, before.Scopes) || !after.ConnectedAt.Equal(before.ConnectedAt) {
					t.Errorf("MarkRefreshed changed unrelated fields: %+v", after)
				}
			})
		}
	})

	t.Run("MarkRefreshedDoesNotResurrectDisconnected", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a := account(alice, registry.StatusDisconnected)
		a.LastError, a.LastErrorAt = "disconnected by operator", t0
		upsert(t, s, a)
		before := get(t, s, alice)
		writes := s.Stats().Writes
		if err := s.MarkRefreshed(ctx, alice, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		sameAccount(t, "disconnected account after MarkRefreshed", get(t, s, alice), before)
		if s.Stats().Writes != writes {
			t.Error("MarkRefreshed wrote a disconnected account")
		}
	})

	t.Run("MarkRefreshedTwiceWritesOnce", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsert(t, s, account(alice, registry.StatusConnected))
		writes := s.Stats().Writes
		for range 2 {
			if err := s.MarkRefreshed(ctx, alice, t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.Stats().Writes - writes; got != 1 {
			t.Fatalf("two identical MarkRefreshed wrote %d times, want 1", got)
		}
	})

	t.Run("SetHoldOnlyExtends", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsert(t, s, account(alice, registry.StatusConnected))
		upsert(t, s, account("gone@example.com", registry.StatusDisconnected))
		t6 := t0.Add(6 * time.Hour)
		steps := []struct {
			name      string
			email     string
			until     time.Time
			now       time.Time
			wantWrite bool
			wantUntil time.Time
		}{
			{"first hold", " Alice@Example.com", t6, t0, true, us(t6)},
			{"the same hold again", alice, t6, t0.Add(time.Minute), false, us(t6)},
			{"an earlier time, answered late", alice, t0.Add(time.Hour), t0.Add(2 * time.Minute), false, us(t6)},
			{"Gmail moved the time later", alice, t6.Add(time.Hour), t0.Add(3 * time.Minute), true, us(t6.Add(time.Hour))},
			{"a time already past", alice, t0, t0.Add(8 * time.Hour), false, us(t6.Add(time.Hour))},
			{"a disconnected account", "gone@example.com", t6, t0, false, time.Time{}},
		}
		for _, st := range steps {
			writes := s.Stats().Writes
			wrote, err := s.SetHold(ctx, st.email, st.until, "daily cap: "+st.name, st.now)
			if err != nil {
				t.Fatalf("%s: SetHold: %v", st.name, err)
			}
			if wrote != st.wantWrite || (s.Stats().Writes-writes == 1) != st.wantWrite {
				t.Errorf("%s: wrote = %v with %d writes; want %v", st.name, wrote, s.Stats().Writes-writes, st.wantWrite)
			}
			a := get(t, s, st.email)
			if !a.HoldUntil.Equal(st.wantUntil) {
				t.Errorf("%s: HoldUntil = %v, want %v", st.name, a.HoldUntil, st.wantUntil)
			}
			if st.wantWrite && (a.HoldReason != "daily cap: "+st.name || !a.UpdatedAt.Equal(us(st.now))) {
				t.Errorf("%s: HoldReason %q, UpdatedAt %v", st.name, a.HoldReason, a.UpdatedAt)
			}
		}
		// The hold survives a status change, and a reconnect (Upsert of a
		// fresh account) drops it with everything else.
		if _, _, err := s.SetStatus(ctx, alice, registry.StatusReauthRequired, "revoked", t0.Add(4*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if a := get(t, s, alice); !a.HoldUntil.Equal(us(t6.Add(time.Hour))) || a.HoldReason == "" {
			t.Errorf("after SetStatus the hold is %v %q", a.HoldUntil, a.HoldReason)
		}
		upsert(t, s, account(alice, registry.StatusConnected))
		if a := get(t, s, alice); !a.HoldUntil.IsZero() || a.HoldReason != "" {
			t.Errorf("after a reconnect the hold is %v %q", a.HoldUntil, a.HoldReason)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsert(t, s, account("bob@example.com", registry.StatusConnected))
		for name, call := range map[string]func() error{
			"Get":           func() error { _, err := s.Get(ctx, alice); return err },
			"SetStatus":     func() error { _, _, err := s.SetStatus(ctx, alice, registry.StatusReauthRequired, "x", t0); return err },
			"MarkRefreshed": func() error { return s.MarkRefreshed(ctx, alice, t0) },
			"SetHold":       func() error { _, err := s.SetHold(ctx, alice, t0.Add(time.Hour), "x", t0); return err },
		} {
			if err := call(); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("%s on a missing account: err = %v, want ErrNotFound", name, err)
			}
		}
		if got := s.Stats().Writes; got != 1 {
			t.Errorf("writes = %d, want only the setup's 1", got)
		}
	})

	t.Run("InvalidInput", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsert(t, s, account(alice, registry.StatusConnected))
		writes := s.Stats().Writes
		for name, call := range map[string]func() error{
			"Get empty":  func() error { _, err := s.Get(ctx, "  "); return err },
			"Upsert nil": func() error { return s.Upsert(ctx, nil) },
			"Upsert no address": func() error {
				return s.Upsert(ctx, &registry.Account{Email: "alice", Status: registry.StatusConnected})
			},
			"Upsert bad status": func() error { return s.Upsert(ctx, &registry.Account{Email: alice, Status: "ok"}) },
			"Upsert no status":  func() error { return s.Upsert(ctx, &registry.Account{Email: alice}) },
			"SetStatus bad":     func() error { _, _, err := s.SetStatus(ctx, alice, "revoked", "", t0); return err },
			"SetStatus empty":   func() error { _, _, err := s.SetStatus(ctx, "", registry.StatusConnected, "", t0); return err },
			"MarkRefreshed":     func() error { return s.MarkRefreshed(ctx, "", t0) },
			"SetHold empty":     func() error { _, err := s.SetHold(ctx, "", t0.Add(time.Hour), "", t0); return err },
		} {
			err := call()
			if err == nil || errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrUnavailable) {
				t.Errorf("%s: err = %v, want a plain validation error", name, err)
			}
		}
		if got := s.Stats().Writes; got != writes {
			t.Errorf("invalid calls wrote %d times", got-writes)
		}
		if a := get(t, s, alice); a.Status != registry.StatusConnected {
			t.Errorf("status = %q after invalid calls", a.Status)
		}
	})
}
