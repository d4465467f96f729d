package oauth

import (
	"encoding/base64"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestStateVerify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	keys, err := NewStateKeys("client-secret", clock)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := keys.Issue()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := keys.Issue()
	flip := func(s string) string {
		raw, _ := base64.RawURLEncoding.DecodeString(s)
		raw[5] ^= 1
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	otherKeys, _ := NewStateKeys("another-secret", clock)
	late, _ := NewStateKeys("client-secret", func() time.Time { return now.Add(StateTTL) })

	cases := []struct {
		name          string
		keys          *StateKeys
		state, cookie string
		want          error
	}{
		{"valid", keys, iss.State, iss.Cookie, nil},
		{"missing state", keys, "", iss.Cookie, ErrStateMissing},
		{"garbage", keys, "not-a-state", iss.Cookie, ErrStateTampered},
		{"bit flipped", keys, flip(iss.State), iss.Cookie, ErrStateTampered},
		{"truncated", keys, iss.State[:20], iss.Cookie, ErrStateTampered},
		{"non-canonical base64", keys, nonCanonical(iss.State), iss.Cookie, ErrStateTampered},
		// base64's decoders skip CR and LF, even in Strict mode (found by
		// FuzzVerifyState: testdata/fuzz/FuzzVerifyState/991d6e8d4a9dbcd2).
		{"line feed inside", keys, iss.State[:20] + "\n" + iss.State[20:], iss.Cookie, ErrStateTampered},
		{"carriage return at the end", keys, iss.State + "\r", iss.Cookie, ErrStateTampered},
		{"signed by another secret", otherKeys, iss.State, iss.Cookie, ErrStateTampered},
		{"expired", late, iss.State, iss.Cookie, ErrStateExpired},
		{"no cookie", keys, iss.State, "", ErrCookieMissing},
		{"other browser", keys, iss.State, other.Cookie, ErrCookieMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v, err := c.keys.Verify(c.state, c.cookie)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
			if c.want == nil && v.Verifier != iss.Verifier {
				t.Errorf("verifier not rederived: %q vs %q", v.Verifier, iss.Verifier)
			}
		})
	}
}

// nonCanonical respells s with an unused low bit of its last character
// flipped: lenient decoders read the same bytes (found by FuzzVerifyState).
func nonCanonical(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last^1])
}

func TestStateShape(t *testing.T) {
	t.Parallel()
	keys, _ := NewStateKeys("s", nil)
	a, _ := keys.Issue()
	b, _ := keys.Issue()
	if a.State == b.State || a.Cookie == b.Cookie || a.Verifier == b.Verifier {
		t.Fatal("two states share a value")
	}
	if !regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`).MatchString(a.Verifier) {
		t.Errorf("verifier %q is not an RFC 7636 verifier", a.Verifier)
	}
	if url.QueryEscape(a.State) != a.State {
		t.Errorf("state %q needs escaping", a.State)
	}
	if !a.Expires.After(time.Now().Add(StateTTL - time.Minute)) {
		t.Errorf("expiry %v too early", a.Expires)
	}
	if Fingerprint(a.State) == Fingerprint(b.State) {
		t.Error("fingerprints collide")
	}
}

func TestConsentURL(t *testing.T) {
	t.Parallel()
	c, err := New(Config{ClientID: "cid", ClientSecret: "sec", RedirectURL: "http://localhost:8080/confirm",
		AuthURL: "https://accounts.example/auth", TokenURL: "https://t.example/token", RevokeURL: "https://t.example/revoke"})
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := c.Keys().Issue()
	u, err := url.Parse(c.ConsentURL(iss, "alice@example.com", "example.com"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	want := map[string]string{
		"client_id": "cid", "redirect_uri": "http://localhost:8080/confirm", "response_type": "code",
		"scope":       "openid email https://www.googleapis.com/auth/gmail.send",
		"access_type": "offline", "prompt": "consent",
		"code_challenge_method": "S256", "login_hint": "alice@example.com", "hd": "example.com", "state": iss.State,
	}
	for k, v := range want {
		if got := q.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// include_granted_scopes would fold earlier grants into this one.
	if q.Has("include_granted_scopes") {
		t.Errorf("include_granted_scopes = %q, want it absent", q.Get("include_granted_scopes"))
	}
	if q.Get("code_challenge") == "" {
		t.Error("no code_challenge")
	}
}
