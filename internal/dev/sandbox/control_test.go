package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

func (e *env) control(method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestControlSurface(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.connect("alice@example.com")
	svc := e.gmail(tok)
	send := func() error {
		_, err := sendRaw(svc, message("b@example.org", "s", "b"))
		return err
	}

	// Faults.
	if code, body := e.control("POST", "/sandbox/faults", `{"fault":"ProjectQuota403","count":1}`); code != 200 {
		t.Fatalf("faults: %d %s", code, body)
	}
	if g := asGoogleErr(t, send()); g.Code != 403 || !contains(reasons(g), "dailyLimitExceeded") {
		t.Errorf("injected over HTTP: %v", g)
	}
	if code, _ := e.control("POST", "/sandbox/faults", `{"fault":"ServerError500","count":-1}`); code != 200 {
		t.Fatal("forever fault refused")
	}
	if code, _ := e.control("DELETE", "/sandbox/faults", ""); code != 200 {
		t.Fatal("clear refused")
	}
	if err := send(); err != nil {
		t.Errorf("after DELETE /sandbox/faults: %v", err)
	}

	// Rate.
	if code, _ := e.control("POST", "/sandbox/rate", `{"per_second":0.001,"burst":1}`); code != 200 {
		t.Fatal("rate refused")
	}
	_ = send()
	if g := asGoogleErr(t, send()); g.Code != 429 {
		t.Errorf("over the rate: %v", g)
	}

	// Stats, then reset clears knobs and counters.
	code, body := e.control("GET", "/sandbox/stats", "")
	var st sandbox.Stats
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.SendsAccepted != 2 || st.SendsRateLimited != 1 || st.SendsFaulted != 1 {
		t.Errorf("stats: %d %s", code, body)
	}
	if code, _ := e.control("POST", "/sandbox/reset", ""); code != 200 {
		t.Fatal("reset refused")
	}
	if err := send(); err != nil {
		t.Errorf("after reset: %v", err)
	}
	if s := e.sb.Stats(); s.SendsAccepted != 1 || s.TokenExchanges != 0 {
		t.Errorf("counters after reset: %+v", s)
	}

	// Outbox listing and one message.
	code, body = e.control("GET", "/sandbox/outbox", "")
	var out []sandbox.OutboxMessage
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil || len(out) != 3 {
		t.Fatalf("outbox: %d %s", code, body)
	}
	code, body = e.control("GET", "/sandbox/outbox/"+out[2].ID, "")
	if code != 200 || body != string(readFile(t, out[2].Path)) {
		t.Errorf("message: %d %q", code, body)
	}
	if code, _ := e.control("GET", "/sandbox/outbox/0000000000000000", ""); code != 404 {
		t.Errorf("unknown message: %d", code)
	}

	// Accounts.
	code, body = e.control("GET", "/sandbox/accounts", "")
	var accts []sandbox.Account
	if code != 200 || json.Unmarshal([]byte(body), &accts) != nil || len(accts) != 1 || accts[0].Email != "alice@example.com" || accts[0].RefreshTokens != 1 {
		t.Errorf("accounts: %d %s", code, body)
	}

	// Expire, then revoke by email.
	if code, body := e.control("POST", "/sandbox/expire", `{"email":"alice@example.com"}`); code != 200 || !strings.Contains(body, `"expired":1`) {
		t.Errorf("expire: %d %s", code, body)
	}
	if g := asGoogleErr(t, send()); g.Code != 401 {
		t.Errorf("after expire: %v", g)
	}
	if code, body := e.control("POST", "/sandbox/revoke", `{"email":"alice@example.com"}`); code != 200 || !strings.Contains(body, `"revoked":1`) {
		t.Errorf("revoke: %d %s", code, body)
	}
	_, err := e.config().TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if re := asRetrieveErr(t, err); re.ErrorCode != "invalid_grant" {
		t.Errorf("refresh after revoke over HTTP: %v", err)
	}

	// Deny and verified knobs.
	if code, _ := e.control("POST", "/sandbox/deny", `{"email":"eve@example.com","error":"admin_policy_enforced"}`); code != 200 {
		t.Fatal("deny refused")
	}
	if loc := e.authorize(e.config(), "eve@example.com", "s", nil); loc.Query().Get("error") != "admin_policy_enforced" {
		t.Errorf("deny over HTTP: %s", loc)
	}
	if code, _ := e.control("POST", "/sandbox/verified", `{"email":"frank@example.com","verified":false}`); code != 200 {
		t.Fatal("verified refused")
	}
	if code, _ := e.control("POST", "/sandbox/rotate", `{"enabled":true}`); code != 200 {
		t.Fatal("rotate refused")
	}
	if code, _ := e.control("POST", "/sandbox/latency", `{"latency":"1ms"}`); code != 200 {
		t.Fatal("latency refused")
	}
}

func TestControlSurfaceRejectsBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct{ method, path, body string }{
		{"POST", "/sandbox/faults", `{"fault":"Teapot418"}`},
		{"POST", "/sandbox/faults", `{"fault":"RateLimit429","cuont":2}`},
		{"POST", "/sandbox/faults", `not json`},
		{"POST", "/sandbox/latency", `{"latency":"soon"}`},
		{"POST", "/sandbox/latency", `{"latency":"-1s"}`},
		{"POST", "/sandbox/rate", `{"per_second":-1}`},
		{"POST", "/sandbox/fault-rates", `{"seed":1,"rates":{"ServerError500":2}}`},
		{"POST", "/sandbox/revoke", `{}`},
		{"POST", "/sandbox/revoke", `{"email":"a@example.com","refresh_token":"1//x"}`},
		{"POST", "/sandbox/expire", `{}`},
		{"POST", "/sandbox/deny", `{"email":"a@example.com","error":"has \"quotes\""}`},
		{"POST", "/sandbox/verified", `{"email":"a@example.com"}`},
		{"POST", "/sandbox/rotate", `{}`},
	}
	for _, tc := range cases {
		if code, body := e.control(tc.method, tc.path, tc.body); code != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s %s: %d %s", tc.method, tc.path, tc.body, code, body)
		}
	}
	if code, _ := e.control("POST", "/sandbox/revoke", `{"refresh_token":"1//0unknown"}`); code != 404 {
		t.Errorf("revoking an unknown token: %d", code)
	}
	if code, _ := e.control("GET", "/sandbox/nothing-here", ""); code != 404 {
		t.Errorf("unknown control path: %d", code)
	}
}

func TestIndexPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if code, body := e.control("GET", "/sandbox/", ""); code != 200 || !strings.Contains(body, "gmail-relay sandbox") || !strings.Contains(body, "Empty: no message accepted yet.") {
		t.Errorf("empty index: %d %s", code, body)
	}
	tok := e.connect("alice@example.com")
	got, err := sendRaw(e.gmail(tok), message("b@example.org", "<script>alert(1)</script>", "b"))
	if err != nil {
		t.Fatal(err)
	}
	_ = e.sb.InjectGmailErrors("bob@example.com", sandbox.HangAfterBody, 3)
	code, body := e.control("GET", "/sandbox/", "")
	for _, want := range []string{got.Id, "alice@example.com", testClientID, "HangAfterBody for bob@example.com (3 more)"} {
		if !strings.Contains(body, want) {
			t.Errorf("index (%d) lacks %q", code, want)
		}
	}
	if strings.Contains(body, testClientSecret) || strings.Contains(body, tok.AccessToken) || strings.Contains(body, tok.RefreshToken) {
		t.Error("the index page shows a secret or a token")
	}
}

// Paths lets the dev server mount the sandbox beside the application.
func TestPathsShareAMux(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mux := http.NewServeMux()
	for _, p := range e.sb.Paths() {
		mux.Handle(p, e.sb)
	}
	for _, p := range []string{"/authorize", "/confirm", "/sender", "/admin/", "/healthcheck"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	}
	shared := httptest.NewServer(mux)
	defer shared.Close()

	for _, p := range []string{"/authorize", "/confirm", "/sender", "/admin/accounts", "/healthcheck"} {
		resp, err := http.Get(shared.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "app" {
			t.Errorf("%s reached %q, not the app", p, b)
		}
	}
	// The whole flow works through the shared mux.
	cfg := e.config()
	cfg.Endpoint.AuthURL = shared.URL + sandbox.AuthPath
	cfg.Endpoint.TokenURL = shared.URL + sandbox.TokenPath
	loc, err := sandbox.Consent(context.Background(), shared.Client(), cfg.AuthCodeURL("s"), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	ts := e.ts
	e.ts = shared
	defer func() { e.ts = ts }()
	for _, chunk := range []int{0, 256 * 1024} {
		raw := message("b@example.org", "s", strings.Repeat("y", 300*1024))
		if _, err := sendVia(e, tok, raw, chunk); err != nil {
			t.Errorf("send through the shared mux (chunk %d): %v", chunk, err)
		}
	}
	for _, p := range []string{sandbox.JWKSPath, "/sandbox/"} {
		if resp, err := http.Get(shared.URL + p); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s through the shared mux: %v %v", p, resp.StatusCode, err)
		}
	}
}

func sendVia(e *env, tok *oauth2.Token, raw []byte, chunk int) (string, error) {
	svc := e.gmail(tok)
	m, err := svc.Users.Messages.Send("me", &gmail.Message{}).
		Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(chunk)).Do()
	if err != nil {
		return "", err
	}
	return m.Id, nil
}

func TestPersistenceAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := newEnv(t, withStateDir(dir))
	v1 := idTokenValidator(t, e)
	tok := e.connect("alice@example.com")
	sent, err := sendRaw(e.gmail(tok), message("b@example.org", "before restart", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v1.Validate(context.Background(), tok.Extra("id_token").(string), testClientID); err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("state.json mode %v, want 0600", info.Mode().Perm())
	}
	state := string(readFile(t, filepath.Join(dir, "state.json")))
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken} {
		if strings.Contains(state, secret) {
			t.Error("state.json holds a token in the clear")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "outbox", filepath.Base(e.sb.Outbox()[0].Path))); err != nil {
		t.Errorf("the default outbox is not StateDir/outbox: %v", err)
	}

	// A new server on the same directory: a restart of `make dev`, with a
	// different key offered (the stored one must win).
	e2 := &env{t: t, clock: e.clock, dir: filepath.Join(dir, "outbox")}
	sb2, err := sandbox.New(sandbox.Options{StateDir: dir, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e2.sb = sb2
	e2.ts = httptest.NewServer(sb2)
	defer e2.ts.Close()

	// The client survived, the refresh token works, the access token too.
	stale := &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
	fresh, err := e2.config().TokenSource(context.Background(), stale).Token()
	if err != nil {
		t.Fatalf("refresh after restart: %v", err)
	}
	if _, err := sendRaw(e2.gmail(tok), message("b@example.org", "old access token", "b")); err != nil {
		t.Errorf("access token after restart: %v", err)
	}
	// ID tokens signed before and after the restart verify against the new
	// server's JWKS.
	v2 := idTokenValidator(t, e2)
	for _, raw := range []string{tok.Extra("id_token").(string), e2.connect("bob@example.com").Extra("id_token").(string)} {
		if _, err := v2.Validate(context.Background(), raw, testClientID); err != nil {
			t.Errorf("ID token after restart: %v", err)
		}
	}
	if _, err := sendRaw(e2.gmail(fresh), message("b@example.org", "refreshed", "b")); err != nil {
		t.Errorf("refreshed access token after restart: %v", err)
	}
	// The outbox remembers what was sent before.
	out := sb2.Outbox()
	if len(out) != 3 || out[0].ID != sent.Id {
		t.Errorf("outbox after restart: %+v", out)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	if _, err := sandbox.New(sandbox.Options{}); err == nil {
		t.Error("New without StateDir or OutboxDir succeeded")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sandbox.New(sandbox.Options{StateDir: dir}); err == nil {
		t.Error("New accepted a corrupt state.json")
	}
}

// No token, code, secret or message body may reach the logs.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	verifier := oauth2.GenerateVerifier()
	loc := e.authorize(cfg, "alice@example.com", "state-value-123", []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier)})
	code := loc.Query().Get("code")
	tok, err := cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
	if err != nil {
		t.Fatal(err)
	}
	const body = "the-secret-body-text"
	svc := e.gmail(fresh)
	if _, err := sendRaw(svc, message("b@example.org", "subject-words", body)); err != nil {
		t.Fatal(err)
	}
	_ = e.sb.InjectGmailErrors("", sandbox.RateLimit429, 1)
	_, _ = sendRaw(svc, message("b@example.org", "s", body))
	_, _ = sendRaw(svc, message("", "s", body))
	_, _ = cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier)) // replay
	logs := e.logs.String()
	if !strings.Contains(logs, "message accepted") {
		t.Fatalf("the flow logged nothing useful: %s", logs)
	}
	for name, secret := range map[string]string{
		"code": code, "access token": tok.AccessToken, "refresh token": tok.RefreshToken,
		"refreshed access token": fresh.AccessToken, "client secret": testClientSecret,
		"verifier": verifier, "id token": tok.Extra("id_token").(string), "body": body, "subject": "subject-words",
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain the %s", name)
		}
	}
}
