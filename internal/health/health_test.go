package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/events"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/googletest"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// recorder keeps published account events.
type recorder struct {
	mu  sync.Mutex
	got []*events.Account
}

func (r *recorder) Publish(_ context.Context, e *events.Account) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, e)
	return nil
}

func (r *recorder) events() []*events.Account {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*events.Account(nil), r.got...)
}

func newChecker(t *testing.T) (*health.Checker, *googletest.Stack, *recorder) {
	t.Helper()
	st := googletest.New(t)
	rec := &recorder{}
	return &health.Checker{Tokens: st.Tokens, Accounts: st.Registry, OAuth: st.OAuth, Events: rec,
		ConnectURL: "https://relay.example.com/authorize"}, st, rec
}

func TestCheckValidRefreshes(t *testing.T) {
	t.Parallel()
	c, st, rec := newChecker(t)
	st.Connect(t, "alice@example.com")
	before := st.Sandbox.Stats()
	res, err := c.Check(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != health.OutcomeValid || res.AccessToken == nil || res.AccessToken.AccessToken == "" {
		t.Fatalf("Check = %+v", res)
	}
	if st.Sandbox.Stats().TokenRefreshes != before.TokenRefreshes+1 {
		t.Errorf("refreshes %d → %d, want exactly one real refresh", before.TokenRefreshes, st.Sandbox.Stats().TokenRefreshes)
	}
	if len(rec.events()) != 0 {
		t.Errorf("events for a healthy account: %+v", rec.events())
	}
}

func TestRevokedTokenMovesToReauth(t *testing.T) {
	t.Parallel()
	c, st, rec := newChecker(t)
	st.Connect(t, "alice@example.com")
	st.Connect(t, "bob@example.com")
	if n := st.Sandbox.RevokeAll("alice@example.com"); n == 0 {
		t.Fatal("sandbox revoked nothing")
	}
	sum, err := c.CheckAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Checked != 2 || sum.Valid != 1 || sum.Reauth != 1 {
		t.Fatalf("summary = %+v", sum)
	}
	a, _ := st.Registry.Get(context.Background(), "alice@example.com")
	if a.Status != registry.StatusReauthRequired || a.LastError == "" {
		t.Errorf("alice = %+v, want reauth_required with a reason", a)
	}
	b, _ := st.Registry.Get(context.Background(), "bob@example.com")
	if b.Status != registry.StatusConnected {
		t.Errorf("bob = %s, want connected", b.Status)
	}
	evs := rec.events()
	if len(evs) != 1 || evs[0].Type != events.TypeStatusChanged || evs[0].Account != "alice@example.com" ||
		evs[0].Status != "reauth_required" || evs[0].PreviousStatus != "connected" ||
		evs[0].ReconnectURL != "https://relay.example.com/authorize?login_hint=alice%40example.com" {
		t.Fatalf("events = %+v", evs)
	}
	// A second run reports it again in the summary but announces nothing new.
	if _, err := c.CheckAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.events()) != 1 {
		t.Errorf("a repeated check published again: %+v", rec.events())
	}

	// The owner reconnects: the next check finds a working token.
	st.Connect(t, "alice@example.com")
	if err := st.Registry.Upsert(context.Background(), &registry.Account{Email: "alice@example.com", Status: registry.StatusReauthRequired}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Check(context.Background(), "alice@example.com")
	if err != nil || res.Outcome != health.OutcomeValid {
		t.Fatalf("after reconnect: %+v, %v", res, err)
	}
	evs = rec.events()
	if last := evs[len(evs)-1]; last.Status != "connected" || last.PreviousStatus != "reauth_required" {
		t.Errorf("recovery event = %+v", last)
	}
}

func TestMissingTokenIsReauth(t *testing.T) {
	t.Parallel()
	c, st, _ := newChecker(t)
	st.Connect(t, "alice@example.com")
	if err := st.Tokens.Delete(context.Background(), "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Check(context.Background(), "alice@example.com")
	if err != nil || res.Outcome != health.OutcomeReauth {
		t.Fatalf("Check = %+v, %v", res, err)
	}
}

func TestTestingStatusWarnsBeforeExpiry(t *testing.T) {
	t.Parallel()
	c, st, rec := newChecker(t)
	c.Testing = true
	tok := st.Connect(t, "alice@example.com")
	issued := time.Now().Add(-6 * 24 * time.Hour).UTC()
	if err := st.Tokens.Save(context.Background(), "alice@example.com", tokenstore.Token{RefreshToken: tok.RefreshToken, IssuedAt: issued}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Check(context.Background(), "alice@example.com")
	if err != nil || res.Outcome != health.OutcomeExpiring || !res.ExpiresAt.Equal(issued.Add(health.TestingTokenLifetime)) {
		t.Fatalf("Check = %+v, %v", res, err)
	}
	evs := rec.events()
	if len(evs) != 1 || evs[0].Type != events.TypeTokenExpiring || evs[0].ReconnectURL == "" {
		t.Fatalf("events = %+v", evs)
	}

	// A fresh token is not warned about.
	st.Connect(t, "bob@example.com")
	res, err = c.Check(context.Background(), "bob@example.com")
	if err != nil || res.Outcome != health.OutcomeValid {
		t.Fatalf("fresh token: %+v, %v", res, err)
	}
}

func TestRotatedRefreshTokenIsSaved(t *testing.T) {
	t.Parallel()
	c, st, _ := newChecker(t)
	first := st.Connect(t, "alice@example.com")
	st.Sandbox.RotateRefreshTokens(true)
	if _, err := c.Check(context.Background(), "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	stored, err := st.Tokens.Load(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if stored.RefreshToken == first.RefreshToken {
		t.Fatal("the rotated refresh token was not saved")
	}
	// The saved one works; the old one no longer does.
	if _, err := st.OAuth.Refresh(context.Background(), stored.RefreshToken); err != nil {
		t.Errorf("saved token does not refresh: %v", err)
	}
}

func TestDisconnectedIsSkipped(t *testing.T) {
	t.Parallel()
	c, st, _ := newChecker(t)
	st.Connect(t, "alice@example.com")
	if _, _, err := st.Registry.SetStatus(context.Background(), "alice@example.com", registry.StatusDisconnected, "operator", time.Now()); err != nil {
		t.Fatal(err)
	}
	before := st.Sandbox.Stats().TokenRefreshes
	sum, err := c.CheckAll(context.Background())
	if err != nil || sum.Checked != 0 {
		t.Fatalf("CheckAll = %+v, %v", sum, err)
	}
	if st.Sandbox.Stats().TokenRefreshes != before {
		t.Error("a disconnected account was refreshed")
	}
}

// unlistable is a registry whose List fails, as Firestore's does when it is
// unavailable.
type unlistable struct{ health.Accounts }

func (unlistable) List(context.Context) ([]*registry.Account, error) {
	return nil, errors.New("firestore unavailable")
}

// TestRun: the scheduled run logs its summary and asks for a redelivery
// only when the registry cannot be listed, never for one account's failure.
func TestRun(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		unlistable  bool
		wantErr     bool
		wantMessage string
		wantFields  map[string]float64
	}{
		{name: "one dead token is no redelivery", wantMessage: "health check finished",
			wantFields: map[string]float64{"checked": 2, "valid": 1, "reauth_required": 1, "errors": 0, "expiring": 0}},
		{name: "registry down is a redelivery", unlistable: true, wantErr: true, wantMessage: "health check could not list the accounts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, st, _ := newChecker(t)
			st.Connect(t, "alice@example.com")
			st.Connect(t, "bob@example.com")
			st.Sandbox.RevokeAll("alice@example.com")
			if tc.unlistable {
				c.Accounts = unlistable{c.Accounts}
			}
			var logs testenv.SyncBuffer
			ctx := logging.WithLogger(context.Background(), logging.New(&logs, slog.LevelInfo))
			sum, err := c.Run(ctx)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Run = %+v, %v; want error %v", sum, err, tc.wantErr)
			}
			var entry map[string]any
			for l := range strings.Lines(logs.String()) {
				var e map[string]any
				if json.Unmarshal([]byte(l), &e) == nil && strings.HasPrefix(e["message"].(string), tc.wantMessage) {
					entry = e
				}
			}
			if entry == nil {
				t.Fatalf("no log entry %q in:\n%s", tc.wantMessage, logs.String())
			}
			for k, want := range tc.wantFields {
				if got, _ := entry[k].(float64); got != want {
					t.Errorf("summary log %s = %v, want %v (%v)", k, entry[k], want, entry)
				}
			}
		})
	}
}
