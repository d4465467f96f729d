package connect_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/registry"
)

// TestConfirmConnects walks the whole flow and checks everything a
// connection leaves behind, for a JSON client and for a browser.
func TestConfirmConnects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		asJSON bool
		rotate bool // the sandbox hands out a new refresh token on refresh
	}{
		{name: "json", asJSON: true},
		{name: "html", asJSON: false},
		{name: "rotated refresh token is the one stored", asJSON: true, rotate: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			const email = "alice@example.com"
			h := newHarness(t, setup{})
			h.sb.RotateRefreshTokens(c.rotate)
			b := h.browser()
			confirmURL := b.connectURL(t, email)
			if b.cookie(stateCookie) == nil {
				t.Fatal("authorize set no state cookie")
			}

			r := b.open(t, confirmURL, c.asJSON)
			if c.asJSON {
				wantConnected(t, r, email)
				if !slices.Equal(r.scopes, grantedScopes) {
					t.Errorf("scopes %v, want %v", r.scopes, grantedScopes)
				}
			} else {
				if r.status != http.StatusOK {
					t.Fatalf("confirm answered %d: %s", r.status, pageText(t, r.body))
				}
				wantText(t, r.body, "Connected alice@example.com", "Gmail token valid", "cannot read your mail", "To disconnect")
			}

			// The token: stored once, with the granted scopes, and working.
			tok := h.wantOneSecret(t, email)
			issued := h.rec.refreshTokens()
			want := issued[0]
			if c.rotate {
				if len(issued) != 2 {
					t.Fatalf("Google issued %d refresh tokens, want 2 (exchange, rotation)", len(issued))
				}
				want = issued[1]
			}
			if tok.RefreshToken != want {
				t.Error("the stored refresh token is not the live one Google issued last")
			}
			if !slices.Equal(tok.Scopes, grantedScopes) || tok.ClientID != testClientID || !tok.IssuedAt.Equal(h.relay.Now()) {
				t.Errorf("stored token: scopes %v, client %q, issued %v", tok.Scopes, tok.ClientID, tok.IssuedAt)
			}
			if _, err := h.oauth.Refresh(context.Background(), tok.RefreshToken); err != nil {
				t.Errorf("the stored refresh token does not refresh: %v", err)
			}
			if got := h.sm.Calls("CreateSecret"); got != 1 {
				t.Errorf("CreateSecret called %d times, want 1", got)
			}

			h.wantRegistered(t, email, grantedScopes)
			h.wantLive(t, email)

			// The state cookie is gone; the used marker is set.
			if b.cookie(stateCookie) != nil {
				t.Error("the state cookie is still in the browser")
			}
			if b.cookie(usedCookie) == nil {
				t.Error("confirm did not mark the state as used")
			}
			if got := r.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
		})
	}
}

// TestConfirmRejectsState covers every way the state can be wrong. None of
// them may reach Google's token endpoint or store anything.
func TestConfirmRejectsState(t *testing.T) {
	t.Parallel()
	const email = "alice@example.com"
	cases := []struct {
		name string
		// attack returns the browser and URL that open confirm.
		attack     func(t *testing.T, h *harness, victim *browser, confirmURL string) (*browser, string)
		status     int
		code       string
		exchanges  int  // successful exchanges expected in all
		victimOK   bool // the victim can still finish afterwards
		victimUsed bool // the victim finished before the attack
	}{
		{
			name: "missing",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				return v, withoutParam(t, u, "state")
			},
			status: 400, code: "state_missing", victimOK: true,
		},
		{
			name: "tampered",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				return v, editParam(t, u, "state", flipBit)
			},
			status: 400, code: "state_invalid", victimOK: true,
		},
		{
			name: "truncated",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				return v, editParam(t, u, "state", func(s string) string { return s[:len(s)-4] })
			},
			status: 400, code: "state_invalid", victimOK: true,
		},
		{
			name: "expired",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				h.relay.Advance(11 * time.Minute)
				return v, u
			},
			status: 400, code: "state_expired",
		},
		{
			name: "other browser without the cookie",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				return h.browser(), u
			},
			status: 400, code: "cookie_missing", victimOK: true,
		},
		{
			name: "other browser holding its own flow's cookie",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				other := h.browser()
				other.start(t, nil)
				return other, u
			},
			status: 400, code: "state_other_browser", victimOK: true,
		},
		{
			name: "replayed in the same browser",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				wantConnected(t, v.open(t, u, true), email)
				return v, u
			},
			status: 400, code: "state_used", exchanges: 1, victimUsed: true,
		},
		{
			name: "replayed after starting another flow in the same browser",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				wantConnected(t, v.open(t, u, true), email)
				v.start(t, nil)
				return v, u
			},
			status: 400, code: "state_used", exchanges: 1, victimUsed: true,
		},
		{
			name: "valid state without a code",
			attack: func(t *testing.T, h *harness, v *browser, u string) (*browser, string) {
				return v, withoutParam(t, u, "code")
			},
			status: 400, code: "invalid_request",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, setup{})
			victim := h.browser()
			confirmURL := victim.connectURL(t, email)
			b, u := c.attack(t, h, victim, confirmURL)

			r := b.open(t, u, true)
			wantProblem(t, r, c.status, c.code)
			if got := h.rec.exchanged(); got != c.exchanges {
				t.Errorf("%d code exchanges, want %d", got, c.exchanges)
			}
			if c.victimUsed {
				h.wantOneSecret(t, email)
				return
			}
			h.wantNothingStored(t, email)
			if c.victimOK {
				// The refused attempt burnt nothing: the real flow completes.
				wantConnected(t, victim.open(t, confirmURL, true), email)
			}
		})
	}
}

