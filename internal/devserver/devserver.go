// Package devserver runs the whole product in one process for `make dev`
// and end-to-end tests: every function at /<name>, the sandbox Google, an
// embedded Pub/Sub (pstest), the Secret Manager fake and the local stores,
// all persisted under one state directory. The functions run their
// production code unchanged: the server only sets the environment their
// configuration reads, then mounts their handlers.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/functions/admin"
	"github.com/gmailrelay/gmailrelay/functions/authorize"
	"github.com/gmailrelay/gmailrelay/functions/confirm"
	"github.com/gmailrelay/gmailrelay/functions/healthcheck"
	"github.com/gmailrelay/gmailrelay/functions/sender"
	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/pubsubevent"
	"github.com/gmailrelay/gmailrelay/internal/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/secretfake"
)

// Topic and subscription names of the local stack.
const (
	Project           = "gmail-relay-dev"
	SendTopic         = "gmail-send"
	ResultsTopic      = "gmail-send-results"
	DeadLetterTopic   = "gmail-send-dead-letter"
	AccountsTopic     = "gmail-account-events"
	sendSub           = "gmail-send-dev"
	resultsSub        = "gmail-send-results-dev"
	maxDeliveries     = 5
	maxOutstanding    = 80
	maxRedeliveryWait = 30 * time.Second
)

// Options configures Run.
type Options struct {
	// Addr is where the functions and the sandbox listen ("localhost:8080").
	Addr string
	// PubSubAddr is where the embedded Pub/Sub listens ("localhost:8085").
	PubSubAddr string
	// StateDir holds everything that survives a restart.
	StateDir string
	// ClientID and ClientSecret, when both set, select real Google.
	ClientID, ClientSecret string
	// Out receives the banner and result lines.
	Out io.Writer
	// Ready, if set, is called with the server once it serves.
	Ready func(*Server)
	// HealthcheckEvery is how often the healthcheck runs (6h by default).
	HealthcheckEvery time.Duration
}

// FromEnv reads Options from PORT, PUBSUB_PORT, DEV_STATE_DIR,
// OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET.
func FromEnv() Options {
	get := func(k, d string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return d
	}
	return Options{
		Addr:         "localhost:" + get("PORT", "8080"),
		PubSubAddr:   "localhost:" + get("PUBSUB_PORT", "8085"),
		StateDir:     get("DEV_STATE_DIR", ".dev"),
		ClientID:     os.Getenv("OAUTH_CLIENT_ID"),
		ClientSecret: os.Getenv("OAUTH_CLIENT_SECRET"),
		Out:          os.Stdout,
	}
}

// Server is a running local stack.
type Server struct {
	BaseURL    string
	PubSubAddr string
	OutboxDir  string
	Sandbox    *sandbox.Server // nil against real Google
	Secrets    *secretfake.Server
	PubSub     *pstest.Server
}

// started guards Run: the functions build their dependencies once per
// process from the environment (as on Cloud Run), so a second stack in the
// same process would silently talk to the first one's ports.
var started atomic.Bool

// ErrStarted is returned by a second Run in one process.
var ErrStarted = errors.New("devserver: Run may be called once per process (functions keep their first configuration)")

