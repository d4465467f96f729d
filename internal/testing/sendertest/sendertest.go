// Package sendertest runs the real sender against a local Google: the
// sandbox behind an httptest server, Secret Manager (secretfake over gRPC,
// read through tokenstore), the registry and ledger (Local files, or
// Firestore on the emulator), and result events published to pstest and read
// back through a subscription. Every client is the production one; only the
// network on the other side is fake.
//
// Tests build an Env, connect accounts with Env.Connect (a real consent and
// code exchange against the sandbox), hand deliveries to Env.Sender, and
// assert on what came out: the outbox, the results, the ledger, the registry,
// the sandbox's and the fake's counters, and the requests Env.Requests saw.
package sendertest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/policy"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// Names the Env uses.
const (
	ClientID     = "123456789012-sendertest.apps.googleusercontent.com"
	ClientSecret = "sendertest-secret"
	RedirectURL  = "http://127.0.0.1/confirm"
	ConnectURL   = "https://relay.example/authorize"
	ResultsTopic = "gmail-send-results"
	resultsSub   = "results-test"
)

// Store selects the registry and ledger backend.
type Store int

// Backends.
const (
	// Local is registry.Local and ledger.Local in a temporary directory.
	Local Store = iota
	// Firestore is the Firestore emulator, on a project of the Env's own.
	Firestore
)

func (s Store) String() string {
	if s == Firestore {
		return "firestore"
	}
	return "local"
}

// Options configures an Env. The zero value is a Local Env with a two-minute
// lease and a one-minute Gmail timeout: generous, because tests share a busy
// machine, and only the hang faults ever wait for the timeout.
type Options struct {
	Store Store
	// Lease and SendTimeout are passed to sender.New.
	Lease       time.Duration
	SendTimeout time.Duration
	// MaxDeliveryAttempts is passed to sender.New.
	MaxDeliveryAttempts int
	// Policy is passed to sender.New (nil: the default app only).
	Policy *policy.Policy
	// Attachments is passed to sender.New: attachments by Cloud Storage
	// reference, read from a fake (storagetest) by the real client.
	Attachments sender.Attachments
}

// Clock is a settable clock shared by the sandbox and the sender. It starts
// at the real time, so that tokens and ID tokens stay plausible.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Requests counts the HTTP requests the sandbox received, by route.
type Requests struct {
	mu sync.Mutex
	n  map[string]int
}

// Route names used by Requests.Count.
const (
	RouteToken  = "token"  // the token endpoint (exchanges and refreshes)
	RouteSend   = "send"   // users.messages.send, JSON form
	RouteUpload = "upload" // users.messages.send, upload form
)

func (r *Requests) add(route string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[route]++
}

// Count returns how many requests reached route.
func (r *Requests) Count(route string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[route]
}

// Gmail returns the number of Gmail send requests of either form.
func (r *Requests) Gmail() int { return r.Count(RouteSend) + r.Count(RouteUpload) }

func route(p string) string {
	switch {
	case p == sandbox.TokenPath:
		return RouteToken
	case strings.HasPrefix(p, sandbox.GmailPathPrefix):
		return RouteSend
	case strings.HasPrefix(p, sandbox.UploadPathPrefix):
		return RouteUpload
	}
	return "other"
}

// Env is one isolated stack.
type Env struct {
	t       testing.TB
	opts    Options
	Clock   *Clock
	Sandbox *sandbox.Server
	URL     string // the sandbox's base URL
	// OutboxDir holds one .eml file per message Gmail accepted.
	OutboxDir string
	Requests  *Requests
	Secrets   *secretfake.Server
	Tokens    *tokenstore.Store
	Registry  registry.Store
	Ledger    ledger.Store
	PubSub    *pstest.Server
	Publisher *results.Publisher
	OAuth     *oauth.Client
	// Sender is the sender under test; NewSender makes more instances on
	// the same stores, as Cloud Run would start more.
	Sender *sender.Sender
	// Logs receives the JSON logs of every delivery made through Deliver.
	Logs *testenv.SyncBuffer

	project  string
	psClient *pubsub.Client
	gate     gate
}

// gate holds Gmail requests at the network until a number of them are in
// flight together, so that a test can make concurrency certain rather than
// likely.
type gate struct {
	mu      sync.Mutex
	want    int
	arrived int
	open    chan struct{}
}

// maxGateWait bounds how long a held request waits for the others, so that a
// test that delivers fewer than it announced fails on its assertions
// instead of hanging.
const maxGateWait = 30 * time.Second