// TestConfirmStatePages checks that a state problem is a page that says
// what to do, with a way to start again.
func TestConfirmStatePages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{})
	b := h.browser()
	u := b.connectURL(t, "alice@example.com")
	wantConnected(t, b.open(t, u, true), "alice@example.com")

	r := b.open(t, u, false)
	if r.status != http.StatusBadRequest {
		t.Fatalf("replay answered %d", r.status)
	}
	wantText(t, r.body, "This sign-in was already completed", "Not connected", "What to do:", "Error code: state_used")
	links := findAll(t, r.body, "a")
	if !slices.ContainsFunc(links, func(a *nodeRef) bool { return attr(a, "href") == h.base+"/authorize" }) {
		t.Error("the page has no link to start again")
	}
}

// TestConfirmRefuses covers the connections the relay must refuse after the
// exchange: each is revoked at Google and leaves nothing behind.
func TestConfirmRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		setup  setup
		email  string
		untick []string
		prep   func(h *harness)
		status int
		code   string
		text   []string // on the HTML page
	}{
		{
			name: "gmail.send unticked", email: "alice@example.com", untick: []string{"gmail.send"},
			status: 403, code: "scope_missing",
			text: []string{"Sending permission was not granted", "Send email on your behalf"},
		},
		{
			name: "email unticked", email: "alice@example.com", untick: []string{"email"},
			status: 400, code: "identity_invalid",
			text: []string{"Google did not confirm who you are", "See your primary Google Account email address"},
		},
		{
			name: "openid unticked", email: "alice@example.com", untick: []string{"openid"},
			status: 400, code: "identity_invalid",
			text: []string{"Google did not confirm who you are"},
		},
		{
			name: "address not verified", email: "alice@example.com",
			prep:   func(h *harness) { h.sb.SetEmailVerified("alice@example.com", false) },
			status: 403, code: "email_unverified",
			text: []string{"not verified", "Verify the address"},
		},
		{
			name: "domain not allowed", email: "bob@other.example",
			setup:  setup{allowedDomains: []string{"example.com"}},
			status: 403, code: "account_not_allowed",
			text: []string{"bob@other.example cannot be connected: this relay accepts only its organisation's accounts."},
		},
		{
			name: "address not on ALLOWED_EMAILS", email: "dave@example.org",
			setup:  setup{allowedEmails: []string{"carol@example.org"}},
			status: 403, code: "account_not_allowed",
			text: []string{"dave@example.org cannot be connected: this relay accepts only its organisation's accounts."},
		},
		{
			// A Google account that uses an address of the allowed domain
			// without being that Workspace domain's: no hd claim.
			name: "allowed domain without the hd claim", email: "alice@example.com",
			setup: setup{allowedDomains: []string{"example.com"}, transport: editTokenResponse("authorization_code", func(m map[string]any) {
				m["id_token"] = editClaims(m["id_token"].(string), func(c map[string]any) { delete(c, "hd") })
			})},
			status: 403, code: "account_not_allowed",
		},
		{
			name: "no refresh token", email: "alice@example.com",
			setup: setup{transport: editTokenResponse("authorization_code", func(m map[string]any) {
				delete(m, "refresh_token")
			})},
			status: 502, code: "no_refresh_token",
			text: []string{"Google did not grant lasting access"},
		},
		{
			name: "the new token does not refresh", email: "alice@example.com",
			setup:  setup{transport: answerToken("refresh_token", 400, `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`)},
			status: 502, code: "token_check_failed",
			text: []string{"could not be verified"},
		},
	}
	for _, c := range cases {
		for _, asJSON := range []bool{true, false} {
			name := c.name + "/html"
			if asJSON {
				name = c.name + "/json"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, c.setup)
				if c.prep != nil {
					c.prep(h)
				}
				b := h.browser()
				r := b.open(t, b.connectURL(t, c.email, c.untick...), asJSON)
				if asJSON {
					wantProblem(t, r, c.status, c.code)
				} else {
					if r.status != c.status {
						t.Errorf("status %d, want %d", r.status, c.status)
					}
					wantText(t, r.body, append([]string{"Not connected", "Error code: " + c.code}, c.text...)...)
				}
				if got := h.rec.exchanged(); got != 1 {
					t.Errorf("%d code exchanges, want 1", got)
				}
				h.wantNothingStored(t, c.email)
				h.wantRevoked(t, c.email)
				if b.cookie(stateCookie) != nil {
					t.Error("the state cookie was not cleared")
				}
			})
		}
	}

	t.Run("the revoked refresh token is dead", func(t *testing.T) {
		t.Parallel()
		// The no-refresh-token case revokes with the access token; the
		// refresh token Google did issue must die with it.
		h := newHarness(t, setup{transport: editTokenResponse("authorization_code", func(m map[string]any) { delete(m, "refresh_token") })})
		b := h.browser()
		wantProblem(t, b.open(t, b.connectURL(t, "alice@example.com"), true), 502, "no_refresh_token")
		issued := h.rec.refreshTokens()
		if len(issued) != 1 {
			t.Fatalf("Google issued %d refresh tokens, want 1", len(issued))
		}
		if h.sb.RevokeRefreshToken(issued[0]) {
			t.Error("the refresh token the relay never saw is still live at Google")
		}
	})

	t.Run("start again keeps the address", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, setup{})
		b := h.browser()
		r := b.open(t, b.connectURL(t, "alice@example.com", "gmail.send"), false)
		want := h.base + "/authorize?login_hint=alice%40example.com"
		if !slices.ContainsFunc(findAll(t, r.body, "a"), func(a *nodeRef) bool { return attr(a, "href") == want }) {
			t.Errorf("no start-again link to %s", want)
		}
	})
}

