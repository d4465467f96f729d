// Package sandbox is a local stand-in for the parts of Google that
// gmail-relay talks to: the OAuth 2.0 authorization, token and revocation
// endpoints, the JWKS that signs ID tokens, and Gmail's users.messages.send
// (JSON and upload forms). It speaks Google's wire formats, down to the error
// bodies, so that the production code paths (golang.org/x/oauth2 and
// google.golang.org/api/gmail/v1) run unchanged in tests and in `make dev`
// without the internet.
//
// Accepted messages are written as .eml files to an outbox directory. Knobs,
// reachable from Go and from a small JSON control surface under /sandbox/,
// revoke or expire tokens, slow Gmail down, rate-limit it, and make it fail
// the ways Gmail fails, including the ambiguous "body sent, no answer" case.
//
// The Server is an http.Handler meant to be mounted at the root of a host:
// the Gmail client resolves uploads to the root-relative /upload/... path.
// Paths lists the only patterns it claims, so that it can share a mux with the
// application's own handlers.
package sandbox

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Paths of Google's endpoints as the sandbox serves them. Build an
// oauth2.Endpoint as {AuthURL: base + AuthPath, TokenURL: base + TokenPath}.
const (
	// AuthPath is the authorization (consent) endpoint. Its form posts back
	// to the same path.
	AuthPath = "/o/oauth2/v2/auth"
	// TokenPath is the token endpoint (oauth2.googleapis.com/token).
	TokenPath = "/token"
	// RevokePath is the revocation endpoint (oauth2.googleapis.com/revoke).
	RevokePath = "/revoke"
	// JWKSPath serves the keys that verify the ID tokens the sandbox signs
	// (www.googleapis.com/oauth2/v3/certs).
	JWKSPath = "/oauth2/v3/certs"
	// GmailPathPrefix is where users.messages.send lives; point the Gmail
	// client at the sandbox with option.WithEndpoint(base + "/").
	GmailPathPrefix = "/gmail/v1/users/"
	// UploadPathPrefix is the media upload form of the same method.
	UploadPathPrefix = "/upload/gmail/v1/users/"
	// ControlPath is the sandbox's own control surface and index page.
	ControlPath = "/sandbox/"
)

// Issuer is the iss claim of the ID tokens, the same as Google's, so that
// code validating real tokens accepts sandbox ones unchanged.
const Issuer = "https://accounts.google.com"

// The OAuth client that `make dev` registers.
const (
	DevClientID     = "sandbox-client.apps.googleusercontent.com"
	DevClientSecret = "sandbox-secret"
)

// Scopes the sandbox knows by name. Google reports "email" and "profile" in
// their long forms in token responses, and so does the sandbox.
const (
	ScopeGmailSend    = "https://www.googleapis.com/auth/gmail.send"
	ScopeGmailCompose = "https://www.googleapis.com/auth/gmail.compose"
	ScopeGmailModify  = "https://www.googleapis.com/auth/gmail.modify"
	ScopeGmailRead    = "https://www.googleapis.com/auth/gmail.readonly"
	ScopeMailGoogle   = "https://mail.google.com/"
	ScopeEmail        = "https://www.googleapis.com/auth/userinfo.email"
	ScopeProfile      = "https://www.googleapis.com/auth/userinfo.profile"
	ScopeOpenID       = "openid"
)

// Google's lifetimes: codes are good for 10 minutes, access tokens for an
// hour (reported as 3599 seconds).
const (
	codeLifetime   = 10 * time.Minute
	accessLifetime = 3599 * time.Second
	idTokenLife    = time.Hour
)

