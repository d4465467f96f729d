// Package googletest assembles the local Google for tests: the sandbox on
// an httptest server, the Secret Manager fake with a real client, and a way
// to connect a mailbox (consent, exchange, store) without a browser. It
// exists so every package's tests build the same faithful stack instead of
// each wiring its own.
package googletest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// Client credentials the stack registers with its sandbox.
const (
	ClientID     = "test-client.apps.googleusercontent.com"
	ClientSecret = "test-secret"
	Project      = "test-project"
)

// signingKey is shared by every sandbox in a test process: an RSA key
// takes up to a second to generate, per stack otherwise.
var signingKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// Stack is a running local Google plus the relay's stores.
type Stack struct {
	Sandbox  *sandbox.Server
	URL      string // the sandbox's base URL
	Secrets  *secretfake.Server
	Tokens   *tokenstore.Store
	Registry *registry.Local
	OAuth    *oauth.Client
	Outbox   string
	// RedirectURL is registered for ClientID.
	RedirectURL string
}

// New starts a stack that lives as long as t.
func New(t testing.TB) *Stack {
	t.Helper()
	dir := t.TempDir()
	key, err := signingKey()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{OutboxDir: filepath.Join(dir, "outbox"), SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(func() { srv.Close(); sb.Close() })
	redirect := srv.URL + "/confirm"
	if err := sb.RegisterClient(sandbox.Client{ID: ClientID, Secret: ClientSecret, RedirectURIs: []string{redirect}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sm, err := secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })
	smc, err := sm.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { smc.Close() })
	reg, err := registry.NewLocal(filepath.Join(dir, "accounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	oc, err := oauth.New(oauth.Config{ClientID: ClientID, ClientSecret: ClientSecret, RedirectURL: redirect,
		AuthURL: srv.URL + sandbox.AuthPath, TokenURL: srv.URL + sandbox.TokenPath, RevokeURL: srv.URL + sandbox.RevokePath})
	if err != nil {
		t.Fatal(err)
	}
	return &Stack{Sandbox: sb, URL: srv.URL, Secrets: sm, Tokens: tokenstore.New(smc, Project), Registry: reg,
		OAuth: oc, Outbox: filepath.Join(dir, "outbox"), RedirectURL: redirect}
}

// Grant runs the consent flow for email without a browser and returns
// Google's token response (with its refresh token).
func (s *Stack) Grant(t testing.TB, email string) *oauth2.Token {
	t.Helper()
	ctx := context.Background()
	conf := &oauth2.Config{ClientID: ClientID, ClientSecret: ClientSecret, RedirectURL: s.RedirectURL, Scopes: oauth.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: s.URL + sandbox.AuthPath, TokenURL: s.URL + sandbox.TokenPath}}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state", oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	back, err := sandbox.Consent(ctx, client, authURL, email)
	if err != nil {
		t.Fatalf("consent for %s: %v", email, err)
	}
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange for %s: %v", email, err)
	}
	return tok
}

// Connect grants email and stores it as confirm would: the token in Secret
// Manager and a connected account in the registry.
func (s *Stack) Connect(t testing.TB, email string) *oauth2.Token {
	t.Helper()
	tok := s.Grant(t, email)
	now := time.Now().UTC()
	if err := s.Tokens.Save(context.Background(), email, tokenstore.Token{RefreshToken: tok.RefreshToken,
		Scopes: oauth.Scopes, IssuedAt: now, ClientID: ClientID}); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry.Upsert(context.Background(), &registry.Account{Email: email, Status: registry.StatusConnected,
		Scopes: oauth.Scopes, ConnectedAt: now, TokenIssuedAt: now, LastRefreshAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return tok
}
