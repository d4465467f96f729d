package connect_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/connect"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
)

// TestAuthorizeConnectPage checks the page shown before anything starts.
func TestAuthorizeConnectPage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		setup  setup
		query  string
		text   []string
		hint   string // the login_hint the form carries on
		noText []string
	}{
		{
			name: "plain",
			text: []string{
				"Connect your Gmail account",
				"Connecting lets applications of " + testOperator + " send email from your mailbox",
				"Send email on your behalf", "It cannot read, search, change or delete any of your mail",
				"Your email address", "Your password is never seen by the relay",
			},
			noText: []string{"You are connecting", "accepts only its organisation's accounts"},
		},
		{
			name: "per-mailbox link", query: "login_hint=Alice@Example.com",
			text: []string{"You are connecting alice@example.com"},
			hint: "alice@example.com",
		},
		{
			name: "restricted", setup: setup{allowedDomains: []string{"example.com"}, allowedEmails: []string{"carol@example.org"}},
			text:   []string{"This relay accepts only its organisation's accounts."},
			noText: []string{"example.com", "carol@example.org"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, c.setup)
			b := h.browser()
			r := b.open(t, h.base+"/authorize?"+c.query, false)
			if r.status != http.StatusOK {
				t.Fatalf("connect page answered %d", r.status)
			}
			wantText(t, r.body, c.text...)
			text := pageText(t, r.body)
			for _, p := range c.noText {
				if strings.Contains(text, p) {
					t.Errorf("page says %q", p)
				}
			}
			if b.cookie(stateCookie) != nil {
				t.Error("showing the page set the state cookie")
			}

			// One form, one button, that starts the flow here.
			forms := findAll(t, r.body, "form")
			buttons := findAll(t, r.body, "button")
			if len(forms) != 1 || len(buttons) != 1 || nodeText(buttons[0]) != "Connect your Gmail account" {
				t.Fatalf("want one form with one \"Connect your Gmail account\" button; got %d forms, %d buttons", len(forms), len(buttons))
			}
			// No action: the form submits to the page's own address.
			if m, a := strings.ToLower(attr(forms[0], "method")), attr(forms[0], "action"); m != "get" || a != "" {
				t.Errorf("form %s %q, want get with no action", m, a)
			}
			hidden := url.Values{}
			for _, in := range findAll(t, r.body, "input") {
				if attr(in, "type") == "hidden" {
					hidden.Add(attr(in, "name"), attr(in, "value"))
				}
			}
			want := url.Values{"start": {"1"}}
			if c.hint != "" {
				want.Set("login_hint", c.hint)
			}
			if hidden.Encode() != want.Encode() {
				t.Errorf("hidden fields %s, want %s", hidden.Encode(), want.Encode())
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
}

var pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// TestAuthorizeStart checks the cookie and the consent URL.
func TestAuthorizeStart(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		setup  setup
		hint   string
		wantLH string // login_hint sent to Google
		wantHD string // hd sent to Google
	}{
		{name: "no restriction, no hint"},
		{name: "hint", hint: "alice@example.com", wantLH: "alice@example.com"},
		{name: "hint normalised", hint: " Alice@Example.COM ", wantLH: "alice@example.com"},
		{name: "one domain", setup: setup{allowedDomains: []string{"example.com"}}, hint: "alice@example.com", wantLH: "alice@example.com", wantHD: "example.com"},
		{name: "two domains", setup: setup{allowedDomains: []string{"example.com", "example.net"}}},
		{name: "one domain and an address", setup: setup{allowedDomains: []string{"example.com"}, allowedEmails: []string{"carol@example.org"}}},
		{name: "addresses only", setup: setup{allowedEmails: []string{"carol@example.org"}}, hint: "carol@example.org", wantLH: "carol@example.org"},
		{name: "consumer domain", setup: setup{allowedDomains: []string{"gmail.com"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, c.setup)
			b := h.browser()
			q := url.Values{"start": {"1"}}
			if c.hint != "" {
				q.Set("login_hint", c.hint)
			}
			resp := b.get(t, h.base+"/authorize?"+q.Encode(), false)
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}

			var ck *http.Cookie
			for _, x := range resp.Cookies() {
				if x.Name == stateCookie {
					ck = x
				}
			}
			if ck == nil {
				t.Fatal("no state cookie")
			}
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" || ck.Secure || ck.MaxAge != int(oauth.StateTTL.Seconds()) {
				t.Errorf("cookie HttpOnly=%v SameSite=%v Path=%q Domain=%q Secure=%v MaxAge=%d", ck.HttpOnly, ck.SameSite, ck.Path, ck.Domain, ck.Secure, ck.MaxAge)
			}

			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != h.base+sandbox.AuthPath {
				t.Errorf("redirected to %s, want the consent endpoint", got)
			}
			got := loc.Query()
			want := map[string]string{
				"client_id": testClientID, "redirect_uri": h.redirect, "response_type": "code",
				"scope":       "openid email https://www.googleapis.com/auth/gmail.send",
				"access_type": "offline", "prompt": "consent",
				"code_challenge_method": "S256",
			}
			if c.wantLH != "" {
				want["login_hint"] = c.wantLH
			}
			if c.wantHD != "" {
				want["hd"] = c.wantHD
			}
			for k, v := range want {
				if got.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, got.Get(k), v)
				}
			}
			var keys []string
			for k := range got {
				keys = append(keys, k)
			}
			for _, k := range []string{"state", "code_challenge"} {
				want[k] = ""
			}
			for _, k := range keys {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected parameter %s", k)
				}
			}
			if !pkceChallenge.MatchString(got.Get("code_challenge")) {
				t.Error("code_challenge is not an S256 challenge")
			}
			if got.Get("state") == "" || got.Get("state") == ck.Value {
				t.Error("the state is missing or equals the cookie")
			}

			// Each start is a fresh state.
			if again := b.start(t, nil); strings.Contains(again, url.QueryEscape(got.Get("state"))) {
				t.Error("a second start reused the state")
			}
		})
	}
}

