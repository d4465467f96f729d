package connect_test

import (
	"context"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// TestConfirmFirestore runs a connect and a reconnect against the real
// Firestore client and the emulator, on a project of its own.
func TestConfirmFirestore(t *testing.T) {
	t.Parallel()
	testenv.Integration(t)
	fs := testenv.FirestoreClient(t)

	const email = "alice@example.com"
	h := newHarness(t, setup{registry: registry.NewFirestore(fs)})
	br := h.browser()
	wantConnected(t, br.open(t, br.connectURL(t, email), true), email)
	first := h.wantOneSecret(t, email)
	h.wantRegistered(t, email, grantedScopes)

	h.relay.Advance(time.Hour)
	again := h.browser()
	wantConnected(t, again.open(t, again.connectURL(t, email), true), email)
	if h.wantOneSecret(t, email).RefreshToken == first.RefreshToken {
		t.Error("reconnecting kept the old refresh token")
	}
	h.wantRegistered(t, email, grantedScopes)

	// A refused connection leaves no document behind.
	const bob = "bob@example.com"
	refused := h.browser()
	wantProblem(t, refused.open(t, refused.connectURL(t, bob, "gmail.send"), true), 403, "scope_missing")
	if _, err := h.reg.Get(context.Background(), bob); err == nil {
		t.Error("a refused account has a registry document")
	}
	all, err := h.reg.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Email != email {
		t.Errorf("registry holds %d accounts, want only %s", len(all), email)
	}
}
