package connect_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"golang.org/x/net/html"
	"google.golang.org/api/iterator"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/connect"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// The relay's OAuth client as the sandbox knows it. The secret is made up
// for these tests; the log test proves it never reaches a log line.
const (
	testClientID     = "relay-test.apps.googleusercontent.com"
	testClientSecret = "relay-test-client-secret-6f1d"
	testProject      = "relay-test"
	testOperator     = "Acme Ltd"
)

// signingKey is shared by every sandbox of the package: a fresh RSA key per
// test would only cost time.
var signingKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// clock is a frozen clock that a test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup varies the harness. The zero value is an unrestricted relay on a
// local registry.
type setup struct {
	allowedDomains, allowedEmails []string
	// transport wraps the relay's HTTP transport to Google, outside the
	// recorder: it fakes the network as seen by the relay, while the
	// recorder keeps what the sandbox really said.
	transport func(http.RoundTripper) http.RoundTripper
	// accounts wraps the registry handed to confirm.
	accounts func(connect.Accounts) connect.Accounts
	// confirmRedirectPath, when set, makes confirm's OAuth client send
	// another redirect URI than authorize's.
	confirmRedirectPath string
	// logger goes into every request's context (through
	// logging.Middleware) and into the token store; nil discards.
	logger *slog.Logger
	// registry replaces the local registry.
	registry registry.Store
}

// harness is one relay on one host: the sandbox at its root, authorize at
// /authorize and confirm at /confirm, so that the browser's cookies flow
// between them as they do in `make dev`.
type harness struct {
	t        *testing.T
	base     string
	redirect string
	relay    *clock // the relay's clock (state expiry, timestamps)
	google   *clock // the sandbox's clock (code and token lifetimes)
	sb       *sandbox.Server
	sm       *secretfake.Server
	smc      *secretmanager.Client
	tokens   *tokenstore.Store
	reg      registry.Store
	oauth    *oauth.Client
	rec      *recorder
	opts     connect.Options

	mu      sync.Mutex
	cookies []string // state cookie values handed to browsers
}

func newHarness(t *testing.T, s setup) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, relay: newClock(), google: newClock()}

	key, err := signingKey()
	if err != nil {
		t.Fatal(err)
	}
	h.sb, err = sandbox.New(sandbox.Options{OutboxDir: t.TempDir(), Now: h.google.Now, SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.sb.Close() })

	h.sm, err = secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.sm.Close() })
	h.smc, err = h.sm.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.smc.Close() })
	logger := s.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h.tokens = tokenstore.New(h.smc, testProject, tokenstore.WithLogger(logger))

	h.reg = s.registry
	if h.reg == nil {
		h.reg, err = registry.NewLocal(filepath.Join(t.TempDir(), "accounts.json"))
		if err != nil {
			t.Fatal(err)
		}
	}

	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(logging.Middleware(logger, "")(mux))
	h.base = "http://" + srv.Listener.Addr().String()
	h.redirect = h.base + "/confirm"

	wire := &http.Transport{}
	t.Cleanup(wire.CloseIdleConnections)
	h.rec = &recorder{next: wire}
	var rt http.RoundTripper = h.rec
	if s.transport != nil {
		rt = s.transport(rt)
	}
	hc := &http.Client{Transport: rt, Timeout: 30 * time.Second}
	h.oauth = h.newOAuth(hc, h.redirect)
	confirmOAuth := h.oauth
	if s.confirmRedirectPath != "" {
		confirmOAuth = h.newOAuth(hc, h.base+s.confirmRedirectPath)
	}
	if err := h.sb.RegisterClient(sandbox.Client{ID: testClientID, Secret: testClientSecret, RedirectURIs: []string{h.redirect}}); err != nil {
		t.Fatal(err)
	}

	var accounts connect.Accounts = h.reg
	if s.accounts != nil {
		accounts = s.accounts(accounts)
	}
	h.opts = connect.Options{
		OAuth:          h.oauth,
		Tokens:         h.tokens,
		Accounts:       accounts,
		AllowedDomains: s.allowedDomains,
		AllowedEmails:  s.allowedEmails,
		ConnectURL:     h.base + "/authorize",
		Operator:       testOperator,
		Now:            h.relay.Now,
		SaveAttempts:   3,
		SaveBackoff:    time.Millisecond,
	}
	confirmOpts := h.opts
	confirmOpts.OAuth = confirmOAuth
	for _, p := range h.sb.Paths() {
		mux.Handle(p, h.sb)
	}
	mux.Handle("/authorize", connect.NewAuthorize(h.opts))
	mux.Handle("/confirm", connect.NewConfirm(confirmOpts))
	srv.Start()
	t.Cleanup(srv.Close)
	return h
}

