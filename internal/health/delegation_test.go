package health_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/delegation"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/registry"
)

const delegateSA = "delegate@relay-project.iam.gserviceaccount.com"

// TestCheckDelegatedMints: a delegated account's check mints a token
// through the real impersonate code; a withdrawn authorisation is reported
// with the admin's fix and announced once, and the account keeps its
// status, since no reconnect would help.
func TestCheckDelegatedMints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, st, rec := newChecker(t)
	d, err := delegation.New(ctx, delegation.Config{ServiceAccount: delegateSA, ClientID: sandbox.ServiceAccountClientID(delegateSA),
		Domains: []string{"example.net"}, Endpoint: st.URL})
	if err != nil {
		t.Fatal(err)
	}
	c.Delegation = d
	allow := func(on bool) {
		if err := st.Sandbox.SetDelegation(sandbox.Delegation{Domain: "example.net", ClientID: sandbox.ServiceAccountClientID(delegateSA),
			Scopes: []string{sandbox.ScopeGmailSend}, Enabled: on}); err != nil {
			t.Fatal(err)
		}
	}
	allow(true)
	const zoe = "zoe@example.net"
	if err := st.Registry.Create(ctx, &registry.Account{Email: zoe, Status: registry.StatusConnected, Kind: registry.KindDelegated, UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	res, err := c.Check(ctx, zoe)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != health.OutcomeValid || res.AccessToken == nil || st.Sandbox.Stats().SignJWTCalls != 1 {
		t.Fatalf("Check = %+v (signJwt calls %d), want valid with a minted token", res, st.Sandbox.Stats().SignJWTCalls)
	}
	a, _ := st.Registry.Get(ctx, zoe)
	if a.LastRefreshAt.IsZero() {
		t.Fatal("a successful mint was not recorded")
	}

	allow(false)
	for range 2 {
		res, err = c.Check(ctx, zoe)
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != health.OutcomeError || res.Status != string(registry.StatusConnected) ||
			!strings.Contains(res.Message, "Domain-wide delegation") || !strings.Contains(res.Message, sandbox.ServiceAccountClientID(delegateSA)) {
			t.Fatalf("Check after withdrawal = %+v, want an error with the admin's fix", res)
		}
	}
	if ev := rec.events(); len(ev) != 1 || ev[0].Type != delegation.EventDenied || ev[0].Account != zoe {
		t.Fatalf("events = %+v, want one delegation_denied", ev)
	}
	if a, _ := st.Registry.Get(ctx, zoe); a.Status != registry.StatusConnected || !strings.Contains(a.LastError, "Domain-wide delegation") {
		t.Fatalf("account after withdrawal = %+v, want connected with the reason recorded", a)
	}

	allow(true)
	if res, _ = c.Check(ctx, zoe); res.Outcome != health.OutcomeValid {
		t.Fatalf("Check after re-authorising = %+v", res)
	}
	if a, _ := st.Registry.Get(ctx, zoe); a.LastError != "" {
		t.Fatalf("the old error stayed after a mint worked: %+v", a)
	}
}
