package sandbox_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

func TestConnectFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	verifier := oauth2.GenerateVerifier()
	// A state with characters that need escaping must come back unchanged.
	state := "s t/+=&%é~" + strings.Repeat("x", 40)
	authURL := cfg.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("include_granted_scopes", "true"), oauth2.SetAuthURLParam("login_hint", "alice@example.com"))

	loc, err := sandbox.Consent(context.Background(), e.ts.Client(), authURL, "  Alice@Example.COM ")
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Errorf("redirected to %q, want %q", got, testRedirect)
	}
	q := loc.Query()
	if q.Get("state") != state {
		t.Errorf("state = %q, want %q", q.Get("state"), state)
	}
	if q.Get("hd") != "example.com" {
		t.Errorf("hd = %q, want example.com", q.Get("hd"))
	}
	wantScope := "openid " + sandbox.ScopeEmail + " " + sandbox.ScopeGmailSend
	if q.Get("scope") != wantScope {
		t.Errorf("redirect scope = %q, want %q", q.Get("scope"), wantScope)
	}
	code := q.Get("code")
	if !strings.HasPrefix(code, "4/0A") {
		t.Errorf("code %q does not look like Google's", code)
	}

	tok, err := cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if !strings.HasPrefix(tok.AccessToken, "ya29.") || !strings.HasPrefix(tok.RefreshToken, "1//") {
		t.Errorf("token shapes: access %q…, refresh %q…", tok.AccessToken[:8], tok.RefreshToken[:min(4, len(tok.RefreshToken))])
	}
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 3599 {
		t.Errorf("token_type %q expires_in %d, want Bearer 3599", tok.TokenType, tok.ExpiresIn)
	}
	if got := strings.Join(scopeList(tok), " "); got != wantScope {
		t.Errorf("token scope = %q, want %q", got, wantScope)
	}
	if tok.Extra("id_token") == nil {
		t.Error("no id_token although openid was granted")
	}
	if s := e.sb.Stats(); s.TokenExchanges != 1 {
		t.Errorf("TokenExchanges = %d, want 1", s.TokenExchanges)
	}
}

