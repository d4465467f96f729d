package devserver_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/delegation"
	"github.com/gmailrelay/gmailrelay/internal/dev/devserver"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

// TestDelegatedDomain is issue 19's first "Done when" through make dev's
// stack: with DELEGATED_DOMAINS=example.net, a request as
// zoe@example.net, who never connected, is sent, and admin lists zoe as
// delegated.
func TestDelegatedDomain(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, out := appsStack(t, map[string]string{"DELEGATED_DOMAINS": "example.net"})
	const zoe = "zoe@example.net"
	publishTo(ctx, t, s, devserver.SendTopic, `{"account":"`+zoe+`","to":["bob@example.org"],"subject":"delegated","text":"hi","idempotency_key":"dwd-1"}`)
	for !contains(out.String(), `"status":"sent"`, zoe) {
		select {
		case <-ctx.Done():
			t.Fatalf("no sent result for %s; output:\n%s", zoe, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if msgs := s.Sandbox.Outbox(); len(msgs) != 1 || msgs[0].Email != zoe || !strings.Contains(msgs[0].To, "bob@example.org") {
		t.Fatalf("outbox = %+v, want one message from %s to bob", msgs, zoe)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.BaseURL+"/admin/accounts", nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if !contains(b.String(), zoe, "connected", "delegated") {
		t.Fatalf("admin accounts:\n%s\nwant zoe connected and delegated", b.String())
	}
	if st := s.Sandbox.Stats(); st.SignJWTCalls != 1 {
		t.Fatalf("signJwt calls = %d, want 1", st.SignJWTCalls)
	}
	// The relay's emulator credential is the one the sandbox accepts.
	if delegation.EmulatorBearer != sandbox.DevIAMCredential {
		t.Fatalf("delegation.EmulatorBearer %q != sandbox.DevIAMCredential %q", delegation.EmulatorBearer, sandbox.DevIAMCredential)
	}
}
