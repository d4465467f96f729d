package devserver_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestConnectScript: scripts/connect.sh, which README's quickstart uses to
// connect a mailbox without a browser, connects one through the sandbox.
func TestConnectScript(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed (.ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const who = "script-gina@example.com"
	cmd := exec.CommandContext(ctx, "../../../scripts/connect.sh", who)
	cmd.Env = append(os.Environ(), "RELAY_URL="+srv.BaseURL)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"status": "connected"`) || !strings.Contains(string(out), `"account": "`+who+`"`) {
		t.Fatalf("connect.sh: %v\n%s", err, out)
	}
	var acct struct {
		Status string `json:"status"`
	}
	if code := adminJSON(ctx, t, "GET", "/accounts/"+who, &acct); code != 200 || acct.Status != "connected" {
		t.Fatalf("after connect.sh: %d %+v", code, acct)
	}
}