// Run starts the stack and serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	if !started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.HealthcheckEvery <= 0 {
		o.HealthcheckEvery = 6 * time.Hour
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return fmt.Errorf("devserver: state dir: %w", err)
	}
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return fmt.Errorf("devserver: state dir: %w", err)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("devserver: listening on %s (set PORT to use another port): %w", o.Addr, err)
	}
	defer ln.Close()
	base := "http://" + loopbackName(ln.Addr())
	s := &Server{BaseURL: base, OutboxDir: filepath.Join(stateDir, "outbox")}
	realGoogle := o.ClientID != "" && o.ClientSecret != ""

	env := map[string]string{
		"GOOGLE_CLOUD_PROJECT": Project,
		"STORE_BACKEND":        "local",
		"DEV_STATE_DIR":        stateDir,
		"OAUTH_REDIRECT_URL":   base + "/confirm",
		"CONNECT_URL":          base + "/authorize",
		"RESULTS_TOPIC":        ResultsTopic,
		"ACCOUNT_EVENTS_TOPIC": AccountsTopic,
		// Locally there is no Cloud Run in front of admin to check IAM.
		"ADMIN_REQUIRE_AUTH": "false",
	}
	if realGoogle {
		env["OAUTH_CLIENT_ID"] = o.ClientID
		env["OAUTH_CLIENT_SECRET"] = o.ClientSecret
		env["OAUTH_AUTH_URL"] = config.GoogleAuthURL
		env["OAUTH_TOKEN_URL"] = config.GoogleTokenURL
		env["OAUTH_REVOKE_URL"] = config.GoogleRevokeURL
		env["GMAIL_ENDPOINT"] = ""
	} else {
		sb, err := sandbox.New(sandbox.Options{
			StateDir:  filepath.Join(stateDir, "sandbox"),
			OutboxDir: s.OutboxDir,
			Logger:    slog.New(slog.NewJSONHandler(io.Discard, nil)),
		})
		if err != nil {
			return fmt.Errorf("devserver: sandbox: %w", err)
		}
		defer sb.Close()
		if err := sb.RegisterClient(sandbox.Client{ID: sandbox.DevClientID, Secret: sandbox.DevClientSecret, RedirectURIs: []string{base + "/confirm"}}); err != nil {
			return fmt.Errorf("devserver: registering the dev OAuth client: %w", err)
		}
		s.Sandbox = sb
		env["OAUTH_CLIENT_ID"] = sandbox.DevClientID
		env["OAUTH_CLIENT_SECRET"] = sandbox.DevClientSecret
		env["OAUTH_AUTH_URL"] = base + sandbox.AuthPath
		env["OAUTH_TOKEN_URL"] = base + sandbox.TokenPath
		env["OAUTH_REVOKE_URL"] = base + sandbox.RevokePath
		env["GMAIL_ENDPOINT"] = base + "/"
	}

	secrets, err := secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{StatePath: filepath.Join(stateDir, "secrets.json")})
	if err != nil {
		return fmt.Errorf("devserver: Secret Manager fake: %w", err)
	}
	defer secrets.Close()
	s.Secrets = secrets
	env["SECRET_MANAGER_EMULATOR_HOST"] = secrets.Addr()

	ps, err := startPubSub(ctx, o.PubSubAddr)
	if err != nil {
		return err
	}
	defer ps.Close()
	s.PubSub = ps
	s.PubSubAddr = o.PubSubAddr
	if strings.HasSuffix(o.PubSubAddr, ":0") {
		s.PubSubAddr = ps.Addr
	}
	env["PUBSUB_EMULATOR_HOST"] = s.PubSubAddr
	// deliver dead-letters after maxDeliveries, as the deployed
	// subscription does after max_delivery_attempts.
	env["SEND_MAX_DELIVERY_ATTEMPTS"] = strconv.Itoa(maxDeliveries)

	// The functions read their configuration from the environment on first
	// use, exactly as on Cloud Run.
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("devserver: setenv %s: %w", k, err)
		}
	}

	psClient, err := pubsub.NewClient(ctx, Project, option.WithEndpoint(ps.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		return fmt.Errorf("devserver: Pub/Sub client: %w", err)
	}
	defer psClient.Close()
	if err := createTopology(ctx, psClient); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/authorize", authorize.Handle)
	mux.Handle("/confirm", confirm.Handle)
	// The functions framework serves each function at an exact path; admin
	// has sub-routes, so it is mounted under /admin/ with the prefix
	// stripped, as Cloud Run would serve it at /.
	mux.Handle("/admin/", http.StripPrefix("/admin", admin.Handle))
	mux.HandleFunc("POST /healthcheck", func(w http.ResponseWriter, r *http.Request) {
		if err := runHealthcheck(r.Context()); err != nil {
			http.Error(w, "health check failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "health check done; its summary is in the log")
	})
	if s.Sandbox != nil {
		for _, p := range s.Sandbox.Paths() {
			mux.Handle(p, s.Sandbox)
		}
	}
	mux.HandleFunc("/{$}", s.index(realGoogle))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(4)
	go func() {
		defer wg.Done()
		// Cloud Scheduler's job, locally: every HealthcheckEvery.
		t := time.NewTicker(o.HealthcheckEvery)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				_ = runHealthcheck(runCtx)
			}
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("devserver: serving: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := deliver(runCtx, psClient, sender.Handle); err != nil {
			errc <- err
		}
	}()
	go func() {
		defer wg.Done()
		if err := printResults(runCtx, psClient, o.Out); err != nil {
			errc <- err
		}
	}()

	s.banner(o.Out, realGoogle)
	if o.Ready != nil {
		o.Ready(s)
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = srv.Shutdown(shutdownCtx)
	wg.Wait()
	return err
}

// loopbackName prints a listener address as localhost:port, because the
// redirect URI Google (and the sandbox) match must be the one README shows.
func loopbackName(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	return "localhost:" + strconv.Itoa(ta.Port)
}

func startPubSub(ctx context.Context, addr string) (*pstest.Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("devserver: PUBSUB address %q: %w", addr, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	// pstest panics when it cannot listen; check the port first so the
	// error says what to do.
	probe, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("devserver: the embedded Pub/Sub cannot listen on %s (set PUBSUB_PORT to use another port): %w", addr, err)
	}
	probe.Close()
	return pstest.NewServerWithAddress(net.JoinHostPort(host, port)), nil
}

func createTopology(ctx context.Context, c *pubsub.Client) error {
	for _, t := range []string{SendTopic, ResultsTopic, DeadLetterTopic, AccountsTopic} {
		_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topicName(t)})
		if err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("devserver: creating topic %s: %w", t, err)
		}
	}
	subs := map[string]string{sendSub: SendTopic, resultsSub: ResultsTopic, "gmail-send-dead-letter-dev": DeadLetterTopic}
	for sub, topic := range subs {
		_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
			Name: subName(sub), Topic: topicName(topic), AckDeadlineSeconds: 60,
		})
		if err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("devserver: creating subscription %s: %w", sub, err)
		}
	}
	return nil
}

