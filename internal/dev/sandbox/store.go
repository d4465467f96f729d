package sandbox

import (
	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/atomicfile"
)

// stateVersion is bumped when state.json changes incompatibly.
const stateVersion = 1

// state is what survives a restart. Tokens are kept only as SHA-256 hashes,
// so the file never holds a usable credential other than the signing key.
type state struct {
	Version    int               `json:"version"`
	SigningKey string            `json:"signing_key"` // PKCS #8 PEM
	Clients    map[string]Client `json:"clients"`
	// Grants are consents, keyed by grantKey(client, email). They decide
	// whether a later consent is "the first" (and so yields a refresh token
	// without prompt=consent) and what include_granted_scopes adds.
	Grants  map[string]*grant        `json:"grants"`
	Refresh map[string]*refreshToken `json:"refresh_tokens"` // by token hash
	Access  map[string]*accessToken  `json:"access_tokens"`  // by token hash
	// Seq orders refresh tokens by issue, which timestamps cannot do under
	// a test clock.
	Seq uint64 `json:"seq"`
}

type grant struct {
	ClientID string   `json:"client_id"`
	Email    string   `json:"email"`
	Scopes   []string `json:"scopes"`
	// Offline records that offline access was granted once: after that,
	// only prompt=consent yields another refresh token.
	Offline   bool      `json:"offline"`
	GrantedAt time.Time `json:"granted_at"`
}

// A family is one refresh token and the access tokens minted from it (or,
// without a refresh token, the access token of one code exchange). Revoking
// any member revokes the family, as revoking either token does at Google.
type refreshToken struct {
	Seq      uint64    `json:"seq"`
	Family   string    `json:"family"`
	ClientID string    `json:"client_id"`
	Email    string    `json:"email"`
	Scopes   []string  `json:"scopes"`
	IssuedAt time.Time `json:"issued_at"`
}

type accessToken struct {
	Family   string    `json:"family"`
	ClientID string    `json:"client_id"`
	Email    string    `json:"email"`
	Scopes   []string  `json:"scopes"`
	Expiry   time.Time `json:"expiry"`
}

// authCode lives in memory only: codes expire in ten minutes.
type authCode struct {
	ClientID     string
	RedirectURI  string
	Email        string
	Scopes       []string
	Challenge    string
	Method       string
	Nonce        string
	IssueRefresh bool
	Expiry       time.Time
	Used         bool
	Family       string // set once exchanged, to revoke on reuse
}

func newState() *state {
	return &state{
		Version: stateVersion,
		Clients: make(map[string]Client),
		Grants:  make(map[string]*grant),
		Refresh: make(map[string]*refreshToken),
		Access:  make(map[string]*accessToken),
	}
}

func loadState(path string) (*state, error) {
	st := newState()
	if path == "" {
		return st, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: read state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("sandbox: parse %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("sandbox: %s has version %d, want %d; delete it to start afresh", path, st.Version, stateVersion)
	}
	// A hand-edited or older file may lack a section.
	if st.Clients == nil {
		st.Clients = make(map[string]Client)
	}
	if st.Grants == nil {
		st.Grants = make(map[string]*grant)
	}
	if st.Refresh == nil {
		st.Refresh = make(map[string]*refreshToken)
	}
	if st.Access == nil {
		st.Access = make(map[string]*accessToken)
	}
	return st, nil
}

// initKey loads the signing key from the state or makes one.
func (s *Server) initKey() error {
	if s.st.SigningKey != "" {
		blk, _ := pem.Decode([]byte(s.st.SigningKey))
		if blk == nil {
			return errors.New("sandbox: state signing key is not PEM")
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return fmt.Errorf("sandbox: parse signing key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return fmt.Errorf("sandbox: signing key is %T, want RSA", k)
		}
		s.key = rk
	} else {
		k := s.opts.SigningKey
		if k == nil {
			var err error
			if k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				return fmt.Errorf("sandbox: generate signing key: %w", err)
			}
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return fmt.Errorf("sandbox: encode signing key: %w", err)
		}
		s.st.SigningKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		s.key = k
	}
	sum := sha256.Sum256(s.key.N.Bytes())
	s.kid = hex.EncodeToString(sum[:20]) // 40 hex digits, the shape of Google's kids
	return nil
}

// save writes state.json atomically (temp file, fsync, rename) with mode
// 0600. Concurrent callers coalesce: a snapshot older than one already on
// disk is never written over it.
func (s *Server) save() error {
	if s.statePath == "" {
		return nil
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()

	s.mu.Lock()
	if s.stateV == s.savedV {
		s.mu.Unlock()
		return nil
	}
	v := s.stateV
	s.pruneLocked()
	b, err := json.MarshalIndent(s.st, "", "  ")
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sandbox: encode state: %w", err)
	}
	if err := atomicfile.Write(s.statePath, b, 0o600); err != nil {
		return fmt.Errorf("sandbox: write state: %w", err)
	}
	s.mu.Lock()
	if v > s.savedV {
		s.savedV = v
	}
	s.mu.Unlock()
	return nil
}

// saveOrLog is for paths where a client already got its answer: the state in
// memory is right, and only a restart would lose the change.
func (s *Server) saveOrLog() {
	if err := s.save(); err != nil {
		s.log.Error("sandbox: persist state", "error", err)
	}
}

// pruneLocked drops expired access tokens and refresh tokens, so the state
// file does not grow without bound.
func (s *Server) pruneLocked() {
	now := s.now()
	for h, a := range s.st.Access {
		if !now.Before(a.Expiry) {
			delete(s.st.Access, h)
		}
	}
	if ttl := s.opts.RefreshTokenTTL; ttl > 0 {
		for h, r := range s.st.Refresh {
			if !now.Before(r.IssuedAt.Add(ttl)) {
				delete(s.st.Refresh, h)
			}
		}
	}
	for h, c := range s.codes {
		if !now.Before(c.Expiry) {
			delete(s.codes, h)
		}
	}
}

// hashToken is the key under which a token or code is stored.
func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on supported platforms; a sandbox that
		// cannot make tokens has nothing sensible to fall back to.
		panic(fmt.Sprintf("sandbox: crypto/rand: %v", err))
	}
	return b
}

