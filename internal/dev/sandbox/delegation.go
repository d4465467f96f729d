package sandbox

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Domain-wide delegation. A Workspace super admin authorises a service
// account's client ID (its numeric unique ID) for a list of scopes under
// Admin console → Security → Access and data control → API controls →
// Domain-wide delegation; the service account may then act as any user of
// the domain. The relay signs the assertion keylessly through IAM
// Credentials signJwt (signjwt.go) and trades it at the token endpoint
// (the assertion grants below).

// Delegation is one domain's domain-wide delegation entry.
type Delegation struct {
	Domain string `json:"domain"`
	// ClientID is the authorised client ID (ServiceAccountClientID of the
	// service account).
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
	// Enabled false is the entry deleted in the Admin console.
	Enabled bool `json:"enabled"`
}

// User states for SetDelegatedUser. Every address of a delegated domain is
// an active user unless told otherwise, as every address may consent.
const (
	UserActive    = "active"
	UserUnknown   = "unknown"
	UserSuspended = "suspended"
)

// delegationState is guarded by Server.mu. It is configuration, like the
// registered clients, so Reset keeps it; it is not persisted: make dev sets
// it at every start.
type delegationState struct {
	domains map[string]Delegation // by domain
	users   map[string]string     // email → UserUnknown or UserSuspended
}

// ServiceAccountClientID is the numeric unique ID (the OAuth client ID) of
// the service account email in the sandbox: 21 digits, like Google's,
// derived from the address so that it survives restarts.
func ServiceAccountClientID(email string) string {
	sum := sha256.Sum256([]byte("gmail-relay-sandbox-sa\x00" + normalizeEmail(email)))
	return fmt.Sprintf("1%020d", binary.BigEndian.Uint64(sum[:8]))
}

// SetDelegation records (or, with Enabled false, withdraws) a domain's
// delegation entry. Tokens already issued stay valid until they expire;
// ExpireAccessTokens ends them early.
func (s *Server) SetDelegation(d Delegation) error {
	d.Domain = strings.ToLower(strings.TrimSpace(d.Domain))
	if d.Domain == "" || strings.Contains(d.Domain, "@") {
		return errors.New("sandbox: delegation needs a domain, such as example.net")
	}
	if d.Enabled && d.ClientID == "" {
		return errors.New("sandbox: delegation needs the client ID it authorises")
	}
	d.Scopes = slices.Clone(d.Scopes)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleg.domains == nil {
		s.deleg.domains = make(map[string]Delegation)
	}
	s.deleg.domains[d.Domain] = d
	s.log.Info("sandbox: domain-wide delegation set", "domain", d.Domain, "client_id", d.ClientID, "enabled", d.Enabled)
	return nil
}

