package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/registry"
)

// runKindContract holds both stores to what delegated accounts need: Create
// never overwrites, and the kind survives every kind of write.
func runKindContract(t *testing.T, open func(t *testing.T) store) {
	ctx := context.Background()
	delegated := func() *registry.Account {
		return &registry.Account{Email: "Zoe@Example.NET", Status: registry.StatusConnected, Kind: registry.KindDelegated,
			Scopes: []string{"https://www.googleapis.com/auth/gmail.send"}, ConnectedAt: t0, UpdatedAt: t0}
	}

	t.Run("CreateRegistersOnceAndKeepsKind", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if err := s.Create(ctx, delegated()); err != nil {
			t.Fatalf("Create: %v", err)
		}
		a := get(t, s, "zoe@example.net")
		if a.Kind != registry.KindDelegated || !a.Delegated() || a.Email != "zoe@example.net" {
			t.Fatalf("created account = %+v, want delegated zoe@example.net", a)
		}
		second := delegated()
		second.Status = registry.StatusReauthRequired
		if err := s.Create(ctx, second); !errors.Is(err, registry.ErrExists) {
			t.Fatalf("second Create = %v, want ErrExists", err)
		}
		if got := get(t, s, "zoe@example.net"); got.Status != registry.StatusConnected {
			t.Fatalf("second Create changed the account: %+v", got)
		}
	})

	t.Run("CreateNeverRevivesADisconnectedAccount", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if err := s.Create(ctx, delegated()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.SetStatus(ctx, "zoe@example.net", registry.StatusDisconnected, "disconnected by the operator", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.Create(ctx, delegated()); !errors.Is(err, registry.ErrExists) {
			t.Fatalf("Create over a disconnected account = %v, want ErrExists", err)
		}
		a := get(t, s, "zoe@example.net")
		if a.Status != registry.StatusDisconnected || a.Kind != registry.KindDelegated {
			t.Fatalf("account = %+v, want disconnected and still delegated", a)
		}
	})

	t.Run("StatusChangesKeepKind", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if err := s.Create(ctx, delegated()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.SetStatus(ctx, "zoe@example.net", registry.StatusConnected, "delegation denied", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkRefreshed(ctx, "zoe@example.net", t0.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if a := get(t, s, "zoe@example.net"); a.Kind != registry.KindDelegated {
			t.Fatalf("kind after status changes = %q, want delegated", a.Kind)
		}
	})

	t.Run("UnknownKindIsRefused", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a := delegated()
		a.Kind = "service"
		if err := s.Create(ctx, a); err == nil {
			t.Fatal("Create with an unknown kind succeeded")
		}
		if err := s.Upsert(ctx, a); err == nil {
			t.Fatal("Upsert with an unknown kind succeeded")
		}
	})
}