// TestConfirmAllowList checks accounts the allow-list lets in.
func TestConfirmAllowList(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup setup
		email string
	}{
		{"by domain", setup{allowedDomains: []string{"example.com"}}, "alice@example.com"},
		{"by address", setup{allowedEmails: []string{"carol@example.org"}}, "carol@example.org"},
		{"by address beside a domain", setup{allowedDomains: []string{"example.com"}, allowedEmails: []string{"carol@example.org"}}, "carol@example.org"},
		{"consumer domain without hd", setup{allowedDomains: []string{"gmail.com"}}, "erin@gmail.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, c.setup)
			b := h.browser()
			wantConnected(t, b.open(t, b.connectURL(t, c.email), true), c.email)
			h.wantOneSecret(t, c.email)
			h.wantLive(t, c.email)
		})
	}
}

// TestConfirmStorageFailure checks that a failed save leaves nothing half
// done: no secret, no registry row, the grant revoked.
func TestConfirmStorageFailure(t *testing.T) {
	t.Parallel()
	const email = "alice@example.com"
	cases := []struct {
		name    string
		setup   setup
		prep    func(h *harness)
		calls   map[string]int64 // Secret Manager calls expected
		upserts int              // registry upserts tried
		rotate  bool
	}{
		{
			name:  "AddSecretVersion unavailable beyond the retries",
			prep:  func(h *harness) { h.sm.FailNext("AddSecretVersion", codes.Unavailable, 3) },
			calls: map[string]int64{"AddSecretVersion": 3, "CreateSecret": 0},
		},
		{
			name:  "CreateSecret unavailable beyond the retries",
			prep:  func(h *harness) { h.sm.FailNext("CreateSecret", codes.Unavailable, 3) },
			calls: map[string]int64{"CreateSecret": 3},
		},
		{
			name:    "registry unavailable: the secret is deleted again",
			setup:   setup{accounts: failAccounts(-1)},
			calls:   map[string]int64{"CreateSecret": 1, "DeleteSecret": 1},
			upserts: 3,
		},
		{
			name:    "registry unavailable after a rotated refresh",
			setup:   setup{accounts: failAccounts(-1)},
			rotate:  true,
			calls:   map[string]int64{"DeleteSecret": 1},
			upserts: 3,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, c.setup)
			h.sb.RotateRefreshTokens(c.rotate)
			if c.prep != nil {
				c.prep(h)
			}
			b := h.browser()
			u := b.connectURL(t, email)
			r := b.open(t, u, true)
			wantProblem(t, r, 503, "storage_failed")
			if !strings.Contains(r.message, "nothing was saved") {
				t.Errorf("message %q does not say nothing was saved", r.message)
			}
			for m, n := range c.calls {
				if got := h.sm.Calls(m); got != n {
					t.Errorf("%s called %d times, want %d", m, got, n)
				}
			}
			if c.upserts > 0 {
				if got := h.opts.Accounts.(*flakyAccounts).tried(); got != c.upserts {
					t.Errorf("registry upserts tried %d times, want %d", got, c.upserts)
				}
			}
			h.wantNothingStored(t, email)
			h.wantRevoked(t, email)
		})
	}
}

