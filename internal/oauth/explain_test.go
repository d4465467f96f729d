package oauth

import (
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
