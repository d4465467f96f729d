package sandbox

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// tokenResponse is the success body of Google's token endpoint, in its
// field order.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	IDToken      string `json:"id_token,omitempty"`
}

// oauthError is the error body of the token and revocation endpoints.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

// Google's exact error answers.
var (
	errNoClientID = &oauthError{http.StatusBadRequest, "invalid_request", "Could not determine client ID from request."}
	errNoClient   = &oauthError{http.StatusUnauthorized, "invalid_client", "The OAuth client was not found."}
	errBadSecret  = &oauthError{http.StatusUnauthorized, "invalid_client", "Unauthorized"}
	errBadRequest = &oauthError{http.StatusBadRequest, "invalid_grant", "Bad Request"}
	errMalformed  = &oauthError{http.StatusBadRequest, "invalid_grant", "Malformed auth code."}
	errRedirect   = &oauthError{http.StatusBadRequest, "redirect_uri_mismatch", "Bad Request"}
	errNoVerifier = &oauthError{http.StatusBadRequest, "invalid_grant", "Missing code verifier."}
	errVerifier   = &oauthError{http.StatusBadRequest, "invalid_grant", "Invalid code verifier."}
	errNoPKCE     = &oauthError{http.StatusBadRequest, "invalid_grant", "code_verifier or verifier is not needed."}
	errDeadToken  = &oauthError{http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked."}
	errOtherOwner = &oauthError{http.StatusBadRequest, "unauthorized_client", "Unauthorized"}
	errRevokeBad  = &oauthError{http.StatusBadRequest, "invalid_token", "Token expired or revoked"}
)

func missingParam(name string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", "Missing required parameter: " + name}
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	writeJSON(w, e.Status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeOAuthError(w, &oauthError{http.StatusMethodNotAllowed, "invalid_request", "Method not allowed: " + r.Method})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, &oauthError{http.StatusBadRequest, "invalid_request", "Invalid request body."})
		return
	}
	if isAssertionGrant(r) {
		s.assertionGrant(w, r)
		return
	}
	c, oerr := s.authenticateClient(r)
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "authorization_code":
		s.exchangeCode(w, r, c)
	case "refresh_token":
		s.refresh(w, r, c)
	case "":
		writeOAuthError(w, missingParam("grant_type"))
	default:
		writeOAuthError(w, &oauthError{http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: " + gt})
	}
}

// authenticateClient accepts both ways Google does: HTTP Basic (with the
// form-encoding RFC 6749 §2.3.1 asks for) and client_id/client_secret in the
// body.
func (s *Server) authenticateClient(r *http.Request) (Client, *oauthError) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return Client{}, errBadSecret
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		return Client{}, errNoClientID
	}
	s.mu.Lock()
	c, ok := s.st.Clients[id]
	s.mu.Unlock()
	if !ok {
		return Client{}, errNoClient
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return Client{}, errBadSecret
	}
	return c, nil
}