// TestAuthorizeRefuses checks what authorize turns away before Google.
func TestAuthorizeRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		setup  setup
		query  string
		status int
		code   string
		text   []string
	}{
		{name: "not an address", query: "login_hint=alice", status: 400, code: "invalid_login_hint", text: []string{"This connect link is malformed"}},
		{name: "a display name", query: "login_hint=" + url.QueryEscape("Alice <alice@example.com>"), status: 400, code: "invalid_login_hint"},
		{name: "two addresses", query: "login_hint=" + url.QueryEscape("alice@example.com,bob@example.com"), status: 400, code: "invalid_login_hint"},
		{name: "not an address, starting", query: "start=1&login_hint=alice", status: 400, code: "invalid_login_hint"},
		{
			name: "outside the domains", setup: setup{allowedDomains: []string{"example.com"}},
			query: "login_hint=bob@other.example", status: 403, code: "account_not_allowed",
			text: []string{"bob@other.example cannot be connected: this relay accepts only its organisation's accounts."},
		},
		{
			name: "outside the domains, starting", setup: setup{allowedDomains: []string{"example.com"}},
			query: "start=1&login_hint=bob@other.example", status: 403, code: "account_not_allowed",
		},
		{
			name: "outside the addresses", setup: setup{allowedEmails: []string{"carol@example.org"}},
			query: "start=1&login_hint=dave@example.org", status: 403, code: "account_not_allowed",
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
				r := b.open(t, h.base+"/authorize?"+c.query, asJSON)
				if asJSON {
					wantProblem(t, r, c.status, c.code)
				} else {
					if r.status != c.status {
						t.Errorf("status %d, want %d", r.status, c.status)
					}
					wantText(t, r.body, append([]string{"Not connected", "Error code: " + c.code}, c.text...)...)
				}
				if b.cookie(stateCookie) != nil {
					t.Error("a refused start set the state cookie")
				}
			})
		}
	}

	t.Run("POST", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, setup{})
		for _, path := range []string{"/authorize", "/confirm"} {
			req, _ := http.NewRequest(http.MethodPost, h.base+path+"?start=1", nil)
			req.Header.Set("Accept", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("POST %s = %d, Allow %q", path, resp.StatusCode, resp.Header.Get("Allow"))
			}
			wantErrorShape(t, body)
		}
	})
}

