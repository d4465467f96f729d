package devserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gmailrelay/gmailrelay/internal/testing/browsertest"
)

func contains(s string, subs ...string) bool {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line, all := sc.Text(), true
		for _, sub := range subs {
			if !strings.Contains(line, sub) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func adminJSON(ctx context.Context, t *testing.T, method, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, method, srv.BaseURL+"/admin"+path, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

// TestOperations walks the operator's day with the local stack: a token
// revoked at Google is caught by the healthcheck, sends for the account
// fail with a reconnect link, and a disconnect revokes and destroys.
func TestOperations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const who = "ops-carol@example.com"
	resp := connect(ctx, t, who, "application/json")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("connect: %d", resp.StatusCode)
	}

	var acct struct {
		Status       string `json:"status"`
		LastError    string `json:"last_error"`
		ReconnectURL string `json:"reconnect_url"`
	}
	if code := adminJSON(ctx, t, "GET", "/accounts/"+who, &acct); code != 200 || acct.Status != "connected" {
		t.Fatalf("account = %d %+v", code, acct)
	}

	// The owner revokes access in their Google Account.
	if n := srv.Sandbox.RevokeAll(who); n == 0 {
		t.Fatal("nothing revoked")
	}
	// The scheduled healthcheck notices.
	hc, err := http.Post(srv.BaseURL+"/healthcheck", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	hc.Body.Close()
	if hc.StatusCode != 200 {
		t.Fatalf("healthcheck: %d", hc.StatusCode)
	}
	if code := adminJSON(ctx, t, "GET", "/accounts/"+who, &acct); code != 200 || acct.Status != "reauth_required" || acct.LastError == "" ||
		acct.ReconnectURL != srv.BaseURL+"/authorize?login_hint=ops-carol%40example.com" {
		t.Fatalf("after revocation: %d %+v", code, acct)
	}

	// A send for it fails at once, with the reconnect link, and is not retried.
	publish(ctx, t, `{"account":"`+who+`","to":["dave@example.org"],"subject":"x","text":"y","idempotency_key":"ops-after-revoke"}`)
	waitFor(ctx, t, "the failed result", func() bool {
		return contains(out.String(), `"idempotency_key":"ops-after-revoke"`, `"status":"failed"`, `"code":"reauth_required"`, `login_hint=ops-carol%40example.com`)
	})

	// The operator disconnects it with the CLI.
	cli := exec.CommandContext(ctx, "../../../scripts/admin.sh", "disconnect", who)
	cli.Env = append(os.Environ(), "ADMIN_URL="+srv.BaseURL+"/admin")
	outb, err := cli.CombinedOutput()
	if err != nil || !strings.Contains(string(outb), `"status": "disconnected"`) || !strings.Contains(string(outb), `"token_destroyed": true`) {
		t.Fatalf("admin.sh disconnect: %v\n%s", err, outb)
	}
	if code := adminJSON(ctx, t, "GET", "/accounts/"+who, &acct); code != 200 || acct.Status != "disconnected" {
		t.Fatalf("after disconnect: %+v", acct)
	}
	list := exec.CommandContext(ctx, "../../../scripts/admin.sh", "list")
	list.Env = cli.Env
	if outb, err := list.CombinedOutput(); err != nil || !strings.Contains(string(outb), who) {
		t.Fatalf("admin.sh list: %v\n%s", err, outb)
	}
}

// TestStatusTableScreenshot shows the operator's table in a real browser.
func TestStatusTableScreenshot(t *testing.T) {
	bctx := browsertest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, who := range []string{"table-erin@example.com", "table-frank@example.com"} {
		resp := connect(ctx, t, who, "")
		resp.Body.Close()
	}
	srv.Sandbox.RevokeAll("table-frank@example.com")
	if resp, err := http.Post(srv.BaseURL+"/healthcheck", "", nil); err == nil {
		resp.Body.Close()
	}
	// Navigate returns once the page has loaded; the table is server-rendered.
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.BaseURL+"/admin/accounts")); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(bctx, chromedp.Text("table"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"table-erin@example.com", "Gmail token valid", "table-frank@example.com", "Reconnect needed"} {
		if !strings.Contains(text, want) {
			t.Errorf("the table does not show %q:\n%s", want, text)
		}
	}
	browsertest.Screenshot(bctx, t, "admin-accounts")
}
