package oauth

import (
	"slices"
	"strings"
	"testing"
)

// TestExplainInvalidGrant: each invalid_grant variant Google sends has its
// own explanation, and only the dead-token ones name the 7-day expiry of
// Testing apps.
func TestExplainInvalidGrant(t *testing.T) {
	t.Parallel()
	cases := []struct {
		desc, subtype string
		want          string
		testing       bool
	}{
		{DescriptionRevoked, "", "removed the app's access", true},
		{DescriptionBadRequest, "", "died some time ago", true},
		{DescriptionInvalidRAPT, "invalid_rapt", "session control", false},
		{"reauth related error", "rapt_required", "session control", false},
		{"Invalid JWT Signature.", "", "Invalid JWT Signature.", false},
	}
	for _, c := range cases {
		p := ExplainInvalidGrant(c.desc, c.subtype)
		text := p.Message + " " + p.Fix
		if p.Code != "reauth_required" || !strings.Contains(text, c.want) || !strings.Contains(text, "reconnect") {
			t.Errorf("%q/%q: %+v; want %q and a reconnect", c.desc, c.subtype, p, c.want)
		}
		if got := strings.Contains(text, "7 days"); got != c.testing {
			t.Errorf("%q: mentions the Testing expiry: %v, want %v", c.desc, got, c.testing)
		}
	}
}

// TestExplainAuthErrorCarriesNoLinkText: the explanation of error= is the
// relay's own; a code that is not shaped like one is not echoed.
func TestExplainAuthErrorCarriesNoLinkText(t *testing.T) {
	t.Parallel()
	cases := []struct{ code, wantCode string }{
		{"access_denied", "access_denied"},
		{"invalid_scope", "invalid_scope"},
		{"server_error", "server_error"},
		{"Your account is locked. Call +1 555 0100", "google_error"},
		{"<script>", "google_error"},
	}
	for _, c := range cases {
		p := ExplainAuthError(c.code)
		if p.Code != c.wantCode || p.GoogleSays != "" || p.Message == "" || p.Fix == "" {
			t.Errorf("%q: %+v, want code %q, a message and a fix, and no Google text", c.code, p, c.wantCode)
		}
		if text := p.Title + p.Message + p.Fix; strings.Contains(text, "555") || strings.Contains(text, "<script>") {
			t.Errorf("%q: the link's text reached the explanation: %s", c.code, text)
		}
	}
}

// TestExtraScopes: only openid, email (either spelling) and gmail.send may
// be held.
func TestExtraScopes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		granted []string
		want    []string
	}{
		{[]string{"openid", "https://www.googleapis.com/auth/userinfo.email", ScopeGmailSend}, nil},
		{[]string{"openid", "email", ScopeGmailSend}, nil},
		{[]string{"openid", "email", ScopeGmailSend, "https://mail.google.com/"}, []string{"https://mail.google.com/"}},
		{[]string{ScopeGmailSend, "https://www.googleapis.com/auth/gmail.readonly"}, []string{"https://www.googleapis.com/auth/gmail.readonly"}},
	}
	for _, c := range cases {
		g := &Grant{Scopes: c.granted}
		if got := g.ExtraScopes(); !slices.Equal(got, c.want) {
			t.Errorf("%v: extra %v, want %v", c.granted, got, c.want)
		}
	}
}