// Options configures a Server.
type Options struct {
	// StateDir holds state.json (clients, grants, hashed tokens, the signing
	// key) and, by default, the outbox. With a StateDir a restart keeps
	// issued refresh tokens valid. Empty means in-memory; OutboxDir is then
	// required.
	StateDir string
	// OutboxDir receives one .eml file per accepted message. It defaults to
	// StateDir/outbox.
	OutboxDir string
	// Now is the clock for token lifetimes, rate limits and file names. It
	// defaults to time.Now.
	Now func() time.Time
	// Logger receives operational events. It never receives tokens, codes,
	// secrets or message bodies. Nil discards.
	Logger *slog.Logger
	// SigningKey signs ID tokens when the state has no key yet; nil makes a
	// new RSA 2048 key. A key already in state.json always wins, so that
	// tokens signed before a restart keep verifying.
	SigningKey *rsa.PrivateKey
	// RefreshTokenTTL, when positive, makes refresh tokens expire that long
	// after they were issued, the way Google expires tokens of External apps
	// in Testing status after 7 days. Zero means they never expire.
	RefreshTokenTTL time.Duration
}

// Client is a registered OAuth client. Redirect URIs match exactly, as at
// Google.
type Client struct {
	ID           string   `json:"id"`
	Secret       string   `json:"secret"`
	RedirectURIs []string `json:"redirect_uris"`
}

// Server is the local Google. Create it with New; it is safe for concurrent
// use.
type Server struct {
	opts      Options
	now       func() time.Time
	log       *slog.Logger
	outboxDir string
	statePath string // "" when in-memory
	indexPath string // outbox index; "" when in-memory
	mux       *http.ServeMux

	mu      sync.Mutex // guards everything below
	st      *state
	key     *rsa.PrivateKey
	kid     string
	codes   map[string]*authCode      // by hash of the code
	uploads map[string]*uploadSession // by upload_id
	outbox  []OutboxMessage           // in acceptance order
	ids     map[string]bool           // Gmail message IDs handed out
	knobs   knobs                     // test knobs, never persisted
	buckets map[string]*tokenBucket   // per-user send rate
	rng     *rand.Rand                // random faults; nil when off
	rates   []faultRate               // random fault rates, in a fixed order
	deleg   delegationState           // domain-wide delegation (delegation.go)
	sendAs  sendAsBook                // send-as aliases per mailbox (aliases.go)
	stateV  uint64                    // bumped on every state change
	savedV  uint64                    // last version written to disk
	saveMu  sync.Mutex                // serialises state.json writes
	indexMu sync.Mutex                // serialises outbox index appends

	closed    chan struct{}
	closeOnce sync.Once

	stats counters
}