// The errors a real client sees, through the real x/oauth2 client, with
// Google's exact codes and descriptions.
func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	type result struct {
		status int
		code   string
		desc   string
	}
	cases := []struct {
		name string
		run  func(t *testing.T, e *env) error
		want result
	}{
		{
			name: "wrong redirect_uri",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				loc := e.authorize(cfg, "alice@example.com", "s", nil)
				other := *cfg
				other.RedirectURL = "http://localhost:8080/confirm" // registered, but not the one used
				_, err := other.Exchange(context.Background(), loc.Query().Get("code"))
				return err
			},
			want: result{400, "redirect_uri_mismatch", "Bad Request"},
		},
		{
			name: "reused code",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				loc := e.authorize(cfg, "alice@example.com", "s", []oauth2.AuthCodeOption{oauth2.AccessTypeOffline})
				code := loc.Query().Get("code")
				first, err := cfg.Exchange(context.Background(), code)
				if err != nil {
					t.Fatalf("first exchange: %v", err)
				}
				_, err = cfg.Exchange(context.Background(), code)
				// Google revokes what the first exchange issued.
				if _, rerr := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: first.RefreshToken}).Token(); rerr == nil {
					t.Error("refresh token from the first exchange still works after the code was replayed")
				}
				if _, serr := sendRaw(e.gmail(first), message("bob@example.org", "hi", "x")); serr == nil {
					t.Error("access token from the first exchange still works after the code was replayed")
				}
				return err
			},
			want: result{400, "invalid_grant", "Bad Request"},
		},
		{
			name: "wrong PKCE verifier",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				loc := e.authorize(cfg, "alice@example.com", "s", []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier())})
				_, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
				return err
			},
			want: result{400, "invalid_grant", "Invalid code verifier."},
		},
		{
			name: "missing PKCE verifier",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				loc := e.authorize(cfg, "alice@example.com", "s", []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier())})
				_, err := cfg.Exchange(context.Background(), loc.Query().Get("code"))
				return err
			},
			want: result{400, "invalid_grant", "Missing code verifier."},
		},
		{
			name: "verifier without a challenge",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				loc := e.authorize(cfg, "alice@example.com", "s", nil)
				_, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
				return err
			},
			want: result{400, "invalid_grant", "code_verifier or verifier is not needed."},
		},
		{
			name: "wrong client secret in params",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				loc := e.authorize(cfg, "alice@example.com", "s", nil)
				bad := *cfg
				bad.ClientSecret = "wrong"
				_, err := bad.Exchange(context.Background(), loc.Query().Get("code"))
				return err
			},
			want: result{401, "invalid_client", "Unauthorized"},
		},
		{
			name: "wrong client secret in basic auth",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				loc := e.authorize(cfg, "alice@example.com", "s", nil)
				bad := *cfg
				bad.ClientSecret = "wrong"
				bad.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
				_, err := bad.Exchange(context.Background(), loc.Query().Get("code"))
				return err
			},
			want: result{401, "invalid_client", "Unauthorized"},
		},
		{
			name: "unknown client",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				bad := *cfg
				bad.ClientID = "999-nobody.apps.googleusercontent.com"
				_, err := bad.Exchange(context.Background(), "4/0Aanything")
				return err
			},
			want: result{401, "invalid_client", "The OAuth client was not found."},
		},
		{
			name: "malformed code",
			run: func(t *testing.T, e *env) error {
				_, err := e.config().Exchange(context.Background(), "4%2F0Adouble-encoded")
				return err
			},
			want: result{400, "invalid_grant", "Malformed auth code."},
		},
		{
			name: "expired code",
			run: func(t *testing.T, e *env) error {
				cfg := e.config()
				loc := e.authorize(cfg, "alice@example.com", "s", nil)
				e.clock.Advance(10*time.Minute + time.Second)
				_, err := cfg.Exchange(context.Background(), loc.Query().Get("code"))
				return err
			},
			want: result{400, "invalid_grant", "Bad Request"},
		},
		{
			name: "revoked refresh token",
			run: func(t *testing.T, e *env) error {
				tok := e.connect("alice@example.com")
				if !e.sb.RevokeRefreshToken(tok.RefreshToken) {
					t.Fatal("RevokeRefreshToken found no live token")
				}
				_, err := e.config().TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
				return err
			},
			want: result{400, "invalid_grant", "Token has been expired or revoked."},
		},
		{
			name: "refresh token of another client",
			run: func(t *testing.T, e *env) error {
				tok := e.connect("alice@example.com")
				if err := e.sb.RegisterClient(sandbox.Client{ID: "other-client", Secret: "s2", RedirectURIs: []string{testRedirect}}); err != nil {
					t.Fatal(err)
				}
				other := e.config()
				other.ClientID, other.ClientSecret = "other-client", "s2"
				_, err := other.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
				return err
			},
			want: result{400, "unauthorized_client", "Unauthorized"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			err := tc.run(t, e)
			if err == nil {
				t.Fatal("no error")
			}
			re := asRetrieveErr(t, err)
			got := result{re.Response.StatusCode, re.ErrorCode, re.ErrorDescription}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Errors the token endpoint answers without a well-formed client request,
// checked on the wire.
func TestTokenEndpointRequestErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name   string
		form   url.Values
		status int
		body   string
	}{
		{"no client", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}},
			400, `{"error":"invalid_request","error_description":"Could not determine client ID from request."}`},
		{"no grant type", url.Values{"client_id": {testClientID}, "client_secret": {testClientSecret}},
			400, `{"error":"invalid_request","error_description":"Missing required parameter: grant_type"}`},
		{"unsupported grant", url.Values{"client_id": {testClientID}, "client_secret": {testClientSecret}, "grant_type": {"password"}},
			400, `{"error":"unsupported_grant_type","error_description":"Invalid grant_type: password"}`},
		{"no code", url.Values{"client_id": {testClientID}, "client_secret": {testClientSecret}, "grant_type": {"authorization_code"}, "redirect_uri": {testRedirect}},
			400, `{"error":"invalid_request","error_description":"Missing required parameter: code"}`},
		{"no redirect_uri", url.Values{"client_id": {testClientID}, "client_secret": {testClientSecret}, "grant_type": {"authorization_code"}, "code": {"4/0Ax"}},
			400, `{"error":"invalid_request","error_description":"Missing required parameter: redirect_uri"}`},
		{"no refresh token", url.Values{"client_id": {testClientID}, "client_secret": {testClientSecret}, "grant_type": {"refresh_token"}},
			400, `{"error":"invalid_request","error_description":"Missing required parameter: refresh_token"}`},
		{"unknown refresh token", url.Values{"client_id": {testClientID}, "client_secret": {testClientSecret}, "grant_type": {"refresh_token"}, "refresh_token": {"1//0nope"}},
			400, `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := http.PostForm(e.ts.URL+sandbox.TokenPath, tc.form)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || string(b) != tc.body {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, b, tc.status, tc.body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestAuthorizationErrorPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := e.config()
	cases := []struct {
		name   string
		mutate func(v url.Values)
		status int
		text   string
	}{
		{"unknown client", func(v url.Values) { v.Set("client_id", "nope.apps.googleusercontent.com") }, 401, "Error 401: invalid_client"},
		{"missing client", func(v url.Values) { v.Del("client_id") }, 400, "Error 400: invalid_request"},
		{"unregistered redirect", func(v url.Values) { v.Set("redirect_uri", testRedirect+"/") }, 400, "Error 400: redirect_uri_mismatch"},
		{"missing response_type", func(v url.Values) { v.Del("response_type") }, 400, "Error 400: invalid_request"},
		{"token response_type", func(v url.Values) { v.Set("response_type", "token") }, 400, "Error 400: unsupported_response_type"},
		{"missing scope", func(v url.Values) { v.Del("scope") }, 400, "Error 400: invalid_request"},
		{"unknown scope", func(v url.Values) { v.Set("scope", "openid calendar") }, 400, "Error 400: invalid_scope"},
		{"bad challenge method", func(v url.Values) {
			v.Set("code_challenge", strings.Repeat("a", 43))
			v.Set("code_challenge_method", "S512")
		}, 400, "Error 400: invalid_request"},
		{"bad access_type", func(v url.Values) { v.Set("access_type", "forever") }, 400, "Error 400: invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, _ := url.Parse(base.AuthCodeURL("st"))
			q := u.Query()
			tc.mutate(q)
			u.RawQuery = q.Encode()
			// The user is shown the error; the browser is never sent to the
			// redirect URI.
			client := *e.ts.Client() // a copy: the subtests run in parallel
			client.CheckRedirect = func(*http.Request, []*http.Request) error {
				t.Error("error page redirected")
				return http.ErrUseLastResponse
			}
			_, err := sandbox.Consent(context.Background(), &client, u.String(), "alice@example.com")
			var perr *sandbox.ConsentPageError
			if !errors.As(err, &perr) {
				t.Fatalf("err = %v, want a ConsentPageError", err)
			}
			if perr.StatusCode != tc.status || perr.Text != tc.text {
				t.Errorf("got %d %q, want %d %q", perr.StatusCode, perr.Text, tc.status, tc.text)
			}
		})
	}
}

func TestConsentOutcomes(t *testing.T) {
	t.Parallel()
	t.Run("deny", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		loc, err := sandbox.ConsentDeny(context.Background(), e.ts.Client(), e.config().AuthCodeURL("my-state"), "alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		q := loc.Query()
		if q.Get("error") != "access_denied" || q.Get("state") != "my-state" || q.Has("code") {
			t.Errorf("deny redirect = %s", loc)
		}
	})
	t.Run("admin policy", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.sb.DenyWithError("Carol@Corp.example", "admin_policy_enforced")
		loc := e.authorize(e.config(), "carol@corp.example", "st", nil)
		if q := loc.Query(); q.Get("error") != "admin_policy_enforced" || q.Has("code") || q.Get("state") != "st" {
			t.Errorf("redirect = %s", loc)
		}
		// Other accounts are unaffected.
		if loc := e.authorize(e.config(), "dave@corp.example", "st", nil); !loc.Query().Has("code") {
			t.Errorf("dave was refused: %s", loc)
		}
	})
	t.Run("unticked scope", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		cfg := e.config()
		loc := e.authorize(cfg, "alice@example.com", "st", nil, "gmail.send")
		tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"))
		if err != nil {
			t.Fatal(err)
		}
		got := scopeList(tok)
		if contains(got, sandbox.ScopeGmailSend) || !contains(got, sandbox.ScopeEmail) || !contains(got, "openid") {
			t.Errorf("scope = %v, want openid and email without gmail.send", got)
		}
		// And Gmail refuses the token.
		_, err = sendRaw(e.gmail(tok), message("bob@example.org", "hi", "x"))
		g := asGoogleErr(t, err)
		if g.Code != 403 || g.Message != "Request had insufficient authentication scopes." || !contains(reasons(g), "insufficientPermissions") {
			t.Errorf("send with unticked scope: %d %q %v", g.Code, g.Message, reasons(g))
		}
	})
	t.Run("untick a scope that was not asked", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		_, err := sandbox.Consent(context.Background(), e.ts.Client(), e.config().AuthCodeURL("s"), "a@example.com", "gmail.readonly")
		if err == nil || !strings.Contains(err.Error(), "gmail.readonly") {
			t.Errorf("err = %v, want one naming the unknown scope", err)
		}
	})
	t.Run("invalid email", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		_, err := sandbox.Consent(context.Background(), e.ts.Client(), e.config().AuthCodeURL("s"), "not an address")
		var perr *sandbox.ConsentPageError
		if !errors.As(err, &perr) || perr.StatusCode != 400 || perr.Text != "Enter a valid email address." {
			t.Errorf("err = %v", err)
		}
	})
}

// Google issues a refresh token for offline access only on a consent
// screen: the first grant, or prompt=consent.
func TestRefreshTokenIssuance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	exchange := func(email string, opts ...oauth2.AuthCodeOption) *oauth2.Token {
		t.Helper()
		loc := e.authorize(cfg, email, "s", opts)
		tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	steps := []struct {
		name        string
		email       string
		opts        []oauth2.AuthCodeOption
		wantRefresh bool
	}{
		{"online access", "alice@example.com", nil, false},
		{"first offline grant after an online one", "alice@example.com", []oauth2.AuthCodeOption{oauth2.AccessTypeOffline}, true},
		{"first offline grant", "bob@example.com", []oauth2.AuthCodeOption{oauth2.AccessTypeOffline}, true},
		{"second offline grant without consent", "bob@example.com", []oauth2.AuthCodeOption{oauth2.AccessTypeOffline}, false},
		{"offline grant with prompt=consent", "bob@example.com", []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.ApprovalForce}, true},
	}
	for _, st := range steps { // in order: each step depends on the last
		tok := exchange(st.email, st.opts...)
		if got := tok.RefreshToken != ""; got != st.wantRefresh {
			t.Errorf("%s: refresh token issued = %v, want %v", st.name, got, st.wantRefresh)
		}
	}
	// Revoking every token forgets the consent, so the next grant is a
	// first one again.
	if n := e.sb.RevokeAll("bob@example.com"); n == 0 {
		t.Fatal("RevokeAll revoked nothing")
	}
	if tok := exchange("bob@example.com", oauth2.AccessTypeOffline); tok.RefreshToken == "" {
		t.Error("no refresh token on the first grant after revocation")
	}
}

// Google keeps 100 refresh tokens per account and client; the 101st
// revokes the oldest.
func TestRefreshTokenLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var toks []*oauth2.Token
	for range 101 {
		toks = append(toks, e.connect("alice@example.com"))
	}
	refresh := func(tok *oauth2.Token) error {
		_, err := e.config().TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		return err
	}
	if err := refresh(toks[0]); err == nil {
		t.Error("the oldest refresh token survived the 101st")
	} else if re := asRetrieveErr(t, err); re.ErrorCode != "invalid_grant" {
		t.Errorf("oldest: %v", err)
	}
	for _, i := range []int{1, 50, 100} {
		if err := refresh(toks[i]); err != nil {
			t.Errorf("token %d: %v", i, err)
		}
	}
	// Another account is not affected.
	if err := refresh(e.connect("bob@example.com")); err != nil {
		t.Errorf("bob: %v", err)
	}
}

func TestIncludeGrantedScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.connect("alice@example.com", "openid", "email")
	cfg := e.config(sandbox.ScopeGmailSend)
	loc := e.authorize(cfg, "alice@example.com", "s", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("include_granted_scopes", "true")})
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"openid", sandbox.ScopeEmail, sandbox.ScopeGmailSend} {
		if !contains(scopeList(tok), want) {
			t.Errorf("scope %v lacks %s", scopeList(tok), want)
		}
	}
}

func TestPromptNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	noPrompt := func(hint string) url.Values {
		t.Helper()
		client := *e.ts.Client()
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		u := cfg.AuthCodeURL("st", oauth2.SetAuthURLParam("prompt", "none"), oauth2.SetAuthURLParam("login_hint", hint))
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("prompt=none did not redirect: %d", resp.StatusCode)
		}
		return loc.Query()
	}
	if q := noPrompt("alice@example.com"); q.Get("error") != "consent_required" {
		t.Errorf("before consent: %v", q)
	}
	e.connect("alice@example.com")
	if q := noPrompt("alice@example.com"); q.Get("code") == "" || q.Get("state") != "st" {
		t.Errorf("after consent: %v", q)
	}
}

// The consent URL may sit behind the application's own redirect that sets a
// cookie; Consent follows it with the caller's cookie jar.
func TestConsentBehindRedirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "oauth_state", Value: "cookie-state", Path: "/"})
		http.Redirect(w, r, cfg.AuthCodeURL("cookie-state"), http.StatusFound)
	}))
	defer app.Close()

	client := jarClient(t)
	loc, err := sandbox.Consent(context.Background(), client, app.URL+"/authorize?login_hint=alice@example.com", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if loc.Query().Get("state") != "cookie-state" || loc.Query().Get("code") == "" {
		t.Errorf("redirect = %s", loc)
	}
	appURL, _ := url.Parse(app.URL)
	if cs := client.Jar.Cookies(appURL); len(cs) != 1 || cs[0].Value != "cookie-state" {
		t.Errorf("jar cookies for the app = %v", cs)
	}
}

// idTokenValidator is Google's own validator, reaching the sandbox's JWKS
// through a transport that sends www.googleapis.com to it.
func idTokenValidator(t *testing.T, e *env) *idtoken.Validator {
	t.Helper()
	target, _ := url.Parse(e.ts.URL)
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host != "www.googleapis.com" || r.URL.Path != sandbox.JWKSPath {
			t.Errorf("validator fetched %s", r.URL)
		}
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = target.Scheme, target.Host, target.Host
		return http.DefaultTransport.RoundTrip(r)
	})}
	v, err := idtoken.NewValidator(context.Background(), option.WithHTTPClient(client))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestIDToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := idTokenValidator(t, e)
	e.sb.SetEmailVerified("unverified@example.org", false)
	cases := []struct {
		email, wantHD string
		verified      bool
	}{
		{"alice@gmail.com", "", true},
		{"bob@googlemail.com", "", true},
		{"Carol@Corp.Example", "corp.example", true},
		{"unverified@example.org", "example.org", false},
	}
	for _, tc := range cases {
		tok := e.connect(tc.email)
		raw, _ := tok.Extra("id_token").(string)
		p, err := v.Validate(context.Background(), raw, testClientID)
		if err != nil {
			t.Fatalf("%s: Validate: %v", tc.email, err)
		}
		email := strings.ToLower(tc.email)
		c := p.Claims
		if p.Issuer != "https://accounts.google.com" || c["azp"] != testClientID || c["email"] != email || c["email_verified"] != tc.verified {
			t.Errorf("%s: claims %v", tc.email, c)
		}
		if hd, _ := c["hd"].(string); hd != tc.wantHD {
			t.Errorf("%s: hd = %q, want %q", tc.email, hd, tc.wantHD)
		}
		if len(p.Subject) != 21 || strings.Trim(p.Subject, "0123456789") != "" {
			t.Errorf("%s: sub %q is not a 21-digit number", tc.email, p.Subject)
		}
		if p.IssuedAt != e.clock.Now().Unix() || p.Expires != p.IssuedAt+3600 {
			t.Errorf("%s: iat %d exp %d", tc.email, p.IssuedAt, p.Expires)
		}
		// The sub is stable: a second grant gives the same one.
		again, err := v.Validate(context.Background(), e.connect(tc.email).Extra("id_token").(string), testClientID)
		if err != nil || again.Subject != p.Subject {
			t.Errorf("%s: second sub %v (err %v), want %s", tc.email, again, err, p.Subject)
		}
	}

	// A token whose claims were altered fails the signature check.
	raw := e.connect("alice@gmail.com").Extra("id_token").(string)
	parts := strings.Split(raw, ".")
	var claims map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(b, &claims)
	claims["email"] = "mallory@gmail.com"
	b, _ = json.Marshal(claims)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	if _, err := v.Validate(context.Background(), forged, testClientID); err == nil {
		t.Error("a forged ID token validated")
	}
	if _, err := v.Validate(context.Background(), raw, "another-audience"); err == nil {
		t.Error("an ID token validated for the wrong audience")
	}

	// Without openid there is no ID token.
	if tok := e.connect("dave@gmail.com", sandbox.ScopeGmailSend); tok.Extra("id_token") != nil {
		t.Error("id_token issued without openid")
	}
}

func TestRefreshAndRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	tok := e.connect("alice@example.com")
	stale := &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}

	fresh, err := cfg.TokenSource(context.Background(), stale).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if fresh.AccessToken == tok.AccessToken || fresh.RefreshToken != tok.RefreshToken {
		t.Errorf("refresh without rotation: new access %v, same refresh %v", fresh.AccessToken != tok.AccessToken, fresh.RefreshToken == tok.RefreshToken)
	}
	if raw, _ := fresh.Extra("refresh_token").(string); raw != "" {
		t.Error("refresh answered with a refresh_token although rotation is off")
	}
	if _, err := sendRaw(e.gmail(fresh), message("bob@example.org", "hi", "x")); err != nil {
		t.Errorf("send with refreshed token: %v", err)
	}

	e.sb.RotateRefreshTokens(true)
	rotated, err := cfg.TokenSource(context.Background(), stale).Token()
	if err != nil {
		t.Fatalf("refresh with rotation: %v", err)
	}
	if rotated.RefreshToken == tok.RefreshToken || !strings.HasPrefix(rotated.RefreshToken, "1//") {
		t.Fatalf("rotation did not return a new refresh token")
	}
	_, err = cfg.TokenSource(context.Background(), stale).Token()
	if re := asRetrieveErr(t, err); re.ErrorCode != "invalid_grant" {
		t.Errorf("old refresh token after rotation: %v", err)
	}
	newer := &oauth2.Token{RefreshToken: rotated.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
	if _, err := cfg.TokenSource(context.Background(), newer).Token(); err != nil {
		t.Errorf("rotated refresh token: %v", err)
	}
	if s := e.sb.Stats(); s.TokenRefreshes != 3 {
		t.Errorf("TokenRefreshes = %d, want 3", s.TokenRefreshes)
	}
}

func TestRefreshTokenTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *sandbox.Options) { o.RefreshTokenTTL = 7 * 24 * time.Hour })
	tok := e.connect("alice@example.com")
	stale := &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
	e.clock.Advance(6 * 24 * time.Hour)
	if _, err := e.config().TokenSource(context.Background(), stale).Token(); err != nil {
		t.Fatalf("refresh on day 6: %v", err)
	}
	e.clock.Advance(24 * time.Hour)
	_, err := e.config().TokenSource(context.Background(), stale).Token()
	if re := asRetrieveErr(t, err); re.ErrorCode != "invalid_grant" || re.ErrorDescription != "Token has been expired or revoked." {
		t.Errorf("refresh on day 7: %v", err)
	}
}

func TestRevokeEndpoint(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		which  func(*oauth2.Token) string
		method string
	}{
		{"refresh token by POST", func(t *oauth2.Token) string { return t.RefreshToken }, http.MethodPost},
		{"access token by POST", func(t *oauth2.Token) string { return t.AccessToken }, http.MethodPost},
		{"refresh token by GET", func(t *oauth2.Token) string { return t.RefreshToken }, http.MethodGet},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			tok := e.connect("alice@example.com")
			revoke := func() (int, string) {
				var resp *http.Response
				var err error
				if tc.method == http.MethodGet {
					resp, err = http.Get(e.ts.URL + sandbox.RevokePath + "?token=" + url.QueryEscape(tc.which(tok)))
				} else {
					resp, err = http.PostForm(e.ts.URL+sandbox.RevokePath, url.Values{"token": {tc.which(tok)}})
				}
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := revoke(); code != 200 {
				t.Fatalf("revoke: %d %s", code, body)
			}
			// Either token kills the grant: both stop working.
			_, err := e.config().TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			if re := asRetrieveErr(t, err); re.ErrorDescription != "Token has been expired or revoked." {
				t.Errorf("refresh after revoke: %v", err)
			}
			_, err = sendRaw(e.gmail(tok), message("bob@example.org", "s", "b"))
			if g := asGoogleErr(t, err); g.Code != 401 {
				t.Errorf("send after revoke: %v", err)
			}
			code, body := revoke()
			if want := `{"error":"invalid_token","error_description":"Token expired or revoked"}`; code != 400 || body != want {
				t.Errorf("second revoke: %d %s, want 400 %s", code, body, want)
			}
		})
	}
}

func TestClientRegistrationReplaces(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.sb.RegisterClient(sandbox.Client{ID: testClientID, Secret: "rotated", RedirectURIs: []string{"https://new.example/cb"}}); err != nil {
		t.Fatal(err)
	}
	_, err := sandbox.Consent(context.Background(), e.ts.Client(), e.config().AuthCodeURL("s"), "a@example.com")
	var perr *sandbox.ConsentPageError
	if !errors.As(err, &perr) || perr.Text != "Error 400: redirect_uri_mismatch" {
		t.Errorf("old redirect URI after re-registration: %v", err)
	}
	if err := e.sb.RegisterClient(sandbox.Client{}); err == nil {
		t.Error("RegisterClient accepted an empty ID")
	}
}