func (h *harness) newOAuth(hc *http.Client, redirect string) *oauth.Client {
	h.t.Helper()
	c, err := oauth.New(oauth.Config{
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		RedirectURL:  redirect,
		AuthURL:      h.base + sandbox.AuthPath,
		TokenURL:     h.base + sandbox.TokenPath,
		RevokeURL:    h.base + sandbox.RevokePath,
		HTTPClient:   hc,
		Now:          h.relay.Now,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// browser is one person's browser: its own cookie jar, and no automatic
// redirects, so that each hop can be checked.
type browser struct {
	h   *harness
	jar *cookiejar.Jar
	c   *http.Client
}

func (h *harness) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	wire := &http.Transport{}
	h.t.Cleanup(wire.CloseIdleConnections)
	// Note every state cookie value set, for the log test.
	note := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := wire.RoundTrip(req)
		if err == nil {
			for _, c := range resp.Cookies() {
				if c.Name == stateCookie && c.Value != "" {
					h.mu.Lock()
					h.cookies = append(h.cookies, c.Value)
					h.mu.Unlock()
				}
			}
		}
		return resp, err
	})
	return &browser{h: h, jar: jar, c: &http.Client{
		Transport:     note,
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (h *harness) stateCookies() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.cookies)
}

func (b *browser) get(t *testing.T, rawURL string, asJSON bool) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if asJSON {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// start opens /authorize?start=1 with extra query parameters and returns
// the consent URL it redirects to.
func (b *browser) start(t *testing.T, extra url.Values) string {
	t.Helper()
	q := url.Values{"start": {"1"}}
	for k, v := range extra {
		q[k] = v
	}
	resp := b.get(t, b.h.base+"/authorize?"+q.Encode(), false)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d, want 302", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// consent plays the user on the sandbox's consent page and returns the
// confirm URL Google sends the browser back to.
func (b *browser) consent(t *testing.T, consentURL, email string, untick ...string) string {
	t.Helper()
	back, err := sandbox.Consent(context.Background(), b.c, consentURL, email, untick...)
	if err != nil {
		t.Fatalf("consent: %v", err)
	}
	if !strings.HasPrefix(back.String(), b.h.redirect+"?") {
		t.Fatalf("consent sent the browser to %s, want the redirect URI %s", back.Redacted(), b.h.redirect)
	}
	return back.String()
}

// connectURL starts a flow and consents: the confirm URL, not yet opened.
func (b *browser) connectURL(t *testing.T, email string, untick ...string) string {
	t.Helper()
	return b.consent(t, b.start(t, nil), email, untick...)
}

// result is confirm's (or authorize's) answer.
type result struct {
	status  int
	header  http.Header
	body    string
	account string
	state   string // "connected" on success
	scopes  []string
	code    string // the error code
	message string
	fix     string
}

func (b *browser) open(t *testing.T, rawURL string, asJSON bool) result {
	t.Helper()
	resp := b.get(t, rawURL, asJSON)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := result{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if !asJSON {
		return r
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("asked for JSON, got %s (status %d)", ct, resp.StatusCode)
	}
	var v struct {
		Account string   `json:"account"`
		Status  string   `json:"status"`
		Scopes  []string `json:"scopes"`
		Error   *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Fix     string `json:"fix"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	if resp.StatusCode >= 400 {
		wantErrorShape(t, body)
	}
	r.account, r.state, r.scopes = v.Account, v.Status, v.Scopes
	if v.Error != nil {
		r.code, r.message, r.fix = v.Error.Code, v.Error.Message, v.Error.Fix
	}
	return r
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.h.base + "/")
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.h.base + "/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

const (
	stateCookie = "gmail-relay-state"
	usedCookie  = "gmail-relay-used"
)

// wantErrorShape checks that body is the relay's one error shape,
// {"error":{"code":…,"message":…,"fix":…}}, with nothing else in it.
func wantErrorShape(t *testing.T, body []byte) {
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
	if err := dec.Decode(&v); err != nil || v.Error == nil || v.Error.Code == "" || v.Error.Message == "" || v.Error.Fix == "" {
		t.Fatalf("error answer is not {\"error\":{\"code\",\"message\",\"fix\"}} (%v):\n%s", err, body)
	}
}

// wantProblem checks a JSON error answer.
func wantProblem(t *testing.T, r result, status int, code string) {
	t.Helper()
	if r.status != status || r.code != code {
		t.Fatalf("answer = %d %q, want %d %q (message %q)", r.status, r.code, status, code, r.message)
	}
	if r.message == "" || r.fix == "" {
		t.Errorf("problem %q has no message or no fix: %+v", code, r)
	}
}

// wantConnected checks a JSON success answer.
func wantConnected(t *testing.T, r result, email string) {
	t.Helper()
	if r.status != http.StatusOK || r.state != "connected" || r.account != email {
		t.Fatalf("answer = %d %q %q (error %q: %s), want 200 connected %s", r.status, r.state, r.account, r.code, r.message, email)
	}
}

// grantedScopes is what the sandbox reports when everything is ticked.
var grantedScopes = []string{sandbox.ScopeOpenID, sandbox.ScopeEmail, sandbox.ScopeGmailSend}

// --- side effects -----------------------------------------------------------

func (h *harness) secrets(t *testing.T) []*secretmanagerpb.Secret {
	t.Helper()
	var out []*secretmanagerpb.Secret
	it := h.smc.ListSecrets(context.Background(), &secretmanagerpb.ListSecretsRequest{Parent: "projects/" + testProject})
	for {
		s, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
}

// versions counts a secret's versions by state.
func (h *harness) versions(t *testing.T, secret string) map[secretmanagerpb.SecretVersion_State]int {
	t.Helper()
	n := map[secretmanagerpb.SecretVersion_State]int{}
	it := h.smc.ListSecretVersions(context.Background(), &secretmanagerpb.ListSecretVersionsRequest{Parent: secret})
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n[v.GetState()]++
	}
}

// wantOneSecret checks that the project holds exactly one token secret, for
// email, with exactly one enabled version, and returns the stored token.
func (h *harness) wantOneSecret(t *testing.T, email string) tokenstore.Token {
	t.Helper()
	secrets := h.secrets(t)
	if len(secrets) != 1 {
		t.Fatalf("%d secrets in the project, want 1", len(secrets))
	}
	s := secrets[0]
	secretID, _ := account.IDs(email)
	if want := "projects/" + testProject + "/secrets/" + secretID; s.GetName() != want {
		t.Errorf("secret %s, want %s", s.GetName(), want)
	}
	if got := s.GetAnnotations()[tokenstore.AnnotationEmail]; got != email {
		t.Errorf("email annotation %q, want %q", got, email)
	}
	if n := h.versions(t, s.GetName())[secretmanagerpb.SecretVersion_ENABLED]; n != 1 {
		t.Errorf("%d enabled versions, want 1", n)
	}
	tok, err := h.tokens.Load(context.Background(), email)
	if err != nil {
		t.Fatalf("stored token: %v", err)
	}
	return tok
}

// wantNothingStored checks that no secret exists and the registry does not
// know email.
func (h *harness) wantNothingStored(t *testing.T, email string) {
	t.Helper()
	if s := h.secrets(t); len(s) != 0 {
		t.Errorf("%d secrets left in the project, want none", len(s))
	}
	if _, err := h.reg.Get(context.Background(), email); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("registry lookup of %s = %v, want ErrNotFound", email, err)
	}
}

// grant is the sandbox's view of email's consent to the relay's client.
func (h *harness) grant(t *testing.T, email string) (sandbox.Account, bool) {
	t.Helper()
	resp, err := http.Get(h.base + "/sandbox/accounts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all []sandbox.Account
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.Email == email && a.ClientID == testClientID {
			return a, true
		}
	}
	return sandbox.Account{}, false
}

// wantRevoked checks, at the sandbox, that email holds no live token of the
// relay's client, and that the relay did ask Google to revoke.
func (h *harness) wantRevoked(t *testing.T, email string) {
	t.Helper()
	if a, ok := h.grant(t, email); ok && (a.RefreshTokens > 0 || a.AccessTokens > 0) {
		t.Errorf("the grant of %s is still live at Google: %d refresh and %d access tokens", email, a.RefreshTokens, a.AccessTokens)
	}
	if n := h.rec.revoked(); n == 0 {
		t.Error("the relay never revoked anything at Google")
	}
}

// wantLive checks that email's grant is live at the sandbox.
func (h *harness) wantLive(t *testing.T, email string) {
	t.Helper()
	if a, ok := h.grant(t, email); !ok || a.RefreshTokens == 0 {
		t.Errorf("%s holds no live refresh token at Google (grant %v)", email, ok)
	}
	if n := h.rec.revoked(); n != 0 {
		t.Errorf("the relay revoked %d tokens, want none", n)
	}
}

// wantRegistered checks the registry row of a fresh connection.
func (h *harness) wantRegistered(t *testing.T, email string, scopes []string) *registry.Account {
	t.Helper()
	a, err := h.reg.Get(context.Background(), email)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	now := h.relay.Now()
	if a.Status != registry.StatusConnected {
		t.Errorf("status %q, want connected", a.Status)
	}
	if !slices.Equal(a.Scopes, scopes) {
		t.Errorf("registry scopes %v, want %v", a.Scopes, scopes)
	}
	for name, ts := range map[string]time.Time{"connected_at": a.ConnectedAt, "token_issued_at": a.TokenIssuedAt, "last_refresh_at": a.LastRefreshAt} {
		if !ts.Equal(now) {
			t.Errorf("%s = %v, want %v", name, ts, now)
		}
	}
	if a.LastError != "" {
		t.Errorf("last_error %q on a fresh connection", a.LastError)
	}
	return a
}

// --- the network as the relay sees it ---------------------------------------

// recorder sits on the relay's wire to Google and keeps what went by: the
// values that must never be logged, and the revocations.
type recorder struct {
	next http.RoundTripper

	mu        sync.Mutex
	secrets   map[string]string // value → what it is
	refreshes []string          // refresh tokens issued, in order
	revokes   int               // revocations Google accepted
	exchanges int               // code exchanges Google accepted
}

func (r *recorder) keep(what, v string) {
	if v == "" {
		return
	}
	if r.secrets == nil {
		r.secrets = map[string]string{}
	}
	r.secrets[v] = what
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	form, err := readForm(req)
	if err != nil {
		return nil, err
	}
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))

	r.mu.Lock()
	defer r.mu.Unlock()
	r.keep("an authorization code", form.Get("code"))
	r.keep("a PKCE verifier", form.Get("code_verifier"))
	r.keep("a client secret", form.Get("client_secret"))
	r.keep("a refresh token", form.Get("refresh_token"))
	switch req.URL.Path {
	case sandbox.TokenPath:
		var tr struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			IDToken      string `json:"id_token"`
		}
		if json.Unmarshal(body, &tr) == nil {
			r.keep("an access token", tr.AccessToken)
			r.keep("a refresh token", tr.RefreshToken)
			r.keep("an ID token", tr.IDToken)
			if tr.RefreshToken != "" {
				r.refreshes = append(r.refreshes, tr.RefreshToken)
			}
		}
		if resp.StatusCode == http.StatusOK && form.Get("grant_type") == "authorization_code" {
			r.exchanges++
		}
	case sandbox.RevokePath:
		r.keep("a revoked token", form.Get("token"))
		if resp.StatusCode == http.StatusOK {
			r.revokes++
		}
	}
	return resp, nil
}

func (r *recorder) revoked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revokes
}

func (r *recorder) exchanged() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exchanges
}

// refreshTokens returns the refresh tokens Google issued so far.
func (r *recorder) refreshTokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.refreshes)
}

func (r *recorder) secretValues() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.secrets))
	for k, v := range r.secrets {
		out[k] = v
	}
	return out
}

// readForm reads a form-encoded request body and puts it back.
func readForm(req *http.Request) (url.Values, error) {
	if req.Body == nil {
		return url.Values{}, nil
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	return url.ParseQuery(string(b))
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// editTokenResponse rewrites the JSON of successful token responses to
// grants of grantType.
func editTokenResponse(grantType string, edit func(map[string]any)) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			form, err := readForm(req)
			if err != nil {
				return nil, err
			}
			resp, err := next.RoundTrip(req)
			if err != nil || req.URL.Path != sandbox.TokenPath || form.Get("grant_type") != grantType || resp.StatusCode != http.StatusOK {
				return resp, err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, err
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, err
			}
			edit(m)
			body, _ = json.Marshal(m)
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Del("Content-Length")
			return resp, nil
		})
	}
}

// answerToken answers token requests of grantType itself, with status and
// body, without reaching Google.
func answerToken(grantType string, status int, body string) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			form, err := readForm(req)
			if err != nil {
				return nil, err
			}
			if req.URL.Path != sandbox.TokenPath || form.Get("grant_type") != grantType {
				return next.RoundTrip(req)
			}
			return &http.Response{
				StatusCode:    status,
				Status:        http.StatusText(status),
				Header:        http.Header{"Content-Type": {"application/json; charset=utf-8"}},
				Body:          io.NopCloser(strings.NewReader(body)),
				ContentLength: int64(len(body)),
				Request:       req,
				Proto:         "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			}, nil
		})
	}
}

// --- the registry, failing on demand -----------------------------------------

// flakyAccounts fails the first n upserts (every one when n < 0).
type flakyAccounts struct {
	next connect.Accounts

	mu    sync.Mutex
	left  int
	calls int
}

func failAccounts(n int) func(connect.Accounts) connect.Accounts {
	return func(next connect.Accounts) connect.Accounts { return &flakyAccounts{next: next, left: n} }
}

func (f *flakyAccounts) Upsert(ctx context.Context, a *registry.Account) error {
	f.mu.Lock()
	f.calls++
	fail := f.left != 0
	if f.left > 0 {
		f.left--
	}
	f.mu.Unlock()
	if fail {
		return errors.Join(registry.ErrUnavailable, errors.New("injected registry failure"))
	}
	return f.next.Upsert(ctx, a)
}

func (f *flakyAccounts) tried() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// --- pages ------------------------------------------------------------------

// pageText is the visible text of an HTML page, whitespace collapsed.
func pageText(t *testing.T, page string) string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "style" || n.Data == "script" || n.Data == "title") {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return strings.Join(strings.Fields(b.String()), " ")
}

// wantText checks that the page shows every phrase.
func wantText(t *testing.T, page string, phrases ...string) {
	t.Helper()
	text := pageText(t, page)
	for _, p := range phrases {
		if !strings.Contains(text, p) {
			t.Errorf("page lacks %q; it says: %s", p, text)
		}
	}
}

type nodeRef = html.Node

// findAll returns the elements named tag.
func findAll(t *testing.T, page, tag string) []*html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var out []*html.Node
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
	}
	return out
}

// nodeText is an element's text, whitespace collapsed.
func nodeText(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data + " ")
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