func (s *Server) exchangeCode(w http.ResponseWriter, r *http.Request, c Client) {
	code := r.PostForm.Get("code")
	if code == "" {
		writeOAuthError(w, missingParam("code"))
		return
	}
	redirect := r.PostForm.Get("redirect_uri")
	if redirect == "" {
		writeOAuthError(w, missingParam("redirect_uri"))
		return
	}
	if !wellFormedCode(code) {
		writeOAuthError(w, errMalformed)
		return
	}
	verifier := r.PostForm.Get("code_verifier")
	now := s.now()

	s.mu.Lock()
	ac, ok := s.codes[hashToken(code)]
	switch {
	case !ok || !now.Before(ac.Expiry) || ac.ClientID != c.ID:
		s.mu.Unlock()
		writeOAuthError(w, errBadRequest)
		return
	case ac.Used:
		// A replayed code may mean it was stolen: Google revokes what the
		// first exchange issued.
		n := s.revokeFamilyLocked(ac.Family)
		s.mu.Unlock()
		s.saveOrLog()
		s.log.Warn("sandbox: authorization code reused; tokens it issued are revoked", "client_id", c.ID, "email", ac.Email, "revoked", n)
		writeOAuthError(w, errBadRequest)
		return
	case redirect != ac.RedirectURI:
		s.mu.Unlock()
		writeOAuthError(w, errRedirect)
		return
	}
	if oerr := checkVerifier(ac, verifier); oerr != nil {
		s.mu.Unlock()
		writeOAuthError(w, oerr)
		return
	}
	ac.Used = true
	ac.Family = newFamily()
	resp := s.issueLocked(c.ID, ac.Email, ac.Scopes, ac.Family, ac.IssueRefresh, ac.Nonce, now)
	s.mu.Unlock()
	s.saveOrLog()

	s.stats.tokenExchanges.Add(1)
	s.log.Info("sandbox: code exchanged", "client_id", c.ID, "email", ac.Email, "refresh_token", resp.RefreshToken != "", "id_token", resp.IDToken != "")
	writeJSON(w, http.StatusOK, resp)
}

func checkVerifier(ac *authCode, verifier string) *oauthError {
	if ac.Challenge == "" {
		if verifier != "" {
			return errNoPKCE
		}
		return nil
	}
	if verifier == "" {
		return errNoVerifier
	}
	if !pkceValue.MatchString(verifier) {
		return errVerifier
	}
	want := verifier
	if ac.Method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(ac.Challenge)) != 1 {
		return errVerifier
	}
	return nil
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request, c Client) {
	tok := r.PostForm.Get("refresh_token")
	if tok == "" {
		writeOAuthError(w, missingParam("refresh_token"))
		return
	}
	now := s.now()
	h := hashToken(tok)

	s.mu.Lock()
	rt, ok := s.st.Refresh[h]
	if ok && s.opts.RefreshTokenTTL > 0 && !now.Before(rt.IssuedAt.Add(s.opts.RefreshTokenTTL)) {
		delete(s.st.Refresh, h)
		s.stateV++
		ok = false
	}
	if !ok {
		s.mu.Unlock()
		writeOAuthError(w, errDeadToken)
		return
	}
	if rt.ClientID != c.ID {
		s.mu.Unlock()
		writeOAuthError(w, errOtherOwner)
		return
	}
	if inj := s.takeInjectionLocked(rt.Email, EndpointToken); inj != nil {
		s.mu.Unlock()
		resp := inj.resp
		if resp == nil {
			r := faultResponse(inj.fault, now, 0, c.ID)
			resp = &r
		}
		s.log.Info("sandbox: injected token endpoint answer", "client_id", c.ID, "email", rt.Email, "status", resp.Status)
		resp.write(w)
		return
	}
	resp := s.issueLocked(c.ID, rt.Email, rt.Scopes, rt.Family, false, "", now)
	if s.knobs.rotate {
		// The new token replaces the old, which stops working at once; a
		// client that does not save the new one loses the account.
		nt := newRefreshToken()
		delete(s.st.Refresh, h)
		s.st.Seq++
		s.st.Refresh[hashToken(nt)] = &refreshToken{
			Seq: s.st.Seq, Family: rt.Family, ClientID: rt.ClientID, Email: rt.Email,
			Scopes: rt.Scopes, IssuedAt: now,
		}
		resp.RefreshToken = nt
	}
	email := rt.Email
	s.mu.Unlock()
	s.saveOrLog()

	s.stats.tokenRefreshes.Add(1)
	s.log.Info("sandbox: token refreshed", "client_id", c.ID, "email", email, "rotated", resp.RefreshToken != "")
	writeJSON(w, http.StatusOK, resp)
}