func topicName(t string) string { return "projects/" + Project + "/topics/" + t }
func subName(s string) string   { return "projects/" + Project + "/subscriptions/" + s }

func isAlreadyExists(err error) bool {
	return err != nil && strings.Contains(err.Error(), "AlreadyExists")
}

// deliver does what a push subscription with a retry and dead-letter policy
// would: pstest never pushes and redelivers a nack at once, so this loop
// waits with backoff before each nack and dead-letters after maxDeliveries.
func deliver(ctx context.Context, c *pubsub.Client, handle func(context.Context, event.Event) error) error {
	sub := c.Subscriber(sendSub)
	sub.ReceiveSettings.MaxOutstandingMessages = maxOutstanding
	dead := c.Publisher(DeadLetterTopic)
	defer dead.Stop()
	var mu sync.Mutex
	attempts := map[string]int{}
	// pstest numbers messages m0, m1, … afresh in every process, while the
	// ledger persists: without a per-run prefix, a request with no
	// idempotency key would look like a duplicate of the last run's.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	err := sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		mu.Lock()
		attempts[m.ID]++
		n := attempts[m.ID]
		mu.Unlock()
		ev, err := pubsubevent.New(&pubsubevent.Message{ID: run + "-" + m.ID, Data: m.Data, Attributes: m.Attributes,
			PublishTime: m.PublishTime, DeliveryAttempt: n, Subscription: subName(sendSub)}, topicName(SendTopic))
		if err == nil {
			err = handle(ctx, ev)
		}
		if err == nil {
			mu.Lock()
			delete(attempts, m.ID)
			mu.Unlock()
			m.Ack()
			return
		}
		if n >= maxDeliveries {
			attrs := map[string]string{"CloudPubSubDeadLetterSourceDeliveryCount": strconv.Itoa(n)}
			for k, v := range m.Attributes {
				attrs[k] = v
			}
			if _, perr := dead.Publish(ctx, &pubsub.Message{Data: m.Data, Attributes: attrs}).Get(ctx); perr == nil {
				mu.Lock()
				delete(attempts, m.ID)
				mu.Unlock()
				m.Ack()
				return
			}
		}
		wait := time.Duration(1<<min(n, 5)) * time.Second
		select {
		case <-ctx.Done():
		case <-time.After(min(wait, maxRedeliveryWait)):
		}
		m.Nack()
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("devserver: receiving send requests: %w", err)
	}
	return nil
}

// printResults shows each result event as one line, so `make dev` users see
// what happened to what they published.
func printResults(ctx context.Context, c *pubsub.Client, out io.Writer) error {
	var mu sync.Mutex
	err := c.Subscriber(resultsSub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		mu.Lock()
		fmt.Fprintf(out, "result %s: %s\n", m.Attributes["status"], m.Data)
		mu.Unlock()
		m.Ack()
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("devserver: receiving results: %w", err)
	}
	return nil
}

func (s *Server) banner(out io.Writer, realGoogle bool) {
	mode := "the sandbox Google (no Google account needed; nothing leaves this machine)"
	if realGoogle {
		mode = "REAL Google with OAUTH_CLIENT_ID; register " + s.BaseURL + "/confirm as an authorized redirect URI of that client"
	}
	fmt.Fprintf(out, `
gmail-relay dev server, using %s

  Connect a mailbox:   %s/authorize
  Accounts (admin):    %s/admin/accounts
  Home:                %s/
`, mode, s.BaseURL, s.BaseURL, s.BaseURL)
	if s.Sandbox != nil {
		fmt.Fprintf(out, "  Sandbox and outbox:  %s/sandbox/\n  Outbox files:        %s/*.eml\n", s.BaseURL, s.OutboxDir)
	}
	fmt.Fprintf(out, `  Send a message:      make send ACCOUNT=<connected address> TO=bob@example.org

PUBSUB_EMULATOR_HOST=%s
`, s.PubSubAddr)
}

// runHealthcheck runs the healthcheck function once, with the event Cloud
// Scheduler's Pub/Sub message would carry.
func runHealthcheck(ctx context.Context) error {
	ev, err := pubsubevent.New(&pubsubevent.Message{ID: "dev-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Data: []byte(`{"trigger":"dev"}`), PublishTime: time.Now()}, topicName("gmail-healthcheck"))
	if err != nil {
		return err
	}
	return healthcheck.Handle(ctx, ev)
}
