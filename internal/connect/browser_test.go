package connect_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// TestBrowserConnect walks the flow in headless Chromium, as a person does:
// the connect page, its button, the sandbox's consent form, and confirm's
// page. It saves full-page screenshots of the connect page, the success
// page and an error page as test artifacts.
func TestBrowserConnect(t *testing.T) {
	testenv.Integration(t)
	chromium := testenv.Chromium(t)
	t.Parallel()

	dir := os.Getenv("TEST_ARTIFACTS_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, setup{})

	// A guard against a wedged browser, not a timed assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 800),
	)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(ctx)
	defer cancelTab()

	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.Join(strings.Fields(s), " ")
	}
	wantIn := func(what, got string, phrases ...string) {
		t.Helper()
		for _, p := range phrases {
			if !strings.Contains(got, p) {
				t.Errorf("%s lacks %q; it shows: %s", what, p, got)
			}
		}
	}

	// connect walks connect page → button → consent → confirm for email.
	connect := func(email string, untick ...string) {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.Navigate(h.base+"/authorize?login_hint="+email),
			chromedp.WaitVisible(chromedp.CSS("main form button")),
		)
		if err != nil {
			t.Fatalf("connect page: %v", err)
		}
		wantIn("the connect page", text("main"), "Connect your Gmail account", "You are connecting "+email, "Send email on your behalf")
		if email == "alice@example.com" {
			shot("connect-page.png")
		}
		err = chromedp.Do(ctx,
			chromedp.Click(chromedp.Search(`//button[normalize-space()="Connect your Gmail account"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#consent input[name="email"]`)),
			chromedp.Clear(chromedp.CSS(`#consent input[name="email"]`)),
			chromedp.SendKeys(chromedp.CSS(`#consent input[name="email"]`), email),
		)
		if err != nil {
			t.Fatalf("consent page: %v", err)
		}
		for _, scope := range untick {
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#consent input[name="grant"][value="`+scope+`"]`))); err != nil {
				t.Fatalf("untick %s: %v", scope, err)
			}
		}
		err = chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`#consent button[value="allow"]`)),
			chromedp.WaitVisible(chromedp.CSS("main h1 .tag")),
		)
		if err != nil {
			t.Fatalf("confirm page: %v", err)
		}
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(loc, h.redirect+"?") {
			t.Errorf("the browser ended on %s, want confirm", strings.SplitN(loc, "?", 2)[0])
		}
	}

	connect("alice@example.com")
	wantIn("the success page", text("main"), "Connected alice@example.com", "Gmail token valid", "cannot read your mail")
	shot("connect-success.png")
	h.wantOneSecret(t, "alice@example.com")
	h.wantRegistered(t, "alice@example.com", grantedScopes)

	connect("bob@example.com", "https://www.googleapis.com/auth/gmail.send")
	wantIn("the error page", text("main"), "Sending permission was not granted", "Not connected", "Send email on your behalf", "Start again", "scope_missing")
	shot("connect-error-scope-missing.png")
	h.wantRevoked(t, "bob@example.com")
	if n := len(h.secrets(t)); n != 1 {
		t.Errorf("%d secrets, want only alice's", n)
	}
}
