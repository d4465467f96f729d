package sandbox_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

const (
	testClientID     = "123456789012-relaytest.apps.googleusercontent.com"
	testClientSecret = "GOCSPX-test/secret+with&odd=chars"
	testRedirect     = "https://relay.example/confirm"
)

// testKey is shared by the tests' sandboxes: generating an RSA key takes
// longer than most tests.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

var defaultScopes = []string{"openid", "email", sandbox.ScopeGmailSend}

// clock is a settable clock for the sandbox. It starts at the real time, so
// that ID tokens it signs are valid for validators that use the real clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Millisecond)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one sandbox behind a real HTTP server, with a registered client.
type env struct {
	t     *testing.T
	sb    *sandbox.Server
	ts    *httptest.Server
	clock *clock
	dir   string
	logs  *testenv.SyncBuffer
}

type envOption func(*sandbox.Options)

func withStateDir(dir string) envOption {
	return func(o *sandbox.Options) { o.StateDir = dir; o.OutboxDir = "" }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), dir: t.TempDir(), logs: &testenv.SyncBuffer{}}
	o := sandbox.Options{
		SigningKey: testKey(),
		OutboxDir:  e.dir,
		Now:        e.clock.Now,
		Logger:     slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range opts {
		f(&o)
	}
	sb, err := sandbox.New(o)
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	if err := sb.RegisterClient(sandbox.Client{ID: testClientID, Secret: testClientSecret, RedirectURIs: []string{testRedirect, "http://localhost:8080/confirm"}}); err != nil {
		t.Fatalf("RegisterClient: %v", err)
	}
	e.sb = sb
	e.ts = httptest.NewServer(sb)
	t.Cleanup(func() {
		_ = sb.Close()
		e.ts.Close()
	})
	return e
}

func (e *env) config(scopes ...string) *oauth2.Config {
	if len(scopes) == 0 {
		scopes = defaultScopes
	}
	return &oauth2.Config{
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		RedirectURL:  testRedirect,
		Scopes:       scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   e.ts.URL + sandbox.AuthPath,
			TokenURL:  e.ts.URL + sandbox.TokenPath,
			AuthStyle: oauth2.AuthStyleInParams, // as google.Endpoint
		},
	}
}

// authorize runs the consent page and returns the redirect it produced.
func (e *env) authorize(cfg *oauth2.Config, email, state string, opts []oauth2.AuthCodeOption, untick ...string) *url.URL {
	e.t.Helper()
	loc, err := sandbox.Consent(context.Background(), e.ts.Client(), cfg.AuthCodeURL(state, opts...), email, untick...)
	if err != nil {
		e.t.Fatalf("Consent(%s): %v", email, err)
	}
	return loc
}

// connect runs the whole flow as the relay will: offline access, forced
// consent, PKCE.
func (e *env) connect(email string, scopes ...string) *oauth2.Token {
	e.t.Helper()
	cfg := e.config(scopes...)
	verifier := oauth2.GenerateVerifier()
	loc := e.authorize(cfg, email, "st", []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier)})
	code := loc.Query().Get("code")
	if code == "" {
		e.t.Fatalf("consent redirect has no code: %s", loc)
	}
	tok, err := cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatalf("Exchange: %v", err)
	}
	return tok
}

// gmail returns a real Gmail client that sends with tok.
func (e *env) gmail(tok *oauth2.Token) *gmail.Service {
	e.t.Helper()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.ts.Client())
	svc, err := gmail.NewService(ctx,
		option.WithEndpoint(e.ts.URL+"/"),
		option.WithHTTPClient(e.config().Client(ctx, tok)))
	if err != nil {
		e.t.Fatalf("gmail.NewService: %v", err)
	}
	return svc
}

func message(to, subject, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Alice <alice@example.com>\r\n")
	if to != "" {
		fmt.Fprintf(&b, "To: %s\r\n", to)
	}
	fmt.Fprintf(&b, "Subject: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", subject, body)
	return b.Bytes()
}

func sendRaw(svc *gmail.Service, raw []byte) (*gmail.Message, error) {
	return svc.Users.Messages.Send("me", &gmail.Message{Raw: base64.URLEncoding.EncodeToString(raw)}).Do()
}

// asGoogleErr unwraps a *googleapi.Error or fails the test.
func asGoogleErr(t *testing.T, err error) *googleapi.Error {
	t.Helper()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("error %v (%T) is not a *googleapi.Error", err, err)
	}
	return gerr
}

func asRetrieveErr(t *testing.T, err error) *oauth2.RetrieveError {
	t.Helper()
	var rerr *oauth2.RetrieveError
	if !errors.As(err, &rerr) {
		t.Fatalf("error %v (%T) is not a *oauth2.RetrieveError", err, err)
	}
	return rerr
}

func reasons(g *googleapi.Error) []string {
	var out []string
	for _, e := range g.Errors {
		out = append(out, e.Reason)
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jarClient is a browser-like client: it keeps cookies and follows
// redirects.
func jarClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

// waitFor polls cond until it holds; the test's own deadline bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline, ok := t.Deadline()
	for !cond() {
		if ok && time.Until(deadline) < time.Second {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

func scopeList(tok *oauth2.Token) []string {
	s, _ := tok.Extra("scope").(string)
	return strings.Fields(s)
}
