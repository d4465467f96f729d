package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gmailrelay/gmailrelay/internal/dev/devserver"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/testing/browsertest"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// TestBrowserAccountActions presses each button of the accounts page in
// Chromium against the dev stack (make dev's server, with the sandbox as
// Google), and checks what each did: Test refreshes (valid), Send test
// message puts a message to the entered address in the outbox, Today shows
// the day's use and the limit, and Set limit changes it, Disconnect
// needs its box ticked and then leaves the account disconnected, and the
// reconnect link is there to copy. Screenshots go to $TEST_ARTIFACTS_DIR.
func TestBrowserAccountActions(t *testing.T) {
	bctx := browsertest.New(t)
	srv := startDev(t)
	const alice = "page-alice@example.com"
	const rcpt = "ops@example.org"
	connectMailbox(t, srv, alice)

	row := `tr[data-email="` + alice + `"] `
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.Join(strings.Fields(s), " ")
	}
	press := func(button string) {
		t.Helper()
		err := chromedp.Do(bctx,
			chromedp.Click(chromedp.CSS(row+`button[value="`+button+`"]`)),
			chromedp.WaitVisible(chromedp.CSS("#outcome")),
		)
		if err != nil {
			t.Fatalf("pressing %s: %v", button, err)
		}
	}
	accounts := func() {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Navigate(srv.BaseURL+"/admin/accounts"), chromedp.WaitVisible(chromedp.CSS(row+`button[value="test"]`))); err != nil {
			t.Fatalf("accounts page: %v", err)
		}
	}

	accounts()
	browsertest.Screenshot(bctx, t, "admin-actions-page")
	link, err := chromedp.Run(bctx, chromedp.Value(chromedp.CSS(row+`input.link`)))
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.BaseURL + "/authorize?login_hint=page-alice%40example.com"; link != want {
		t.Errorf("reconnect link %q, want %q", link, want)
	}

	// Test.
	press("test")
	if got := text("#outcome"); got != "valid" {
		t.Errorf("test outcome %q, want valid; page: %s", got, text("main"))
	}
	browsertest.Screenshot(bctx, t, "admin-actions-test")

	// Send test message, to an address typed into the form.
	accounts()
	if err := chromedp.Do(bctx,
		chromedp.Clear(chromedp.CSS(row+`input[name="to"]`)),
		chromedp.SendKeys(chromedp.CSS(row+`input[name="to"]`), rcpt),
	); err != nil {
		t.Fatal(err)
	}
	press("send")
	if got := text("main"); !strings.Contains(got, "Gmail accepted the test message") {
		t.Errorf("send test page: %s", got)
	}
	browsertest.Screenshot(bctx, t, "admin-actions-send-test")
	if msgs := outboxTo(t, srv.OutboxDir, rcpt); len(msgs) != 1 || msgs[0].Header.Get("Subject") != "gmail-relay connection test" {
		t.Errorf("%d test messages to %s in the outbox, want 1", len(msgs), rcpt)
	}

	// Today: the day's use and the limit of the mailbox's kind, which the
	// connect flow learnt from Google's hd (the sandbox's example.com is
	// Workspace, gmail.com consumer); Set limit replaces it.
	const carol = "page-carol@gmail.com"
	connectMailbox(t, srv, carol)
	accounts()
	carolRow := `tr[data-email="` + carol + `"] `
	if got := text(row + "td.today"); got != "0 / 2000" {
		t.Errorf("Today of the Workspace mailbox %q, want 0 / 2000", got)
	}
	if got := text(carolRow + "td.today"); got != "0 / 500" {
		t.Errorf("Today of the consumer mailbox %q, want 0 / 500", got)
	}
	// The value attribute is the stored limit, so the selector matches
	// only once the page has come back from the form.
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS(carolRow+`input[name="daily_limit"]`), "2"),
		chromedp.Click(chromedp.CSS(carolRow+`button[value="daily-limit"]`)),
		chromedp.WaitVisible(chromedp.CSS(carolRow+`input[name="daily_limit"][value="2"]`)),
	); err != nil {
		t.Fatalf("setting the daily limit: %v", err)
	}
	if got := text(carolRow + "td.today"); got != "0 / 2" {
		t.Errorf("Today after setting the limit to 2: %q, want 0 / 2", got)
	}
	browsertest.Screenshot(bctx, t, "admin-actions-daily-limit")

	// Disconnect: without the box ticked the browser does not submit (the
	// server would refuse too, see TestErrorShape); ticked, it goes ahead.
	accounts()
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(row+`button[value="disconnect"]`))); err != nil {
		t.Fatal(err)
	}
	if got := accountStatus(t, srv, alice); got != "connected" {
		t.Fatalf("status %q after Disconnect without confirmation, want connected", got)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(row+`input[name="confirm"]`))); err != nil {
		t.Fatal(err)
	}
	press("disconnect")
	if got := text("#outcome"); got != "disconnected" {
		t.Errorf("disconnect outcome %q; page: %s", got, text("main"))
	}
	browsertest.Screenshot(bctx, t, "admin-actions-disconnect")
	if got := accountStatus(t, srv, alice); got != "disconnected" {
		t.Errorf("status %q after Disconnect, want disconnected", got)
	}
	if a, ok := sandboxGrant(t, srv, alice); ok && a.RefreshTokens > 0 {
		t.Errorf("the grant still holds %d refresh tokens at Google", a.RefreshTokens)
	}

	// The page's own link back, and the row without a Disconnect button.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("main a.button")), chromedp.WaitVisible(chromedp.CSS(row+`button[value="test"]`))); err != nil {
		t.Fatal(err)
	}
	if got := text(row + "td:nth-child(2)"); !strings.Contains(got, "Disconnected") {
		t.Errorf("status cell %q, want Disconnected", got)
	}
	browsertest.Screenshot(bctx, t, "admin-actions-after")
}

