package connect_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/connect"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

// TestConfirmErrorDescriptionNeedsState: a link to confirm with error= and
// an error_description of anyone's choosing shows only the relay's own page
// for that code, unless it ends a flow this browser started.
func TestConfirmErrorDescriptionNeedsState(t *testing.T) {
	t.Parallel()
	const planted = "Your mailbox is locked. Call +1 555 0100 to unlock it"
	h := newHarness(t, setup{})
	forged := func(extra url.Values) string {
		q := url.Values{"error": {"access_denied"}, "error_description": {planted}}
		for k, v := range extra {
			q[k] = v
		}
		return h.redirect + "?" + q.Encode()
	}
	cases := []struct {
		name  string
		url   func(b *browser) string
		shown bool
	}{
		{"no state", func(*browser) string { return forged(nil) }, false},
		{"a state this relay never issued", func(*browser) string { return forged(url.Values{"state": {"x.y.z"}}) }, false},
		{"another browser's state", func(*browser) string {
			other := h.browser()
			st, _ := url.Parse(other.start(t, nil))
			return forged(url.Values{"state": {st.Query().Get("state")}})
		}, false},
		{"this browser's state", func(b *browser) string {
			st, _ := url.Parse(b.start(t, nil))
			return forged(url.Values{"state": {st.Query().Get("state")}})
		}, true},
	}
	for _, c := range cases {
		for _, asJSON := range []bool{false, true} {
			b := h.browser()
			r := b.open(t, c.url(b), asJSON)
			if r.status != http.StatusForbidden {
				t.Errorf("%s: status %d, want 403", c.name, r.status)
			}
			text := r.message
			if !asJSON {
				text = pageText(t, r.body)
				wantText(t, r.body, "Access was not granted", "Error code: access_denied")
			} else {
				wantProblem(t, r, http.StatusForbidden, "access_denied")
			}
			if got := strings.Contains(text, "555 0100"); got != c.shown {
				t.Errorf("%s (json %v): description shown %v, want %v: %s", c.name, asJSON, got, c.shown, text)
			}
			if c.shown && !asJSON && !strings.Contains(text, "Google's own words: "+planted) {
				t.Errorf("%s: the description is not set apart as Google's words: %s", c.name, text)
			}
		}
	}
}

// TestConnectPageFormAction: the form's target never comes from the request
// path. Deployed, authorize serves every path, and a path of //evil.example
// echoed into action would send the browser to evil.example.
func TestConnectPageFormAction(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{})
	a := connect.NewAuthorize(h.opts)
	for _, path := range []string{"//evil.example", "//evil.example/authorize", "/authorize"} {
		req := httptest.NewRequest(http.MethodGet, "http://relay.example/", nil)
		req.URL.Path = path
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d", path, rec.Code)
		}
		body := rec.Body.String()
		forms := findAll(t, body, "form")
		if len(forms) != 1 {
			t.Fatalf("%s: %d forms", path, len(forms))
		}
		if action := attr(forms[0], "action"); action != "" {
			t.Errorf("%s: form action %q, want none (the page's own address)", path, action)
		}
		if strings.Contains(body, "evil.example") {
			t.Errorf("%s: the page mentions the request path", path)
		}
	}
}

// TestConfirmRefusesExtraScope: a consent link edited to ask for more than
// openid email gmail.send gets a grant of more at Google; confirm refuses it,
// revokes it and stores nothing.
func TestConfirmRefusesExtraScope(t *testing.T) {
	t.Parallel()
	for _, asJSON := range []bool{true, false} {
		h := newHarness(t, setup{})
		b := h.browser()
		consent, err := url.Parse(b.start(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		q := consent.Query()
		q.Set("scope", q.Get("scope")+" "+sandbox.ScopeMailGoogle)
		consent.RawQuery = q.Encode()
		back := b.consent(t, consent.String(), "alice@example.com")
		if got, _ := url.Parse(back); !strings.Contains(got.Query().Get("scope"), sandbox.ScopeMailGoogle) {
			t.Fatalf("the sandbox did not grant the extra scope: %s", got.Query().Get("scope"))
		}
		r := b.open(t, back, asJSON)
		if asJSON {
			wantProblem(t, r, http.StatusForbidden, "scope_excess")
		} else {
			if r.status != http.StatusForbidden {
				t.Errorf("status %d, want 403", r.status)
			}
			wantText(t, r.body, "Google granted more access than the relay may hold", "Nothing was saved", "access was withdrawn", "Error code: scope_excess")
		}
		h.wantNothingStored(t, "alice@example.com")
		h.wantRevoked(t, "alice@example.com")
	}
}
