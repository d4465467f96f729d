package admin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/admin"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/googletest"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

type fixture struct {
	st     *googletest.Stack
	ledger *ledger.Local
	srv    *httptest.Server
	idp    *identities
}

// newFixture serves the admin handler with its URL (ADMIN_URL) set to the
// server's own, so the Host check is on, and with requireAuth verifying
// identity tokens against the sandbox's JWKS.
func newFixture(t *testing.T, requireAuth bool) *fixture {
	t.Helper()
	st := googletest.New(t)
	l, err := ledger.NewLocal(filepath.Join(t.TempDir(), "sends.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	idp := newIdentities(t)
	srv.Config.Handler = admin.New(admin.Options{
		Checker: &health.Checker{Tokens: st.Tokens, Accounts: st.Registry, OAuth: st.OAuth, ConnectURL: "https://relay.example.com/authorize"},
		Tokens:  st.Tokens, Revoker: st.OAuth, Ledger: l, Gmail: gmail.New(st.URL+"/", nil),
		URL: base, RequireAuth: requireAuth, Verifier: idp.verifier,
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return &fixture{st: st, ledger: l, srv: srv, idp: idp}
}

func (f *fixture) do(t *testing.T, method, path string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if h := hdr["Host"]; h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// strippedToken is what Cloud Run passes on in Authorization after
// checking a token itself: the claims with the signature cut off.
func strippedToken(email string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"email":"`+email+`","sub":"1"}`)) + ".SIGNATURE_REMOVED_BY_GOOGLE"
}

// TestRequiresIdentity: a bearer token is accepted only when it verifies as
// Google-signed (here: by the sandbox's key, fetched from its JWKS) for the
// admin URL, from Google's issuer, unexpired.
func TestRequiresIdentity(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	aud := f.srv.URL
	now := time.Now()
	good := func() map[string]any { return f.idp.claims("ops@example.com", aud, now) }
	with := func(k string, v any) map[string]any { c := good(); c[k] = v; return c }
	// A real ID token from the sandbox's token endpoint: signed by the same
	// key, but for the OAuth client, not for this function.
	clientToken, _ := f.st.Grant(t, "alice@example.com").Extra("id_token").(string)
	cases := []struct {
		name, auth string
		want       int
	}{
		{"none", "", http.StatusUnauthorized},
		{"not bearer", "Basic dXNlcjpwYXNz", http.StatusUnauthorized},
		{"not a JWT", "Bearer abc", http.StatusUnauthorized},
		{"JWT-shaped, unsigned", "Bearer x.eyJzdWIiOiJhdHRhY2tlciJ9.x", http.StatusUnauthorized},
		{"signature stripped", "Bearer " + strippedToken("ops@example.com"), http.StatusUnauthorized},
		{"signed by another key", "Bearer " + f.idp.signOther(t, good()), http.StatusUnauthorized},
		{"Google-signed for the OAuth client", "Bearer " + clientToken, http.StatusUnauthorized},
		{"another audience", "Bearer " + f.idp.sign(t, with("aud", "https://other.example")), http.StatusUnauthorized},
		{"expired", "Bearer " + f.idp.sign(t, with("exp", now.Add(-time.Minute).Unix())), http.StatusUnauthorized},
		{"not Google's issuer", "Bearer " + f.idp.sign(t, with("iss", "https://evil.example")), http.StatusUnauthorized},
		{"identity token", "Bearer " + f.idp.sign(t, good()), http.StatusOK},
	}
	for _, c := range cases {
		code, body := f.do(t, "GET", "/accounts", map[string]string{"Authorization": c.auth})
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
		}
		if c.want == http.StatusUnauthorized && !strings.Contains(string(body), "gcloud auth print-identity-token") {
			t.Errorf("%s: the refusal does not say how to authenticate: %s", c.name, body)
		}
	}
}

func TestListAndHTML(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.st.Connect(t, "alice@example.com")
	f.st.Connect(t, "bob@example.com")
	if _, _, err := f.st.Registry.SetStatus(context.Background(), "bob@example.com", registry.StatusReauthRequired, "Token has been expired or revoked.", time.Now()); err != nil {
		t.Fatal(err)
	}
	code, body := f.do(t, "GET", "/accounts", nil)
	var got struct{ Accounts []admin.AccountView }
	if code != 200 || json.Unmarshal(body, &got) != nil || len(got.Accounts) != 2 {
		t.Fatalf("GET /accounts = %d %s", code, body)
	}
	a, b := got.Accounts[0], got.Accounts[1]
	if a.Email != "alice@example.com" || a.Status != "connected" || a.ReconnectURL != "" || a.LastRefreshAt.IsZero() || len(a.Scopes) == 0 {
		t.Errorf("alice = %+v", a)
	}
	if b.Status != "reauth_required" || b.LastError == "" || b.ReconnectURL != "https://relay.example.com/authorize?login_hint=bob%40example.com" {
		t.Errorf("bob = %+v", b)
	}
	code, page := f.do(t, "GET", "/accounts", map[string]string{"Accept": "text/html,application/xhtml+xml"})
	html := string(page)
	if code != 200 || !strings.Contains(html, "Gmail token valid") || !strings.Contains(html, "Reconnect needed") ||
		!strings.Contains(html, `href="https://relay.example.com/authorize?login_hint=bob%40example.com"`) {
		t.Errorf("HTML table = %d\n%s", code, html)
	}
	if code, _ := f.do(t, "GET", "/accounts/carol@example.com", nil); code != http.StatusNotFound {
		t.Errorf("unknown account: %d, want 404", code)
	}
	if code, body := f.do(t, "GET", "/accounts/"+url.PathEscape("Alice@Example.com"), nil); code != 200 || !strings.Contains(string(body), "alice@example.com") {
		t.Errorf("GET one account = %d %s", code, body)
	}
}

func TestConnectionTest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.st.Connect(t, "alice@example.com")

	code, body := f.do(t, "POST", "/accounts/alice@example.com/test?send=1", nil)
	var res struct {
		Outcome     string
		TestMessage *admin.SentView `json:"test_message"`
	}
	if code != 200 || json.Unmarshal(body, &res) != nil || res.Outcome != "valid" || res.TestMessage == nil || res.TestMessage.GmailMessageID == "" {
		t.Fatalf("test = %d %s", code, body)
	}
	files, _ := filepath.Glob(filepath.Join(f.st.Outbox, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("%d messages in the outbox, want the one test message", len(files))
	}
	eml, _ := os.ReadFile(files[0])
	if !strings.Contains(string(eml), "To: <alice@example.com>") || !strings.Contains(string(eml), "gmail-relay connection test") {
		t.Errorf("test message:\n%s", eml)
	}

	// Revoked at Google: the test says so and records it.
	f.st.Sandbox.RevokeAll("alice@example.com")
	code, body = f.do(t, "POST", "/accounts/alice@example.com/test", nil)
	if code != http.StatusConflict || !strings.Contains(string(body), `"reauth_required"`) || !strings.Contains(string(body), "login_hint=alice%40example.com") {
		t.Fatalf("test after revoke = %d %s", code, body)
	}
	a, _ := f.st.Registry.Get(context.Background(), "alice@example.com")
	if a.Status != registry.StatusReauthRequired {
		t.Errorf("status = %s", a.Status)
	}
}

func TestDisconnect(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	tok := f.st.Connect(t, "alice@example.com")

	code, body := f.do(t, "DELETE", "/accounts/alice@example.com", nil)
	if code != 200 || !strings.Contains(string(body), `"revoked_at_google": true`) || !strings.Contains(string(body), `"token_destroyed": true`) {
		t.Fatalf("disconnect = %d %s", code, body)
	}
	if _, err := f.st.OAuth.Refresh(context.Background(), tok.RefreshToken); err == nil {
		t.Error("the grant still works at Google after disconnect")
	}
	if _, err := f.st.Tokens.Load(context.Background(), "alice@example.com"); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Errorf("token after disconnect: %v, want ErrNotFound", err)
	}
	a, _ := f.st.Registry.Get(context.Background(), "alice@example.com")
	if a.Status != registry.StatusDisconnected {
		t.Errorf("status = %s", a.Status)
	}
	// Idempotent.
	code, body = f.do(t, "DELETE", "/accounts/alice@example.com", nil)
	if code != 200 || !strings.Contains(string(body), `"status": "disconnected"`) || !strings.Contains(string(body), `"token_destroyed": false`) {
		t.Errorf("second disconnect = %d %s", code, body)
	}
	if code, _ := f.do(t, "DELETE", "/accounts/nobody@example.com", nil); code != http.StatusNotFound {
		t.Errorf("unknown disconnect = %d, want 404", code)
	}
}

func TestMessageStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	ctx := context.Background()
	key := "order/42 invoice"
	// The same key sent by alice in two apps and by bob: three records.
	for _, c := range []struct {
		scope   ledger.Scope
		gmailID string
	}{
		{ledger.Scope{Account: "alice@example.com", Key: key}, "abc123"},
		{ledger.Scope{App: "crm", Account: "alice@example.com", Key: key}, "crm456"},
		{ledger.Scope{Account: "bob@example.com", Key: key}, "bob789"},
	} {
		if _, _, err := f.ledger.Claim(ctx, c.scope.ID(), ledger.ClaimRequest{PubSubMessageID: "m1", Lease: time.Minute, Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := f.ledger.Finish(ctx, c.scope.ID(), ledger.Finish{State: ledger.StateSent, GmailMessageID: c.gmailID, GmailThreadID: c.gmailID}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ query, want string }{
		{"?account=alice@example.com", "abc123"},
		{"?account=Alice@Example.com&app=default", "abc123"},
		{"?account=alice@example.com&app=crm", "crm456"},
		{"?account=bob@example.com", "bob789"},
	} {
		code, body := f.do(t, "GET", "/messages/"+url.PathEscape(key)+c.query, nil)
		if code != 200 || !strings.Contains(string(body), `"state": "sent"`) || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: status = %d %s; want sent, %s", c.query, code, body, c.want)
		}
	}
	if code, _ := f.do(t, "GET", "/messages/nope?account=alice@example.com", nil); code != http.StatusNotFound {
		t.Errorf("unknown key = %d", code)
	}
	if code, _ := f.do(t, "GET", "/messages/"+url.PathEscape(key)+"?account=alice@example.com&app=billing", nil); code != http.StatusNotFound {
		t.Errorf("key in another app = %d, want 404", code)
	}
	code, body := f.do(t, "GET", "/messages/"+url.PathEscape(key), nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "?account=") {
		t.Errorf("without account = %d %s; want 400 with the fix", code, body)
	}
}

// failingLedger answers like a Firestore ledger that cannot be reached.
type failingLedger struct{}

func (failingLedger) Get(context.Context, string) (*ledger.Record, error) {
	return nil, fmt.Errorf("firestore: %w", ledger.ErrUnavailable)
}

// wantErrorShape checks that body is {"error":{"code","message","fix"}} and
// nothing else, with code and a message and fix to show.
func wantErrorShape(t *testing.T, body []byte, code string) {
	t.Helper()
	var v struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Fix     string `json:"fix"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Error == nil {
		t.Fatalf("body is not the error shape (%v):\n%s", err, body)
	}
	if v.Error.Code != code || v.Error.Message == "" || v.Error.Fix == "" {
		t.Errorf("error = %+v, want code %q with a message and a fix", *v.Error, code)
	}
}

func TestErrorShape(t *testing.T) {
	t.Parallel()
	open := newFixture(t, false)
	open.st.Connect(t, "alice@example.com")
	guarded := newFixture(t, true)
	broken := newFixture(t, false)
	broken.srv = httptest.NewServer(admin.New(admin.Options{
		Checker: &health.Checker{Tokens: broken.st.Tokens, Accounts: broken.st.Registry, OAuth: broken.st.OAuth},
		Tokens:  broken.st.Tokens, Revoker: broken.st.OAuth, Ledger: failingLedger{}, Gmail: gmail.New(broken.st.URL+"/", nil),
	}))
	t.Cleanup(broken.srv.Close)
	cases := []struct {
		name         string
		f            *fixture
		method, path string
		hdr          map[string]string
		status       int
		code         string
	}{
		{"no identity", guarded, "GET", "/accounts", nil, http.StatusUnauthorized, "unauthenticated"},
		{"identity not a JWT", guarded, "GET", "/accounts", map[string]string{"Authorization": "Bearer abc"}, http.StatusUnauthorized, "unauthenticated"},
		{"identity unsigned", guarded, "GET", "/accounts", map[string]string{"Authorization": "Bearer x.eyJzdWIiOiJhdHRhY2tlciJ9.x"}, http.StatusUnauthorized, "unauthenticated"},
		{"cross-site form post", open, "POST", "/accounts/alice@example.com/test", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden, "cross_origin"},
		{"cross-site fetch", open, "DELETE", "/accounts/alice@example.com", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, "cross_origin"},
		{"another host", open, "GET", "/accounts", map[string]string{"Host": "evil.example"}, http.StatusMisdirectedRequest, "wrong_host"},
		{"a host that only looks like Cloud Run's", open, "GET", "/accounts", map[string]string{"Host": "x.run.app.evil.example"}, http.StatusMisdirectedRequest, "wrong_host"},
		{"test message to a non-address", open, "POST", "/accounts/alice@example.com/test?send=1&to=" + url.QueryEscape("Bob <bob@example.org>"), nil, http.StatusBadRequest, "invalid_request"},
		{"disconnect form unconfirmed", open, "POST", "/accounts/alice@example.com/disconnect", nil, http.StatusBadRequest, "confirmation_required"},
		{"get unknown account", open, "GET", "/accounts/carol@example.com", nil, http.StatusNotFound, "unknown_account"},
		{"test unknown account", open, "POST", "/accounts/carol@example.com/test", nil, http.StatusNotFound, "unknown_account"},
		{"disconnect unknown account", open, "DELETE", "/accounts/carol@example.com", nil, http.StatusNotFound, "unknown_account"},
		{"malformed key", open, "GET", "/messages/%25", nil, http.StatusBadRequest, "invalid_request"},
		{"unknown key", open, "GET", "/messages/nope?account=alice@example.com", nil, http.StatusNotFound, "not_found"},
		{"message without account", open, "GET", "/messages/order-42", nil, http.StatusBadRequest, "invalid_request"},
		{"ledger unavailable", broken, "GET", "/messages/order-42?account=alice@example.com", nil, http.StatusServiceUnavailable, "unavailable"},
		{"unknown path", open, "GET", "/nope", nil, http.StatusNotFound, "not_found"},
		{"empty address", open, "GET", "/accounts/", nil, http.StatusNotFound, "not_found"},
		{"wrong method", open, "PUT", "/accounts/alice@example.com", nil, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"JSON asked for explicitly", open, "GET", "/accounts/carol@example.com", map[string]string{"Accept": "application/json"}, http.StatusNotFound, "unknown_account"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			status, body := c.f.do(t, c.method, c.path, c.hdr)
			if status != c.status {
				t.Errorf("%s %s = %d, want %d", c.method, c.path, status, c.status)
			}
			wantErrorShape(t, body, c.code)
		})
	}
}

// TestCloudRunHost: the function's run.app address is accepted beside
// ADMIN_URL's, since a Cloud Run function answers at both.
func TestCloudRunHost(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	for _, host := range []string{"gmail-relay-admin-abc123-uc.a.run.app", "gmail-relay-admin-abc123-uc.a.run.app:443"} {
		if status, body := f.do(t, "GET", "/accounts", map[string]string{"Host": host, "Accept": "application/json"}); status != http.StatusOK {
			t.Errorf("Host %s: GET /accounts = %d, want 200: %s", host, status, body)
		}
	}
}

// TestErrorForBrowsers: a browser gets the same error as readable text, not
// JSON it would show raw.
func TestErrorForBrowsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	status, body := f.do(t, "GET", "/accounts/carol@example.com", map[string]string{"Accept": "text/html,application/xhtml+xml"})
	if status != http.StatusNotFound || json.Valid(body) || !strings.Contains(string(body), "Send its owner the connect link.") ||
		!strings.Contains(string(body), "unknown_account") {
		t.Errorf("browser answer = %d\n%s", status, body)
	}
}

// TestWrongMethodSaysAllow: the 405 keeps ServeMux's Allow header.
func TestWrongMethodSaysAllow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	req, _ := http.NewRequest(http.MethodPut, f.srv.URL+"/accounts/alice@example.com", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "DELETE") {
		t.Errorf("Allow = %q, want GET and DELETE", allow)
	}
}
