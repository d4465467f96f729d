package devserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestDailyLimitThroughDev is issue 18's daily-quota check with make dev's
// stack: an operator sets a mailbox's daily_limit to 2 through admin, the
// first two messages are sent, and the third is held and reported as
// daily_limit with retry_at, never reaching Gmail.
func TestDailyLimitThroughDev(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const account, rcpt = "quota-dev@example.com", "quota-rcpt@example.org"
	connectTo(ctx, t, srv, account)

	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, srv.BaseURL+"/admin/accounts/"+account, bytes.NewReader([]byte(`{"daily_limit": 2}`)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var view struct {
		DailyLimit int `json:"daily_limit"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &view) != nil || view.DailyLimit != 2 {
		t.Fatalf("PATCH daily_limit answered %d: %s", resp.StatusCode, b)
	}

	for _, k := range []string{"quota-dev-1", "quota-dev-2", "quota-dev-3"} {
		publish(ctx, t, `{"account":"`+account+`","to":["`+rcpt+`"],"subject":"`+k+`","text":"x","idempotency_key":"`+k+`"}`)
		// One at a time, so that which one is held is known.
		waitFor(ctx, t, "the result of "+k, func() bool { return contains(out.String(), `"idempotency_key":"`+k+`"`) })
	}
	for _, k := range []string{"quota-dev-1", "quota-dev-2"} {
		if !contains(out.String(), `"idempotency_key":"`+k+`"`, `"status":"sent"`) {
			t.Errorf("%s was not sent:\n%s", k, out.String())
		}
	}
	if !contains(out.String(), `"idempotency_key":"quota-dev-3"`, `"status":"failed"`, `"code":"daily_limit"`, `"retry_at":"`, `{\"daily_limit\": N}`) {
		t.Errorf("the third message is not reported daily_limit with retry_at and the fix:\n%s", out.String())
	}
	if n := len(outboxFor(t, rcpt)); n != 2 {
		t.Errorf("%d messages to %s in the outbox, want 2", n, rcpt)
	}
}

// TestAdminRootRedirect: /admin/ sends a browser to the accounts page
// under make dev's /admin prefix, not to the server's /accounts.
func TestAdminRootRedirect(t *testing.T) {
	t.Parallel()
	resp, err := browserless().Get(srv.BaseURL + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode != http.StatusFound || err != nil || loc.Path != "/admin/accounts" {
		t.Errorf("GET /admin/ answered %d to %v (%v); want 302 to /admin/accounts", resp.StatusCode, loc, err)
	}
}