// New returns a Server. With a StateDir it loads state.json if present and
// creates the directory (mode 0700) otherwise.
func New(opts Options) (*Server, error) {
	s := &Server{
		opts:    opts,
		now:     opts.Now,
		log:     opts.Logger,
		codes:   make(map[string]*authCode),
		uploads: make(map[string]*uploadSession),
		ids:     make(map[string]bool),
		buckets: make(map[string]*tokenBucket),
		closed:  make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.knobs.reset()

	s.outboxDir = opts.OutboxDir
	if opts.StateDir != "" {
		if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("sandbox: create state dir: %w", err)
		}
		s.statePath = filepath.Join(opts.StateDir, "state.json")
		s.indexPath = filepath.Join(opts.StateDir, "outbox.jsonl")
		if s.outboxDir == "" {
			s.outboxDir = filepath.Join(opts.StateDir, "outbox")
		}
	}
	if s.outboxDir == "" {
		return nil, errors.New("sandbox: OutboxDir is required when StateDir is empty")
	}
	if err := os.MkdirAll(s.outboxDir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: create outbox dir: %w", err)
	}

	st, err := loadState(s.statePath)
	if err != nil {
		return nil, err
	}
	s.st = st
	fresh := st.SigningKey == ""
	if err := s.initKey(); err != nil {
		return nil, err
	}
	if fresh && s.statePath != "" {
		// Persist the new key at once, so that ID tokens signed before a
		// restart still verify after it.
		s.mu.Lock()
		s.stateV++
		s.mu.Unlock()
		if err := s.save(); err != nil {
			return nil, err
		}
	}
	if err := s.loadOutboxIndex(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Paths returns the URL path patterns the sandbox serves, for mounting on a
// shared mux: for _, p := range s.Paths() { mux.Handle(p, s) }. None of them
// collides with the application's /authorize, /confirm, /sender, /admin/ or
// /healthcheck.
func (s *Server) Paths() []string {
	return []string{
		AuthPath,
		TokenPath,
		RevokePath,
		JWKSPath,
		GmailPathPrefix,
		UploadPathPrefix,
		ControlPath,
		SignJWTPathPrefix,
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// Close releases requests held by HangAfterBody and makes later hangs return
// at once. The Server keeps serving other requests; Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// RegisterClient adds an OAuth client or replaces the one with the same ID,
// and persists it with the state.
func (s *Server) RegisterClient(c Client) error {
	if c.ID == "" {
		return errors.New("sandbox: client ID is required")
	}
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	s.mu.Lock()
	s.st.Clients[c.ID] = c
	s.stateV++
	s.mu.Unlock()
	return s.save()
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc(AuthPath, s.handleAuthorize)
	mux.HandleFunc(TokenPath, s.handleToken)
	mux.HandleFunc(RevokePath, s.handleRevoke)
	mux.HandleFunc(JWKSPath, s.handleJWKS)
	mux.HandleFunc(GmailPathPrefix, s.handleGmail)
	mux.HandleFunc(UploadPathPrefix, s.handleUpload)
	mux.HandleFunc(SignJWTPathPrefix, s.handleSignJWT)
	s.controlRoutes(mux)
	s.mux = mux
}

// counters are the figures tests and benchmarks read through Stats.
type counters struct {
	tokenExchanges   atomic.Int64
	tokenRefreshes   atomic.Int64
	sendsAccepted    atomic.Int64
	sendsFaulted     atomic.Int64
	sendsRateLimited atomic.Int64
	sendsRejected    atomic.Int64
	signJWTCalls     atomic.Int64
	delegatedTokens  atomic.Int64
	delegationDenied atomic.Int64
}

// Stats is a snapshot of the Server's counters.
type Stats struct {
	// TokenExchanges counts successful authorization_code grants.
	TokenExchanges int64 `json:"token_exchanges"`
	// TokenRefreshes counts successful refresh_token grants.
	TokenRefreshes int64 `json:"token_refreshes"`
	// SendsAccepted counts messages written to the outbox, including those
	// whose answer a HangAfterBody or ResetAfterBody fault then withheld.
	SendsAccepted int64 `json:"sends_accepted"`
	// SendsFaulted counts sends answered by an injected or random fault.
	SendsFaulted int64 `json:"sends_faulted"`
	// SendsRateLimited counts sends refused by SetSendRate's limit.
	SendsRateLimited int64 `json:"sends_rate_limited"`
	// SendsRejected counts sends refused for their credentials or content.
	SendsRejected int64 `json:"sends_rejected"`
	// SignJWTCalls counts IAM Credentials signJwt calls answered.
	SignJWTCalls int64 `json:"sign_jwt_calls"`
	// DelegatedTokens counts access tokens issued for assertion grants
	// (domain-wide delegation); DelegationDenied those refused.
	DelegatedTokens  int64 `json:"delegated_tokens"`
	DelegationDenied int64 `json:"delegation_denied"`
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	return Stats{
		TokenExchanges:   s.stats.tokenExchanges.Load(),
		TokenRefreshes:   s.stats.tokenRefreshes.Load(),
		SendsAccepted:    s.stats.sendsAccepted.Load(),
		SendsFaulted:     s.stats.sendsFaulted.Load(),
		SendsRateLimited: s.stats.sendsRateLimited.Load(),
		SendsRejected:    s.stats.sendsRejected.Load(),
		SignJWTCalls:     s.stats.signJWTCalls.Load(),
		DelegatedTokens:  s.stats.delegatedTokens.Load(),
		DelegationDenied: s.stats.delegationDenied.Load(),
	}
}

func (c *counters) reset() {
	c.tokenExchanges.Store(0)
	c.tokenRefreshes.Store(0)
	c.sendsAccepted.Store(0)
	c.sendsFaulted.Store(0)
	c.sendsRateLimited.Store(0)
	c.sendsRejected.Store(0)
	c.signJWTCalls.Store(0)
	c.delegatedTokens.Store(0)
	c.delegationDenied.Store(0)
}