// TestConfirmStorageRecovers checks that a brief failure is retried.
func TestConfirmStorageRecovers(t *testing.T) {
	t.Parallel()
	const email = "alice@example.com"
	cases := []struct {
		name  string
		setup setup
		prep  func(h *harness)
	}{
		{name: "AddSecretVersion once", prep: func(h *harness) { h.sm.FailNext("AddSecretVersion", codes.Unavailable, 1) }},
		{name: "CreateSecret twice", prep: func(h *harness) { h.sm.FailNext("CreateSecret", codes.Unavailable, 2) }},
		{name: "registry once", setup: setup{accounts: failAccounts(1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, c.setup)
			if c.prep != nil {
				c.prep(h)
			}
			b := h.browser()
			wantConnected(t, b.open(t, b.connectURL(t, email), true), email)
			h.wantOneSecret(t, email)
			h.wantRegistered(t, email, grantedScopes)
			h.wantLive(t, email)
		})
	}
}

// TestConfirmReconnectReplacesToken connects a mailbox twice.
func TestConfirmReconnectReplacesToken(t *testing.T) {
	t.Parallel()
	const email = "alice@example.com"
	h := newHarness(t, setup{})
	b := h.browser()
	wantConnected(t, b.open(t, b.connectURL(t, email), true), email)
	first := h.wantOneSecret(t, email)

	h.relay.Advance(time.Hour)
	again := h.browser()
	wantConnected(t, again.open(t, again.connectURL(t, email), true), email)
	second := h.wantOneSecret(t, email)

	if second.RefreshToken == first.RefreshToken {
		t.Error("reconnecting kept the old refresh token")
	}
	if issued := h.rec.refreshTokens(); len(issued) != 2 || second.RefreshToken != issued[1] {
		t.Error("the stored refresh token is not the one of the second consent")
	}
	if !second.IssuedAt.Equal(h.relay.Now()) {
		t.Errorf("issued_at %v, want %v", second.IssuedAt, h.relay.Now())
	}
	secrets := h.secrets(t)
	v := h.versions(t, secrets[0].GetName())
	if v[secretmanagerpb.SecretVersion_ENABLED] != 1 || v[secretmanagerpb.SecretVersion_DESTROYED] != 1 {
		t.Errorf("versions by state %v, want one enabled and one destroyed", v)
	}
	if got := h.sm.Calls("CreateSecret"); got != 1 {
		t.Errorf("CreateSecret called %d times, want 1", got)
	}
	h.wantRegistered(t, email, grantedScopes)
}