// TestCookiesOnHTTPS checks the __Host- cookies of a deployed relay: set by
// authorize, read and cleared by confirm.
func TestCookiesOnHTTPS(t *testing.T) {
	t.Parallel()
	oc, err := oauth.New(oauth.Config{
		ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURL: "https://relay.example.com/confirm",
		AuthURL:     "https://accounts.example/o/oauth2/v2/auth", TokenURL: "https://oauth2.example/token", RevokeURL: "https://oauth2.example/revoke",
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := connect.Options{OAuth: oc}

	quiet := logging.WithLogger(context.Background(), slog.New(slog.DiscardHandler))
	w := httptest.NewRecorder()
	connect.NewAuthorize(opts).ServeHTTP(w, httptest.NewRequestWithContext(quiet, http.MethodGet, "https://relay.example.com/authorize?start=1", nil))
	if w.Code != http.StatusFound {
		t.Fatalf("status %d", w.Code)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("%d cookies, want 1", len(cookies))
	}
	ck := cookies[0]
	if ck.Name != "__Host-gmail-relay-state" || !ck.Secure || !ck.HttpOnly || ck.Path != "/" || ck.Domain != "" || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie %s Secure=%v HttpOnly=%v Path=%q Domain=%q SameSite=%v", ck.Name, ck.Secure, ck.HttpOnly, ck.Path, ck.Domain, ck.SameSite)
	}
	state := mustQuery(t, w.Header().Get("Location")).Get("state")

	cases := []struct {
		name   string
		cookie *http.Cookie
		query  string
		code   string
		clears bool
	}{
		// Without its prefix the cookie is not the relay's.
		{name: "unprefixed cookie ignored", cookie: &http.Cookie{Name: stateCookie, Value: ck.Value}, query: "state=" + state + "&code=x", code: "cookie_missing"},
		{name: "prefixed cookie read", cookie: &http.Cookie{Name: ck.Name, Value: "another"}, query: "state=" + state + "&code=x", code: "state_other_browser"},
		{name: "cleared with its prefix", cookie: ck, query: "error=access_denied&state=" + state, code: "access_denied", clears: true},
		// A forged error link must not end a sign-in it did not start.
		{name: "forged error keeps the flow", cookie: &http.Cookie{Name: ck.Name, Value: "another"}, query: "error=access_denied&state=" + state, code: "access_denied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequestWithContext(quiet, http.MethodGet, "https://relay.example.com/confirm?"+c.query, nil)
			req.Header.Set("Accept", "application/json")
			if c.cookie != nil {
				req.AddCookie(c.cookie)
			}
			w := httptest.NewRecorder()
			connect.NewConfirm(opts).ServeHTTP(w, req)
			if !strings.Contains(w.Body.String(), `"code": "`+c.code+`"`) {
				t.Errorf("answer %d %s, want code %s", w.Code, w.Body, c.code)
			}
			set := w.Result().Cookies()
			cleared := slices.ContainsFunc(set, func(x *http.Cookie) bool {
				return x.Name == "__Host-gmail-relay-state" && x.MaxAge < 0 && x.Secure && x.Path == "/"
			})
			if cleared != c.clears {
				t.Errorf("state cookie cleared = %v, want %v (Set-Cookie %v)", cleared, c.clears, w.Header().Values("Set-Cookie"))
			}
		})
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}