func (g *gate) wait(ctx context.Context) {
	g.mu.Lock()
	if g.arrived >= g.want {
		g.mu.Unlock()
		return
	}
	g.arrived++
	open := g.open
	if g.arrived == g.want {
		close(open)
	}
	g.mu.Unlock()
	t := time.NewTimer(maxGateWait)
	defer t.Stop()
	select {
	case <-open:
	case <-ctx.Done():
	case <-t.C:
	}
}

// HoldGmail makes the next n Gmail send requests wait at the network until
// all n have arrived, then lets them through at once.
func (e *Env) HoldGmail(n int) {
	e.gate.mu.Lock()
	defer e.gate.mu.Unlock()
	e.gate.want, e.gate.arrived, e.gate.open = n, 0, make(chan struct{})
}

// signingKey is shared by every sandbox: generating an RSA key is slow.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// New builds an Env and registers its teardown with t.Cleanup. With
// Options.Store Firestore it needs the emulator (testenv.FirestoreEmulator).
func New(t testing.TB, o Options) *Env {
	t.Helper()
	if o.SendTimeout <= 0 {
		o.SendTimeout = time.Minute
	}
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	ctx := context.Background()
	e := &Env{t: t, opts: o, Clock: &Clock{t: time.Now().UTC().Truncate(time.Millisecond)},
		Requests: &Requests{n: map[string]int{}}, Logs: &testenv.SyncBuffer{}, project: "sendertest-" + randomHex(6)}

	dir := t.TempDir()
	e.OutboxDir = filepath.Join(dir, "outbox")
	sb, err := sandbox.New(sandbox.Options{OutboxDir: e.OutboxDir, Now: e.Clock.Now, SigningKey: signingKey()})
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	if err := sb.RegisterClient(sandbox.Client{ID: ClientID, Secret: ClientSecret, RedirectURIs: []string{RedirectURL}}); err != nil {
		t.Fatalf("RegisterClient: %v", err)
	}
	e.Sandbox = sb
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := route(r.URL.Path)
		e.Requests.add(rt)
		if rt == RouteSend || rt == RouteUpload {
			e.gate.wait(r.Context())
		}
		sb.ServeHTTP(w, r)
	}))
	e.URL = ts.URL
	// Close the sandbox first: it releases requests held by HangAfterBody,
	// which the server's Close would otherwise wait for.
	t.Cleanup(func() { ts.Close() })
	t.Cleanup(func() { _ = sb.Close() })

	secrets, err := secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{})
	if err != nil {
		t.Fatalf("secretfake.Start: %v", err)
	}
	t.Cleanup(func() { _ = secrets.Close() })
	e.Secrets = secrets
	smc, err := secrets.NewClient(ctx)
	if err != nil {
		t.Fatalf("Secret Manager client: %v", err)
	}
	t.Cleanup(func() { _ = smc.Close() })
	e.Tokens = tokenstore.New(smc, e.project)

	switch o.Store {
	case Firestore:
		testenv.FirestoreEmulator(t)
		fs, err := firestore.NewClient(ctx, e.project)
		if err != nil {
			t.Fatalf("firestore.NewClient: %v", err)
		}
		t.Cleanup(func() { _ = fs.Close() })
		e.Registry, e.Ledger = registry.NewFirestore(fs), ledger.NewFirestore(fs)
	default:
		reg, err := registry.NewLocal(filepath.Join(dir, "accounts.json"))
		if err != nil {
			t.Fatalf("registry.NewLocal: %v", err)
		}
		led, err := ledger.NewLocal(filepath.Join(dir, "sends.json"))
		if err != nil {
			t.Fatalf("ledger.NewLocal: %v", err)
		}
		e.Registry, e.Ledger = reg, led
	}

	e.PubSub = pstest.NewServer()
	t.Cleanup(func() { _ = e.PubSub.Close() })
	psc, err := PubSubClient(ctx, e.PubSub.Addr, e.project)
	if err != nil {
		t.Fatalf("Pub/Sub client: %v", err)
	}
	t.Cleanup(func() { _ = psc.Close() })
	e.psClient = psc
	if _, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: e.topic(ResultsTopic)}); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	if _, err := psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: e.sub(resultsSub), Topic: e.topic(ResultsTopic), AckDeadlineSeconds: 60,
	}); err != nil {
		t.Fatalf("CreateSubscription: %v", err)
	}
	e.Publisher = results.NewPublisher(psc, ResultsTopic)
	t.Cleanup(e.Publisher.Stop)

	oc, err := oauth.New(oauth.Config{
		ClientID: ClientID, ClientSecret: ClientSecret, RedirectURL: RedirectURL,
		AuthURL: e.URL + sandbox.AuthPath, TokenURL: e.URL + sandbox.TokenPath, RevokeURL: e.URL + sandbox.RevokePath,
	})
	if err != nil {
		t.Fatalf("oauth.New: %v", err)
	}
	e.OAuth = oc
	e.Sender = e.NewSender()
	return e
}