// issueLocked mints an access token (and optionally a refresh token) for a
// family and builds the token response.
func (s *Server) issueLocked(clientID, email string, scopes []string, family string, withRefresh bool, nonce string, now time.Time) tokenResponse {
	at := newAccessToken()
	s.st.Access[hashToken(at)] = &accessToken{
		Family: family, ClientID: clientID, Email: email,
		Scopes: slices.Clone(scopes), Expiry: now.Add(accessLifetime),
	}
	resp := tokenResponse{
		AccessToken: at,
		ExpiresIn:   int(accessLifetime / time.Second),
		Scope:       strings.Join(scopes, " "),
		TokenType:   "Bearer",
	}
	if withRefresh {
		rt := newRefreshToken()
		s.st.Seq++
		s.st.Refresh[hashToken(rt)] = &refreshToken{
			Seq: s.st.Seq, Family: family, ClientID: clientID, Email: email,
			Scopes: slices.Clone(scopes), IssuedAt: now,
		}
		resp.RefreshToken = rt
		s.capRefreshTokensLocked(clientID, email)
	}
	if slices.Contains(scopes, ScopeOpenID) {
		resp.IDToken = s.signIDTokenLocked(clientID, email, scopes, at, nonce, now)
	}
	s.stateV++
	return resp
}

// signIDTokenLocked makes an RS256 JWT with Google's claims.
func (s *Server) signIDTokenLocked(clientID, email string, scopes []string, accessTok, nonce string, now time.Time) string {
	claims := map[string]any{
		"iss":     Issuer,
		"azp":     clientID,
		"aud":     clientID,
		"sub":     subjectFor(email),
		"at_hash": atHash(accessTok),
		"iat":     now.Unix(),
		"exp":     now.Add(idTokenLife).Unix(),
	}
	if slices.Contains(scopes, ScopeEmail) {
		claims["email"] = email
		claims["email_verified"] = !s.knobs.unverified[email]
	}
	if hd := s.hostedDomainLocked(email); hd != "" {
		claims["hd"] = hd
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	header := map[string]string{"alg": "RS256", "kid": s.kid, "typ": "JWT"}
	hb, _ := json.Marshal(header) // maps of strings and numbers always encode
	cb, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		// Signing with a valid in-memory RSA key does not fail.
		panic("sandbox: sign ID token: " + err.Error())
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// atHash is OpenID Connect's access token hash: the left half of its SHA-256.
func atHash(accessTok string) string {
	sum := sha256.Sum256([]byte(accessTok))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// handleRevoke takes the token as a form field (POST) or query parameter
// (GET and POST), like oauth2.googleapis.com/revoke.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		writeOAuthError(w, &oauthError{http.StatusMethodNotAllowed, "invalid_request", "Method not allowed: " + r.Method})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, &oauthError{http.StatusBadRequest, "invalid_request", "Invalid request body."})
		return
	}
	tok := r.Form.Get("token")
	if tok == "" {
		writeOAuthError(w, missingParam("token"))
		return
	}
	h := hashToken(tok)
	s.mu.Lock()
	var family string
	if rt, ok := s.st.Refresh[h]; ok {
		family = rt.Family
	} else if at, ok := s.st.Access[h]; ok && s.now().Before(at.Expiry) {
		family = at.Family
	}
	n := 0
	if family != "" {
		n = s.revokeFamilyLocked(family)
	}
	s.mu.Unlock()
	if n == 0 {
		writeOAuthError(w, errRevokeBad)
		return
	}
	s.saveOrLog()
	s.log.Info("sandbox: token revoked", "tokens", n)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("{}"))
}

// jwk is one RSA public key in JWKS form.
type jwk struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	pub := s.key.PublicKey
	kid := s.kid
	s.mu.Unlock()
	body := map[string][]jwk{"keys": {{
		Kty: "RSA", Alg: "RS256", Use: "sig", Kid: kid,
		N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	// Google's certs are cacheable; the sandbox key only changes with a
	// fresh state directory.
	w.Header().Set("Cache-Control", "public, max-age=3600, must-revalidate, no-transform")
	_, _ = w.Write(b)
}