// TestConfirmGoogleErrors covers error= on the redirect: a page per error,
// nothing exchanged, nothing stored.
func TestConfirmGoogleErrors(t *testing.T) {
	t.Parallel()
	const email = "alice@example.com"
	cases := []struct {
		name   string
		deny   string // DenyWithError code; "" presses Deny
		desc   string // error_description Google adds
		status int
		code   string
		text   []string
	}{
		{
			name: "access_denied", status: 403, code: "access_denied",
			text: []string{"Access was not granted", "Test users", "publish the app"},
		},
		{
			name: "admin_policy_enforced", deny: "admin_policy_enforced", status: 403, code: "admin_policy_enforced",
			text: []string{"Workspace administrator blocks this app", "client ID as Trusted"},
		},
		{
			name: "org_internal", deny: "org_internal", status: 403, code: "org_internal",
			text: []string{"This app is for one organisation only"},
		},
		{
			name: "invalid_scope", deny: "invalid_scope", desc: "Some requested scopes were invalid.", status: 400, code: "invalid_scope",
			text: []string{"Some requested scopes were invalid."},
		},
		{
			name: "another code with a description", deny: "temporarily_unavailable", desc: "The authorization server is busy",
			status: 400, code: "temporarily_unavailable",
			text: []string{"error code temporarily_unavailable", "Google's own words: The authorization server is busy"},
		},
	}
	for _, c := range cases {
		for _, asJSON := range []bool{true, false} {
			name := c.name + "/html"
			if asJSON {
				name = c.name + "/json"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, setup{})
				b := h.browser()
				consentURL := b.start(t, nil)
				var back *url.URL
				var err error
				if c.deny == "" {
					back, err = sandbox.ConsentDeny(context.Background(), b.c, consentURL, email)
				} else {
					h.sb.DenyWithError(email, c.deny)
					back, err = sandbox.Consent(context.Background(), b.c, consentURL, email)
				}
				if err != nil {
					t.Fatal(err)
				}
				if back.Query().Get("error") != c.code || back.Query().Has("code") {
					t.Fatalf("the sandbox answered %s", back.Redacted())
				}
				if c.desc != "" {
					q := back.Query()
					q.Set("error_description", c.desc)
					back.RawQuery = q.Encode()
				}
				r := b.open(t, back.String(), asJSON)
				if asJSON {
					wantProblem(t, r, c.status, c.code)
				} else {
					if r.status != c.status {
						t.Errorf("status %d, want %d", r.status, c.status)
					}
					wantText(t, r.body, append([]string{"Not connected", "Error code: " + c.code}, c.text...)...)
					if strings.Contains(strings.ToLower(pageText(t, r.body)), "an error occurred") {
						t.Error("the page is the generic one")
					}
				}
				if got := h.rec.exchanged(); got != 0 {
					t.Errorf("%d exchanges after error=, want 0", got)
				}
				h.wantNothingStored(t, email)
				if b.cookie(stateCookie) != nil {
					t.Error("the state cookie was not cleared")
				}
			})
		}
	}
}

// TestConfirmExchangeErrors covers a token endpoint that refuses the code.
func TestConfirmExchangeErrors(t *testing.T) {
	t.Parallel()
	const email = "alice@example.com"
	cases := []struct {
		name  string
		setup setup
		// between runs after consent, before confirm; it returns the URL to
		// open.
		between func(t *testing.T, h *harness, b *browser, u string) string
		status  int
		code    string
		text    []string
	}{
		{
			name:   "redirect_uri_mismatch",
			setup:  setup{confirmRedirectPath: "/callback"},
			status: 400, code: "redirect_uri_mismatch",
			text: []string{"The redirect URI does not match", "Terraform output redirect_uri"},
		},
		{
			name: "invalid_client (the secret was rotated at Google)",
			between: func(t *testing.T, h *harness, b *browser, u string) string {
				if err := h.sb.RegisterClient(sandbox.Client{ID: testClientID, Secret: "rotated-at-google", RedirectURIs: []string{h.redirect}}); err != nil {
					t.Fatal(err)
				}
				return u
			},
			status: 502, code: "invalid_client",
			text: []string{"The relay's OAuth credentials are wrong", "current client secret"},
		},
		{
			name: "invalid_grant (the code expired at Google)",
			between: func(t *testing.T, h *harness, b *browser, u string) string {
				h.google.Advance(11 * time.Minute)
				return u
			},
			status: 400, code: "invalid_grant",
			text: []string{"already used or has expired"},
		},
		{
			name: "invalid_grant (the code was already exchanged)",
			between: func(t *testing.T, h *harness, b *browser, u string) string {
				kept := b.cookie(stateCookie).Value
				wantConnected(t, b.open(t, u, true), email)
				b.setCookie(stateCookie, kept) // as if the cookie had been copied
				return u
			},
			status: 400, code: "invalid_grant",
		},
		{
			name:   "Google unreachable",
			setup:  setup{transport: answerTokenError()},
			status: 502, code: "google_unreachable",
			text: []string{"Google could not be reached"},
		},
	}
	for _, c := range cases {
		for _, asJSON := range []bool{true, false} {
			name := c.name + "/html"
			if asJSON {
				name = c.name + "/json"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, c.setup)
				b := h.browser()
				u := b.connectURL(t, email)
				reused := false
				if c.between != nil {
					before := h.rec.exchanged()
					u = c.between(t, h, b, u)
					reused = h.rec.exchanged() > before
				}
				r := b.open(t, u, asJSON)
				if asJSON {
					wantProblem(t, r, c.status, c.code)
				} else {
					if r.status != c.status {
						t.Errorf("status %d, want %d", r.status, c.status)
					}
					wantText(t, r.body, append([]string{"Not connected", "Error code: " + c.code}, c.text...)...)
				}
				if b.cookie(stateCookie) != nil {
					t.Error("the state cookie was not cleared")
				}
				if reused {
					// The first exchange stored the account; the failed
					// second one must not have added anything.
					if n := len(h.secrets(t)); n != 1 {
						t.Errorf("%d secrets, want 1", n)
					}
					return
				}
				if got := h.rec.exchanged(); got != 0 {
					t.Errorf("%d successful exchanges, want 0", got)
				}
				h.wantNothingStored(t, email)
			})
		}
	}
}

