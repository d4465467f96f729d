package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/admin"
	"github.com/gmailrelay/gmailrelay/internal/delegation"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/googletest"
)

// TestDelegatedAccount: admin lists a delegated account as such, tests it
// by minting a token (and sending with it), and disconnects it saying that
// withdrawing the delegation is the Workspace admin's step.
func TestDelegatedAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const sa, zoe = "delegate@relay-project.iam.gserviceaccount.com", "zoe@example.net"
	st := googletest.New(t)
	if err := st.Sandbox.SetDelegation(sandbox.Delegation{Domain: "example.net", ClientID: sandbox.ServiceAccountClientID(sa),
		Scopes: []string{sandbox.ScopeGmailSend}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	d, err := delegation.New(ctx, delegation.Config{ServiceAccount: sa, Domains: []string{"example.net"}, Endpoint: st.URL})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.NewLocal(filepath.Join(t.TempDir(), "sends.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.New(admin.Options{
		Checker: &health.Checker{Tokens: st.Tokens, Accounts: st.Registry, OAuth: st.OAuth, Delegation: d},
		Tokens:  st.Tokens, Revoker: st.OAuth, Ledger: l, Gmail: gmail.New(st.URL+"/", nil),
	}))
	t.Cleanup(srv.Close)
	f := &fixture{st: st, ledger: l, srv: srv}
	if err := st.Registry.Create(ctx, &registry.Account{Email: zoe, Status: registry.StatusConnected, Kind: registry.KindDelegated, UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st.Connect(t, "alice@example.com")

	code, body := f.do(t, http.MethodGet, "/accounts", nil)
	var list struct{ Accounts []admin.AccountView }
	if err := json.Unmarshal(body, &list); code != 200 || err != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	kinds := map[string]string{}
	for _, a := range list.Accounts {
		kinds[a.Email] = a.Kind
	}
	if kinds[zoe] != "delegated" || kinds["alice@example.com"] != "oauth" {
		t.Fatalf("kinds = %v, want zoe delegated and alice oauth", kinds)
	}
	if code, body := f.do(t, http.MethodGet, "/accounts", map[string]string{"Accept": "text/plain"}); code != 200 ||
		!strings.Contains(string(body), "KIND") || !strings.Contains(string(body), "delegated") {
		t.Fatalf("table: %d %s", code, body)
	}

	code, body = f.do(t, http.MethodPost, "/accounts/"+zoe+"/test?send=1", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	var tr struct {
		Outcome     string `json:"outcome"`
		TestMessage struct {
			GmailMessageID string `json:"gmail_message_id"`
		} `json:"test_message"`
	}
	if err := json.Unmarshal(body, &tr); code != 200 || err != nil || tr.Outcome != "valid" || tr.TestMessage.GmailMessageID == "" {
		t.Fatalf("test: %d %s, want valid with a test message", code, body)
	}
	if st.Sandbox.Stats().SignJWTCalls != 1 {
		t.Fatalf("signJwt calls = %d, want 1", st.Sandbox.Stats().SignJWTCalls)
	}

	code, body = f.do(t, http.MethodDelete, "/accounts/"+zoe, nil)
	var dis admin.Disconnected
	if err := json.Unmarshal(body, &dis); code != 200 || err != nil || dis.Status != registry.StatusDisconnected || dis.RevokedAtGoogle ||
		!strings.Contains(dis.Note, "Workspace admin's step") {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	if a, _ := st.Registry.Get(ctx, zoe); a.Status != registry.StatusDisconnected || !a.Delegated() {
		t.Fatalf("account after disconnect = %+v", a)
	}
}