// PubSubClient connects the v2 client to an emulator (pstest or gcloud's)
// at addr, without credentials.
func PubSubClient(ctx context.Context, addr, project string) (*pubsub.Client, error) {
	return pubsub.NewClient(ctx, project, option.WithEndpoint(addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
}

// Project is the Env's project ID: the Secret Manager secrets live under it.
func (e *Env) Project() string { return e.project }

func (e *Env) topic(id string) string { return "projects/" + e.project + "/topics/" + id }
func (e *Env) sub(id string) string   { return "projects/" + e.project + "/subscriptions/" + id }

// NewSender returns a new sender instance on the Env's stores, with caches
// of its own: what a second Cloud Run instance, or a restart, would be.
func (e *Env) NewSender() *sender.Sender {
	e.t.Helper()
	s, err := sender.New(sender.Options{
		Ledger: e.Ledger, Accounts: e.Registry, Tokens: e.Tokens, Results: e.Publisher, OAuth: e.OAuth,
		Gmail: gmail.New(e.URL+"/", nil), ConnectURL: ConnectURL,
		Lease: e.opts.Lease, SendTimeout: e.opts.SendTimeout, MaxDeliveryAttempts: e.opts.MaxDeliveryAttempts, Now: e.Clock.Now,
		Policy: e.opts.Policy, Attachments: e.opts.Attachments,
	})
	if err != nil {
		e.t.Fatalf("sender.New: %v", err)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// Deliver hands one delivery to the Env's sender, logging to Logs.
func (e *Env) Deliver(d sender.Delivery) error {
	return e.DeliverTo(e.Sender, d)
}

// DeliverTo hands one delivery to s, logging to Logs.
func (e *Env) DeliverTo(s *sender.Sender, d sender.Delivery) error {
	return e.DeliverContext(context.Background(), s, d)
}

// DeliverContext hands one delivery to s under ctx, logging to Logs.
func (e *Env) DeliverContext(ctx context.Context, s *sender.Sender, d sender.Delivery) error {
	return s.Handle(e.LogContext(ctx), d)
}

// LogContext returns ctx with a logger that writes JSON to Logs.
func (e *Env) LogContext(ctx context.Context) context.Context {
	return logging.WithLogger(ctx, slog.New(slog.NewJSONHandler(e.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// Consent plays the mailbox owner on the sandbox's consent page and
// exchanges the code with PKCE, as confirm does, and returns the refresh
// token. It stores nothing.
func (e *Env) Consent(email string) string {
	e.t.Helper()
	ctx := context.Background()
	cfg := &oauth2.Config{
		ClientID: ClientID, ClientSecret: ClientSecret, RedirectURL: RedirectURL,
		Scopes:   oauth.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.URL + sandbox.AuthPath, TokenURL: e.URL + sandbox.TokenPath, AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	state := randomHex(8)
	loc, err := sandbox.Consent(ctx, nil, cfg.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.ApprovalForce,
		oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", email)), email)
	if err != nil {
		e.t.Fatalf("Consent(%s): %v", email, err)
	}
	if got := loc.Query().Get("state"); got != state {
		e.t.Fatalf("consent returned state %q, want %q", got, state)
	}
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatalf("Exchange(%s): %v", email, err)
	}
	if tok.RefreshToken == "" {
		e.t.Fatalf("Exchange(%s) returned no refresh token", email)
	}
	return tok.RefreshToken
}

// Connect consents as email, saves the refresh token in Secret Manager and
// marks the account connected, as confirm does. It returns the refresh
// token.
func (e *Env) Connect(email string) string {
	e.t.Helper()
	rt := e.Consent(email)
	e.StoreToken(email, rt)
	now := e.Clock.Now()
	if err := e.Registry.Upsert(context.Background(), &registry.Account{
		Email: email, Status: registry.StatusConnected, Scopes: oauth.Scopes, ConnectedAt: now, TokenIssuedAt: now, UpdatedAt: now,
	}); err != nil {
		e.t.Fatalf("registry.Upsert(%s): %v", email, err)
	}
	return rt
}

// StoreToken saves refreshToken as email's token in Secret Manager.
func (e *Env) StoreToken(email, refreshToken string) {
	e.t.Helper()
	if err := e.Tokens.Save(context.Background(), email, tokenstore.Token{
		RefreshToken: refreshToken, Scopes: oauth.Scopes, IssuedAt: e.Clock.Now(), ClientID: ClientID,
	}); err != nil {
		e.t.Fatalf("tokenstore.Save(%s): %v", email, err)
	}
}

// StoredToken returns email's refresh token as Secret Manager holds it.
func (e *Env) StoredToken(email string) string {
	e.t.Helper()
	tok, err := e.Tokens.Load(context.Background(), email)
	if err != nil {
		e.t.Fatalf("tokenstore.Load(%s): %v", email, err)
	}
	return tok.RefreshToken
}

// Account returns email's registry entry.
func (e *Env) Account(email string) *registry.Account {
	e.t.Helper()
	a, err := e.Registry.Get(context.Background(), email)
	if err != nil {
		e.t.Fatalf("registry.Get(%s): %v", email, err)
	}
	return a
}

// Record returns the ledger record of key.
func (e *Env) Record(key string) *ledger.Record {
	e.t.Helper()
	r, err := e.Ledger.Get(context.Background(), key)
	if err != nil {
		e.t.Fatalf("ledger.Get(%q): %v", key, err)
	}
	return r
}

// Outbox returns the messages the sandbox accepted, oldest first.
func (e *Env) Outbox() []sandbox.OutboxMessage { return e.Sandbox.Outbox() }

// EMLFiles counts the .eml files in the outbox directory.
func (e *Env) EMLFiles() int {
	e.t.Helper()
	m, err := filepath.Glob(filepath.Join(e.OutboxDir, "*.eml"))
	if err != nil {
		e.t.Fatal(err)
	}
	return len(m)
}

// Result is one result event as a subscriber receives it.
type Result struct {
	Event      results.Event
	Attributes map[string]string
	MessageID  string
	Data       []byte
}

// Results pulls and acknowledges every result event published since the
// last call. The sender publishes synchronously, so once Handle has
// returned its event is already here.
func (e *Env) Results() []Result {
	e.t.Helper()
	out, err := Drain(context.Background(), e.psClient, e.sub(resultsSub))
	if err != nil {
		e.t.Fatalf("pulling results: %v", err)
	}
	return out
}

// Drain pulls, decodes as result events and acknowledges what subscription
// holds now.
func Drain(ctx context.Context, c *pubsub.Client, subscription string) ([]Result, error) {
	out, err := DrainRaw(ctx, c, subscription)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if err := json.Unmarshal(out[i].Data, &out[i].Event); err != nil {
			return nil, fmt.Errorf("result %s is not an event: %w", out[i].MessageID, err)
		}
	}
	return out, nil
}

// DrainRaw pulls and acknowledges what subscription holds now, without
// decoding.
func DrainRaw(ctx context.Context, c *pubsub.Client, subscription string) ([]Result, error) {
	var out []Result
	for {
		resp, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{
			Subscription: subscription, MaxMessages: 1000, ReturnImmediately: true,
		})
		if err != nil {
			return nil, err
		}
		if len(resp.ReceivedMessages) == 0 {
			return out, nil
		}
		ids := make([]string, 0, len(resp.ReceivedMessages))
		for _, m := range resp.ReceivedMessages {
			ids = append(ids, m.AckId)
			out = append(out, Result{Attributes: m.Message.Attributes, MessageID: m.Message.MessageId, Data: m.Message.Data})
		}
		if err := c.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: subscription, AckIds: ids}); err != nil {
			return nil, err
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CancelWhenStored returns a context derived from parent that ends as soon
// as the sandbox's outbox holds n messages: the way to make a request end
// after Gmail has taken its body, whatever the machine's speed. It gives up
// waiting, and cancels, after maxGateWait.
func (e *Env) CancelWhenStored(parent context.Context, n int) context.Context {
	ctx, cancel := context.WithCancel(parent)
	e.t.Cleanup(cancel)
	go func() {
		defer cancel()
		give := time.NewTimer(maxGateWait)
		defer give.Stop()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for len(e.Sandbox.Outbox()) < n {
			select {
			case <-ctx.Done():
				return
			case <-give.C:
				return
			case <-tick.C:
			}
		}
	}()
	return ctx
}