// answerTokenError makes every token request fail on the wire.
func answerTokenError() func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.URL.Path == sandbox.TokenPath {
				return nil, &netError{}
			}
			return next.RoundTrip(req)
		})
	}
}

type netError struct{}

func (*netError) Error() string { return "dial tcp: connection refused (injected)" }

// --- URL and token surgery -------------------------------------------------

func editParam(t *testing.T, raw, name string, edit func(string) string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(name, edit(q.Get(name)))
	u.RawQuery = q.Encode()
	return u.String()
}

func withoutParam(t *testing.T, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del(name)
	u.RawQuery = q.Encode()
	return u.String()
}

// flipBit changes one bit in the middle of a base64url value.
func flipBit(s string) string {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) == 0 {
		return s + "x"
	}
	raw[len(raw)/2] ^= 0x01
	return base64.RawURLEncoding.EncodeToString(raw)
}

// editClaims rewrites an ID token's claims. The signature no longer
// matches, which the relay does not check (it got the token from Google's
// token endpoint itself).
func editClaims(idToken string, edit func(map[string]any)) string {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return idToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return idToken
	}
	var claims map[string]any
	if json.Unmarshal(raw, &claims) != nil {
		return idToken
	}
	edit(claims)
	raw, _ = json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

// TestConfirmStoresHostedDomain: the registry keeps Google's hd from the
// ID token, which picks the mailbox's daily limits: a Workspace connect
// stores its domain (2,000 messages a day), a consumer Gmail one stores
// nothing (500), and a reconnect replaces what an earlier connect stored.
func TestConfirmStoresHostedDomain(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, email string
		// consumerLater marks the domain consumer before a reconnect.
		consumerLater bool
		wantHD        string
		wantMessages  int
	}{
		{name: "workspace", email: "alice@example.com", wantHD: "example.com", wantMessages: registry.WorkspaceDailyMessages},
		{name: "consumer gmail", email: "erin@gmail.com", wantHD: "", wantMessages: registry.ConsumerDailyMessages},
		{name: "workspace, then reconnected as consumer", email: "dan@example.net", consumerLater: true, wantHD: "", wantMessages: registry.ConsumerDailyMessages},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, setup{})
			b := h.browser()
			wantConnected(t, b.open(t, b.connectURL(t, c.email), true), c.email)
			if c.consumerLater {
				if a := h.wantRegistered(t, c.email, grantedScopes); a.HostedDomain == "" {
					t.Fatalf("the first connect stored no hd for %s", c.email)
				}
				_, domain, _ := strings.Cut(c.email, "@")
				h.sb.SetConsumerDomain(domain, true)
				again := h.browser()
				wantConnected(t, again.open(t, again.connectURL(t, c.email), true), c.email)
			}
			a := h.wantRegistered(t, c.email, grantedScopes)
			if a.HostedDomain != c.wantHD {
				t.Errorf("hosted_domain = %q, want %q", a.HostedDomain, c.wantHD)
			}
			if got := a.Limits().Messages; got != c.wantMessages {
				t.Errorf("daily message limit = %d, want %d", got, c.wantMessages)
			}
		})
	}
}
