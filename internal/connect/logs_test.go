package connect_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// TestLogsHoldNoSecrets runs flows that log at every level, through a plain
// slog JSON handler (no redaction to hide behind), and checks that no
// authorization code, token, PKCE verifier, client secret or state cookie
// value appears in them.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	var buf testenv.SyncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const email = "alice@example.com"

	type flow struct {
		name  string
		setup setup
		run   func(t *testing.T, h *harness)
	}
	flows := []flow{
		{name: "connect, then replay", run: func(t *testing.T, h *harness) {
			b := h.browser()
			u := b.connectURL(t, email)
			wantConnected(t, b.open(t, u, true), email)
			wantProblem(t, b.open(t, u, true), 400, "state_used")
		}},
		{name: "code reused", run: func(t *testing.T, h *harness) {
			b := h.browser()
			u := b.connectURL(t, email)
			kept := b.cookie(stateCookie).Value
			wantConnected(t, b.open(t, u, true), email)
			b.setCookie(stateCookie, kept)
			wantProblem(t, b.open(t, u, true), 400, "invalid_grant")
		}},
		{name: "scope unticked", run: func(t *testing.T, h *harness) {
			b := h.browser()
			wantProblem(t, b.open(t, b.connectURL(t, email, "gmail.send"), true), 403, "scope_missing")
		}},
		{name: "identity refused", run: func(t *testing.T, h *harness) {
			b := h.browser()
			wantProblem(t, b.open(t, b.connectURL(t, email, "email"), true), 400, "identity_invalid")
		}},
		{name: "registry down", setup: setup{accounts: failAccounts(-1)}, run: func(t *testing.T, h *harness) {
			b := h.browser()
			wantProblem(t, b.open(t, b.connectURL(t, email), true), 503, "storage_failed")
		}},
		{name: "Secret Manager down", run: func(t *testing.T, h *harness) {
			h.sm.FailNext("AddSecretVersion", codes.Unavailable, 3)
			b := h.browser()
			wantProblem(t, b.open(t, b.connectURL(t, email), true), 503, "storage_failed")
		}},
		{name: "refresh check fails", setup: setup{transport: answerToken("refresh_token", 400, `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`)}, run: func(t *testing.T, h *harness) {
			b := h.browser()
			wantProblem(t, b.open(t, b.connectURL(t, email), true), 502, "token_check_failed")
		}},
		{name: "no refresh token", setup: setup{transport: editTokenResponse("authorization_code", func(m map[string]any) { delete(m, "refresh_token") })}, run: func(t *testing.T, h *harness) {
			b := h.browser()
			wantProblem(t, b.open(t, b.connectURL(t, email), true), 502, "no_refresh_token")
		}},
	}
	secrets := map[string]string{testClientSecret: "the client secret"}
	var harnesses []*harness
	for _, f := range flows {
		f.setup.logger = logger
		h := newHarness(t, f.setup)
		harnesses = append(harnesses, h)
		t.Run(f.name, func(t *testing.T) { f.run(t, h) })
	}
	for _, h := range harnesses {
		for v, what := range h.rec.secretValues() {
			secrets[v] = what
		}
		for _, v := range h.stateCookies() {
			secrets[v] = "a state cookie value"
		}
	}
	kinds := map[string]bool{}
	for _, what := range secrets {
		kinds[what] = true
	}
	for _, want := range []string{"an authorization code", "a PKCE verifier", "an access token", "a refresh token", "an ID token", "a client secret", "a state cookie value"} {
		if !kinds[want] {
			t.Errorf("the flows never produced %s, so the check below proves nothing about it", want)
		}
	}

	logs := buf.String()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	var messages []string
	for i, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %d is not JSON: %v", i+1, err)
		}
		msg, _ := rec["msg"].(string)
		messages = append(messages, msg)
		for v, what := range secrets {
			if strings.Contains(line, v) {
				t.Errorf("log line %d (%q) contains %s", i+1, msg, what)
			}
		}
	}
	// The check must have had something to look at.
	for _, want := range []string{"consent started", "account connected", "connection refused", "identity rejected", "saving the account failed; removing the token", "saving the token failed", "code exchange failed", "state rejected"} {
		found := false
		for _, m := range messages {
			found = found || m == want
		}
		if !found {
			t.Errorf("no %q line in the logs: the flows did not log what they should", want)
		}
	}
}