// SetDelegatedUser marks a user of a delegated domain unknown (never
// created, or deleted), suspended, or active again.
func (s *Server) SetDelegatedUser(email, state string) error {
	email = normalizeEmail(email)
	if !strings.Contains(email, "@") {
		return fmt.Errorf("sandbox: %q is not an email address", email)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleg.users == nil {
		s.deleg.users = make(map[string]string)
	}
	switch state {
	case UserActive:
		delete(s.deleg.users, email)
	case UserUnknown, UserSuspended:
		s.deleg.users[email] = state
	default:
		return fmt.Errorf("sandbox: user state %q is not one of active, unknown, suspended", state)
	}
	return nil
}

// Google's answers to an assertion it will not honour.
var (
	// Domain-wide delegation not authorised for this client ID in the
	// user's domain, or not for the scopes asked. Body whole in
	// https://github.com/googleapis/google-auth-library-ruby/issues/210 and
	// https://github.com/googleapis/google-api-python-client/issues/792;
	// HTTP 401 in https://github.com/hlavki/g-suite-identity-sync/issues/7
	// ("Response-Code: 401") and
	// https://github.com/googleapis/google-api-php-client/issues/950.
	errDelegationDenied = &oauthError{http.StatusUnauthorized, "unauthorized_client",
		"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}
	// The subject does not exist (Google's table of JWT error codes:
	// "invalid_grant | Invalid email or User ID.",
	// https://developers.google.com/identity/protocols/oauth2/service-account;
	// bodies seen carry no final period). Suspended users get the same
	// answer in the reports found, which is unverified.
	errUnknownSubject = &oauthError{http.StatusBadRequest, "invalid_grant", "Invalid email or User ID"}
	// A bad signature or lifetime: the same table's rows.
	errJWTSignature = &oauthError{http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature."}
	errJWTLifetime  = &oauthError{http.StatusBadRequest, "invalid_grant",
		"Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your 'iat' and 'exp' values and use a clock with skew to account for clock differences between systems."}
	errJWTScope = &oauthError{http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided."}
)

// assertionAudiences are the aud values Google's token endpoint accepts.
var assertionAudiences = []string{"https://oauth2.googleapis.com/token", "https://www.googleapis.com/oauth2/v4/token", "https://accounts.google.com/o/oauth2/token"}

// assertionClaims are the claims of a service account's assertion.
type assertionClaims struct {
	Iss   string `json:"iss"`
	Scope string `json:"scope"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// assertionResponse is the token endpoint's answer to an assertion grant:
// no refresh token, and no scope.
type assertionResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	TokenType   string `json:"token_type"`
}

// isAssertionGrant reports whether the form is a JWT-bearer grant, in
// either of the forms Google takes: RFC 7523's grant type, and the older
// grant_type=assertion with assertion_type, which
// google.golang.org/api/impersonate (v0.309.0, user.go) sends.
func isAssertionGrant(r *http.Request) bool {
	switch r.PostForm.Get("grant_type") {
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		return true
	case "assertion":
		return r.PostForm.Get("assertion_type") == "http://oauth.net/grant_type/jwt/1.0/bearer"
	}
	return false
}

// assertionGrant trades a signed assertion for the subject's access token.
// Assertion grants carry no client authentication: the signature is it.
func (s *Server) assertionGrant(w http.ResponseWriter, r *http.Request) {
	jwt := r.PostForm.Get("assertion")
	if jwt == "" {
		writeOAuthError(w, missingParam("assertion"))
		return
	}
	var c assertionClaims
	if !s.verifyJWT(jwt, &c) {
		writeOAuthError(w, errJWTSignature)
		return
	}
	now := s.now()
	iat, exp := time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
	if !slices.Contains(assertionAudiences, c.Aud) || exp.Sub(iat) > time.Hour || !exp.After(now) || iat.After(now.Add(5*time.Minute)) {
		writeOAuthError(w, errJWTLifetime)
		return
	}
	scopes := strings.Fields(c.Scope)
	if len(scopes) == 0 {
		writeOAuthError(w, errJWTScope)
		return
	}
	clientID := ServiceAccountClientID(c.Iss)
	if c.Sub == "" {
		// The service account as itself: not something the relay asks.
		writeOAuthError(w, errDelegationDenied)
		return
	}
	sub := normalizeEmail(c.Sub)
	_, domain, _ := strings.Cut(sub, "@")

	s.mu.Lock()
	d, ok := s.deleg.domains[domain]
	state := s.deleg.users[sub]
	switch {
	case !ok || !d.Enabled || d.ClientID != clientID || !allIn(scopes, d.Scopes):
		s.mu.Unlock()
		s.stats.delegationDenied.Add(1)
		s.log.Info("sandbox: domain-wide delegation refused", "client_id", clientID, "domain", domain)
		writeOAuthError(w, errDelegationDenied)
		return
	case state == UserUnknown || state == UserSuspended:
		s.mu.Unlock()
		s.stats.delegationDenied.Add(1)
		s.log.Info("sandbox: delegated subject is not an active user", "email", sub, "state", state)
		writeOAuthError(w, errUnknownSubject)
		return
	}
	resp := s.issueLocked(clientID, sub, scopes, newFamily(), false, "", now)
	s.mu.Unlock()
	s.saveOrLog()
	s.stats.delegatedTokens.Add(1)
	s.log.Info("sandbox: delegated access token issued", "client_id", clientID, "email", sub)
	writeJSON(w, http.StatusOK, assertionResponse{AccessToken: resp.AccessToken, ExpiresIn: resp.ExpiresIn, TokenType: "Bearer"})
}

func allIn(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func (s *Server) ctlDelegation(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Delegation
		// ServiceAccount may name the service account instead of its
		// client ID.
		ServiceAccount string `json:"service_account"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	d := req.Delegation
	if d.ClientID == "" && req.ServiceAccount != "" {
		d.ClientID = ServiceAccountClientID(req.ServiceAccount)
	}
	if err := s.SetDelegation(d); err != nil {
		writeJSON(w, http.StatusBadRequest, ctlError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) ctlDelegatedUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email string `json:"email"`
		State string `json:"state"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if err := s.SetDelegatedUser(req.Email, req.State); err != nil {
		writeJSON(w, http.StatusBadRequest, ctlError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, req)
}
