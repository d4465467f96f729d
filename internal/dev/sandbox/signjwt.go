package sandbox

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// SignJWTPathPrefix is where IAM Credentials' projects.serviceAccounts
// methods live (iamcredentials.googleapis.com/v1/...). The sandbox serves
// signJwt: POST {prefix}{email or unique ID}:signJwt.
const SignJWTPathPrefix = "/v1/projects/-/serviceAccounts/"

// DevIAMCredential is the bearer signJwt accepts from a caller without a
// sandbox-issued access token: the relay's identity in make dev and tests,
// which have no Application Default Credentials (the relay's emulator
// transport sends it, delegation.EmulatorBearer).
const DevIAMCredential = "sandbox-iam-credential"

// signJWTRequest and signJWTResponse are the REST bodies of
// https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/signJwt.
type signJWTRequest struct {
	Payload   string   `json:"payload"`
	Delegates []string `json:"delegates"`
}

type signJWTResponse struct {
	KeyID     string `json:"keyId"`
	SignedJWT string `json:"signedJwt"`
}

// handleSignJWT signs the caller's claims as the named service account with
// the sandbox key, as Google signs them with a Google-managed key of the
// account. It checks the caller's bearer: Google requires
// iam.serviceAccounts.signJwt on the account, which the sandbox grants to
// every caller it can authenticate.
func (s *Server) handleSignJWT(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, SignJWTPathPrefix), ":signJwt")
	if !ok || name == "" || strings.Contains(name, "/") {
		writeGoogleError(w, &googleError{Code: http.StatusNotFound, Message: "Requested entity was not found.", Status: "NOT_FOUND"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeGoogleError(w, methodNotAllowed(r.Method))
		return
	}
	if gerr := s.authenticateCaller(r); gerr != nil {
		writeGoogleError(w, gerr)
		return
	}
	var req signJWTRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil || !json.Valid([]byte(req.Payload)) || !strings.HasPrefix(strings.TrimSpace(req.Payload), "{") {
		writeGoogleError(w, &googleError{Code: http.StatusBadRequest, Message: "Request contains an invalid argument.", Status: "INVALID_ARGUMENT"})
		return
	}
	s.stats.signJWTCalls.Add(1)
	s.mu.Lock()
	jwt := s.signLocked([]byte(req.Payload))
	kid := s.kid
	s.mu.Unlock()
	s.log.Info("sandbox: JWT signed", "service_account", name)
	writeJSON(w, http.StatusOK, signJWTResponse{KeyID: kid, SignedJWT: jwt})
}

// authenticateCaller accepts DevIAMCredential or a live sandbox access
// token, answering as Google's front end does otherwise.
func (s *Server) authenticateCaller(r *http.Request) *googleError {
	tok, ok := bearer(r)
	if !ok {
		if r.Header.Get("Authorization") == "" {
			return errNoCredentials
		}
		return errUnauthenticated
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(DevIAMCredential)) == 1 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, live := s.st.Access[hashToken(tok)]; live && s.now().Before(at.Expiry) {
		return nil
	}
	return errUnauthenticated
}

// signLocked makes an RS256 JWT of the payload as given.
func (s *Server) signLocked(payload []byte) string {
	hb, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": s.kid, "typ": "JWT"})
	signing := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		// Signing with a valid in-memory RSA key does not fail.
		panic("sandbox: sign JWT: " + err.Error())
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// verifyJWT checks that jwt is RS256 under the sandbox key and decodes its
// claims into v.
func (s *Server) verifyJWT(jwt string, v any) bool {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return false
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if json.Unmarshal(hb, &h) != nil || h.Alg != "RS256" {
		return false
	}
	s.mu.Lock()
	pub, kid := s.key.PublicKey, s.kid
	s.mu.Unlock()
	if h.Kid != kid {
		return false
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(&pub, crypto.SHA256, sum[:], sig) != nil {
		return false
	}
	return json.Unmarshal(cb, v) == nil
}
