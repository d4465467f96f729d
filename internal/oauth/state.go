package oauth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// StateTTL is how long a consent round trip may take.
const StateTTL = 10 * time.Minute

// The state parameter is stateless on the server: it carries a random nonce,
// its expiry and a hash of a random value held in an HttpOnly cookie, all
// HMAC-signed with a key derived from the client secret. The PKCE verifier is
// derived from the nonce with a second derived key, so nothing needs storing
// between authorize and confirm.
const (
	stateVersion = 1
	nonceLen     = 16 // 128 bits
	bindingLen   = 16
	macLen       = 32
	payloadLen   = 1 + nonceLen + 8 + bindingLen
	stateLen     = payloadLen + macLen
)

// Errors from VerifyState; confirm turns each into its own page.
var (
	ErrStateMissing   = errors.New("oauth: state is missing")
	ErrStateTampered  = errors.New("oauth: state is malformed or its signature does not match")
	ErrStateExpired   = errors.New("oauth: state has expired")
	ErrCookieMissing  = errors.New("oauth: the browser did not return the state cookie")
	ErrCookieMismatch = errors.New("oauth: the state belongs to another browser")
)

// StateKeys signs states and derives PKCE verifiers.
type StateKeys struct {
	mac      []byte
	verifier []byte
	now      func() time.Time
}

// NewStateKeys derives both keys from the OAuth client secret with HKDF, so a
// deployment has no extra secret to manage and rotating the client secret
// invalidates outstanding states.
func NewStateKeys(clientSecret string, now func() time.Time) (*StateKeys, error) {
	if clientSecret == "" {
		return nil, errors.New("oauth.NewStateKeys: empty client secret")
	}
	if now == nil {
		now = time.Now
	}
	mac, err := hkdf.Key(sha256.New, []byte(clientSecret), nil, "gmail-relay oauth state mac v1", 32)
	if err != nil {
		return nil, fmt.Errorf("oauth.NewStateKeys: %w", err)
	}
	ver, err := hkdf.Key(sha256.New, []byte(clientSecret), nil, "gmail-relay pkce verifier v1", 32)
	if err != nil {
		return nil, fmt.Errorf("oauth.NewStateKeys: %w", err)
	}
	return &StateKeys{mac: mac, verifier: ver, now: now}, nil
}

// Issued is a new state with what goes with it.
type Issued struct {
	State    string // the OAuth state parameter
	Cookie   string // the value of the binding cookie
	Verifier string // the PKCE code verifier (43 characters)
	Expires  time.Time
}

// Issue makes a fresh state bound to a fresh cookie value.
func (k *StateKeys) Issue() (*Issued, error) {
	var nonce [nonceLen]byte
	var cookie [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("oauth.Issue: %w", err)
	}
	if _, err := rand.Read(cookie[:]); err != nil {
		return nil, fmt.Errorf("oauth.Issue: %w", err)
	}
	return k.issue(nonce, cookie), nil
}

// issue builds the state for a given nonce and cookie; tests and the fuzzer
// use it with fixed values.
func (k *StateKeys) issue(nonce [nonceLen]byte, cookie [16]byte) *Issued {
	cookieValue := base64.RawURLEncoding.EncodeToString(cookie[:])
	exp := k.now().Add(StateTTL).Truncate(time.Second)

	buf := make([]byte, 0, stateLen)
	buf = append(buf, stateVersion)
	buf = append(buf, nonce[:]...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(exp.Unix()))
	buf = append(buf, binding(cookieValue)...)
	buf = append(buf, k.sign(buf)...)
	return &Issued{
		State:    base64.RawURLEncoding.EncodeToString(buf),
		Cookie:   cookieValue,
		Verifier: k.deriveVerifier(nonce[:]),
		Expires:  exp,
	}
}

// Verified is what a good state proves.
type Verified struct {
	Verifier string
	// Fingerprint identifies this state without revealing it, so a used
	// state can be recognised (replay) without keeping the state itself.
	Fingerprint string
}

// Verify checks the state's signature and expiry, then that cookie is the
// value it was bound to. The checks run in that order so an attacker learns
// nothing about the cookie from a forged state.
func (k *StateKeys) Verify(state, cookie string) (*Verified, error) {
	if state == "" {
		return nil, ErrStateMissing
	}
	// Strict, and no line breaks: a non-canonical encoding of the same
	// bytes would otherwise be a second valid spelling of one state, with a
	// fingerprint of its own, and dodge the used-state check. Strict still
	// skips CR and LF, so they are refused here (found by FuzzVerifyState).
	if strings.ContainsAny(state, "\r\n") {
		return nil, ErrStateTampered
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(state)
	if err != nil || len(raw) != stateLen || raw[0] != stateVersion {
		return nil, ErrStateTampered
	}
	payload, mac := raw[:payloadLen], raw[payloadLen:]
	if !hmac.Equal(mac, k.sign(payload)) {
		return nil, ErrStateTampered
	}
	nonce := payload[1 : 1+nonceLen]
	exp := time.Unix(int64(binary.BigEndian.Uint64(payload[1+nonceLen:])), 0)
	if !k.now().Before(exp) {
		return nil, ErrStateExpired
	}
	if cookie == "" {
		return nil, ErrCookieMissing
	}
	if subtle.ConstantTimeCompare(binding(cookie), payload[1+nonceLen+8:]) != 1 {
		return nil, ErrCookieMismatch
	}
	return &Verified{Verifier: k.deriveVerifier(nonce), Fingerprint: Fingerprint(state)}, nil
}

// Fingerprint is a short one-way digest of a state, safe to put in a cookie
// that marks the state as used.
func Fingerprint(state string) string {
	sum := sha256.Sum256([]byte("used:" + state))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func (k *StateKeys) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write(payload)
	return m.Sum(nil)
}

func (k *StateKeys) deriveVerifier(nonce []byte) string {
	m := hmac.New(sha256.New, k.verifier)
	m.Write(nonce)
	// 32 bytes encode to 43 base64url characters, the minimum RFC 7636 allows
	// and all from its unreserved set.
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func binding(cookie string) []byte {
	sum := sha256.Sum256([]byte("bind:" + cookie))
	return sum[:bindingLen]
}
