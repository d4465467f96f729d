package registry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/registry"
)

// runAliasContract: SetAliases stores the aliases normalized, deduplicated
// and sorted, writes only a change, refuses what is not an alias, and the
// aliases survive a status change and a reconnect (Upsert without them).
func runAliasContract(t *testing.T, open func(t *testing.T) store) {
	ctx := context.Background()

	t.Run("SetAliasesRoundTrip", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsert(t, s, account(alice, registry.StatusConnected))
		t1 := t0.Add(time.Minute)
		want := []string{"billing@example.com", "sales@acme.example"}

		got, err := s.SetAliases(ctx, " Alice@Example.com", []string{" Sales@Acme.example", "billing@example.com", "BILLING@example.com"}, t1)
		if err != nil {
			t.Fatalf("SetAliases: %v", err)
		}
		if !slices.Equal(got.Aliases, want) || !got.UpdatedAt.Equal(us(t1)) {
			t.Errorf("SetAliases returned aliases %v updated %v; want %v at %v", got.Aliases, got.UpdatedAt, want, us(t1))
		}
		sameAccount(t, "Get after SetAliases", get(t, s, alice), got)

		writes := s.Stats().Writes
		if _, err := s.SetAliases(ctx, alice, []string{"sales@acme.example", "billing@example.com"}, t1.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if n := s.Stats().Writes - writes; n != 0 {
			t.Errorf("setting the same aliases again wrote %d times; want 0", n)
		}

		// A status change and a reconnect keep them: they are the operator's.
		if _, _, err := s.SetStatus(ctx, alice, registry.StatusReauthRequired, "revoked", t1.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		upsert(t, s, account(alice, registry.StatusConnected))
		if a := get(t, s, alice); !slices.Equal(a.Aliases, want) || a.Status != registry.StatusConnected {
			t.Errorf("after a status change and a reconnect: %s with aliases %v; want connected with %v", a.Status, a.Aliases, want)
		}
		list, err := s.List(ctx)
		if err != nil || len(list) != 1 || !slices.Equal(list[0].Aliases, want) {
			t.Errorf("List = %+v, %v; want alice with %v", list, err, want)
		}

		// An empty list removes them all.
		got, err = s.SetAliases(ctx, alice, nil, t1.Add(3*time.Minute))
		if err != nil || got.Aliases != nil {
			t.Fatalf("SetAliases(nil) = %+v, %v; want no aliases", got, err)
		}
		if a := get(t, s, alice); a.Aliases != nil {
			t.Errorf("after clearing, Get has aliases %v", a.Aliases)
		}
	})

	t.Run("SetAliasesRefuses", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsert(t, s, account(alice, registry.StatusConnected))
		many := make([]string, registry.MaxAliases+1)
		for i := range many {
			many[i] = fmt.Sprintf("a%d@example.com", i)
		}
		writes := s.Stats().Writes
		for name, aliases := range map[string][]string{
			"not an address":   {"billing"},
			"empty":            {""},
			"the account":      {"ALICE@example.com"},
			"over the maximum": many,
		} {
			if _, err := s.SetAliases(ctx, alice, aliases, t0); err == nil || errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrUnavailable) {
				t.Errorf("%s: err = %v; want a plain refusal", name, err)
			}
		}
		if _, err := s.SetAliases(ctx, alice, many[:registry.MaxAliases], t0); err != nil {
			t.Errorf("exactly MaxAliases: %v", err)
		}
		if _, err := s.SetAliases(ctx, "nobody@example.com", []string{"b@example.com"}, t0); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("SetAliases on a missing account: err = %v; want ErrNotFound", err)
		}
		if n := s.Stats().Writes - writes; n != 1 {
			t.Errorf("%d writes; want 1, the accepted list only", n)
		}
	})
}