// startDev runs make dev's server in-process on free ports for this test.
func startDev(t *testing.T) *devserver.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *devserver.Server, 1)
	done := make(chan error, 1)
	var out testenv.SyncBuffer
	go func() {
		done <- devserver.Run(ctx, devserver.Options{Addr: "localhost:0", PubSubAddr: "localhost:0", StateDir: t.TempDir(),
			Out: &out, Logs: io.Discard, Ready: func(s *devserver.Server) { ready <- s }})
	}()
	select {
	case s := <-ready:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dev server: %v", err)
			}
		})
		return s
	case err := <-done:
		cancel()
		t.Fatalf("dev server did not start: %v\n%s", err, out.String())
	}
	return nil
}

// connectMailbox runs the connect flow for email with a plain HTTP client.
func connectMailbox(t *testing.T, srv *devserver.Server, email string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(srv.BaseURL + "/authorize?start=1&login_hint=" + email)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := sandbox.Consent(context.Background(), c, resp.Header.Get("Location"), email)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, back.String(), nil)
	req.Header.Set("Accept", "application/json")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("connecting %s: %d %s", email, resp.StatusCode, b)
	}
}

func accountStatus(t *testing.T, srv *devserver.Server, email string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.BaseURL+"/admin/accounts/"+email, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Status
}

func sandboxGrant(t *testing.T, srv *devserver.Server, email string) (sandbox.Account, bool) {
	t.Helper()
	resp, err := http.Get(srv.BaseURL + "/sandbox/accounts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all []sandbox.Account
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.Email == email {
			return a, true
		}
	}
	return sandbox.Account{}, false
}

// outboxTo returns the outbox's messages addressed to rcpt.
func outboxTo(t *testing.T, dir, rcpt string) []*mail.Message {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	var got []*mail.Message
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(fh)
		if err == nil && strings.Contains(m.Header.Get("To"), rcpt) {
			got = append(got, m)
		}
		fh.Close()
	}
	return got
}

// TestScriptList: scripts/admin.sh list prints a table with one aligned row
// per account, and --json the API's JSON.
func TestScriptList(t *testing.T) {
	testenv.Integration(t)
	srv := startDev(t)
	connectMailbox(t, srv, "list-alice@example.com")
	connectMailbox(t, srv, "list-bob@example.com")
	srv.Sandbox.RevokeAll("list-bob@example.com")
	req, _ := http.NewRequest(http.MethodPost, srv.BaseURL+"/admin/accounts/list-bob@example.com/test", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("../../scripts/admin.sh", args...)
		cmd.Env = append(os.Environ(), "ADMIN_URL="+srv.BaseURL+"/admin")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("admin.sh %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	table := strings.Split(strings.TrimSpace(run("list")), "\n")
	if len(table) != 3 || !strings.HasPrefix(table[0], "EMAIL") || !strings.Contains(table[0], "LAST REFRESH") || !strings.Contains(table[0], "LAST ERROR") {
		t.Fatalf("table:\n%s", strings.Join(table, "\n"))
	}
	col := strings.Index(table[0], "STATUS")
	for _, row := range table[1:] {
		if len(row) < col || row[col-1] != ' ' || row[col] == ' ' {
			t.Errorf("row not aligned under STATUS: %q", row)
		}
	}
	if !strings.Contains(table[1], "list-alice@example.com") || !strings.Contains(table[1], "connected") ||
		!strings.Contains(table[2], "reauth_required") || !strings.Contains(table[2], "expired or revoked") {
		t.Errorf("table rows:\n%s", strings.Join(table, "\n"))
	}
	var got struct {
		Accounts []struct{ Email, Status string }
	}
	if err := json.Unmarshal([]byte(run("list", "--json")), &got); err != nil || len(got.Accounts) != 2 {
		t.Errorf("list --json: %v %+v", err, got)
	}

	// limit sets the daily limit, and list shows it beside the day's use.
	if out := run("limit", "list-alice@example.com", "07"); !strings.Contains(out, `"daily_limit": 7`) {
		t.Errorf("limit answered:\n%s", out)
	}
	table = strings.Split(strings.TrimSpace(run("list")), "\n")
	if len(table) != 3 || !strings.Contains(table[0], "TODAY") || !strings.Contains(table[1], " 0 / 7 ") || !strings.Contains(table[2], " 0 / 2000 ") {
		t.Errorf("table after limit:\n%s", strings.Join(table, "\n"))
	}
	if out := run("limit", "list-alice@example.com", "--default"); strings.Contains(out, `"daily_limit"`) || !strings.Contains(out, `"messages": 2000`) {
		t.Errorf("limit --default answered:\n%s", out)
	}
	cmd := exec.Command("../../scripts/admin.sh", "limit", "list-alice@example.com", "lots")
	cmd.Env = append(os.Environ(), "ADMIN_URL="+srv.BaseURL+"/admin")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "whole number") {
		t.Errorf("limit lots: %v\n%s; want a refusal that says what N must be", err, out)
	}
}