// randomString returns n random bytes in unpadded base64url.
func randomString(n int) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(n))
}

// Token shapes follow Google's, so that code checking prefixes or lengths
// behaves the same: access tokens start "ya29.", refresh tokens "1//", codes
// "4/0A" (the slash forces clients to URL-decode the code correctly).
func newAccessToken() string  { return "ya29.a0" + randomString(96) }
func newRefreshToken() string { return "1//0" + randomString(72) }
func newAuthCode() string     { return "4/0A" + randomString(54) }
func newFamily() string       { return randomString(12) }

// wellFormedCode tells a code the sandbox could have issued from garbage,
// which Google answers with "Malformed auth code." rather than "Bad Request".
func wellFormedCode(c string) bool {
	rest, ok := strings.CutPrefix(c, "4/0A")
	if !ok || len(rest) != 72 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}

// normalizeEmail is how Google compares addresses for sign-in.
func normalizeEmail(e string) string {
	return strings.ToLower(strings.TrimSpace(e))
}

func grantKey(clientID, email string) string {
	return clientID + "\x00" + email
}

// subjectFor derives the stable numeric "sub" of an account from its
// address, so that it survives restarts without being stored. Google's subs
// are 21-digit decimal strings.
func subjectFor(email string) string {
	sum := sha256.Sum256([]byte("gmail-relay-sandbox-sub\x00" + email))
	v := binary.BigEndian.Uint64(sum[:8])
	return fmt.Sprintf("1%020d", v)
}

// hostedDomain is the hd claim: absent for consumer accounts, the domain
// for everything else (the sandbox treats them as Workspace).
func hostedDomain(email string) string {
	_, domain, ok := strings.Cut(email, "@")
	if !ok {
		return ""
	}
	switch domain {
	case "gmail.com", "googlemail.com":
		return ""
	}
	return domain
}

// maxRefreshTokens is Google's limit of refresh tokens per account per
// client: issuing one more silently revokes the oldest.
const maxRefreshTokens = 100

// capRefreshTokensLocked enforces maxRefreshTokens for clientID and email.
func (s *Server) capRefreshTokensLocked(clientID, email string) {
	type held struct {
		family string
		seq    uint64
	}
	var all []held
	for _, r := range s.st.Refresh {
		if r.ClientID == clientID && r.Email == email {
			all = append(all, held{r.Family, r.Seq})
		}
	}
	if len(all) <= maxRefreshTokens {
		return
	}
	slices.SortFunc(all, func(a, b held) int { return cmp.Compare(a.seq, b.seq) })
	for _, h := range all[:len(all)-maxRefreshTokens] {
		s.revokeFamilyLocked(h.family)
	}
}

// revokeFamilyLocked deletes a refresh token and every access token of its
// family, and forgets the consent once no token of it is left.
func (s *Server) revokeFamilyLocked(family string) int {
	n := 0
	var clientID, email string
	for h, r := range s.st.Refresh {
		if r.Family == family {
			clientID, email = r.ClientID, r.Email
			delete(s.st.Refresh, h)
			n++
		}
	}
	for h, a := range s.st.Access {
		if a.Family == family {
			clientID, email = a.ClientID, a.Email
			delete(s.st.Access, h)
			n++
		}
	}
	if n > 0 {
		s.stateV++
		if clientID != "" && !s.hasTokensLocked(clientID, email) {
			delete(s.st.Grants, grantKey(clientID, email))
		}
	}
	return n
}

func (s *Server) hasTokensLocked(clientID, email string) bool {
	for _, r := range s.st.Refresh {
		if r.ClientID == clientID && r.Email == email {
			return true
		}
	}
	for _, a := range s.st.Access {
		if a.ClientID == clientID && a.Email == email {
			return true
		}
	}
	return false
}
