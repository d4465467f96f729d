// Package devserver runs the whole product in one process for `make dev`
// and end-to-end tests: every function at /<name>, the sandbox Google, an
// embedded Pub/Sub (pstest), the Secret Manager fake, an embedded Cloud
// Storage (fake-gcs-server's fakestorage) holding the attachments bucket,
// and the local stores, persisted under one state directory (Pub/Sub and
// Cloud Storage are in memory). The functions run their
// production code unchanged: the server builds each one with its
// constructor, from a map of settings over the caller's environment and
// with one Pub/Sub client, Secret Manager client, registry and ledger
// shared among them, mounts their handlers, and feeds the push-fed ones real
// Pub/Sub push requests. It never changes the process environment.
package devserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/sethvargo/go-envconfig"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/functions/admin"
	"github.com/gmailrelay/gmailrelay/functions/authorize"
	"github.com/gmailrelay/gmailrelay/functions/confirm"
	"github.com/gmailrelay/gmailrelay/functions/healthcheck"
	"github.com/gmailrelay/gmailrelay/functions/sender"
	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/entrypoint"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/policy"
	"github.com/gmailrelay/gmailrelay/internal/push"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/wiring"
)

// Topic and subscription names of the local stack. The send topics are the
// apps' (policy.Apps.Topics): SendTopic without APPS, gmail-send-<app> for
// each app APPS declares, each with the push subscription name Terraform
// gives it, so the sender learns the app the way it does when deployed.
const (
	Project           = "gmail-relay-dev"
	SendTopic         = policy.DefaultTopic
	ResultsTopic      = "gmail-send-results"
	DeadLetterTopic   = "gmail-send-dead-letter"
	AccountsTopic     = "gmail-account-events"
	resultsSub        = "gmail-send-results-dev"
	maxDeliveries     = 5
	maxOutstanding    = 80
	maxRedeliveryWait = 30 * time.Second
	// AttachmentsBucket is the embedded Cloud Storage's bucket, the
	// sender's ATTACHMENTS_BUCKET: objects under <app>/ may be sent by
	// reference (attachments[].gcs_uri).
	AttachmentsBucket = "gmail-relay-attachments"
)

// Options configures Run.
type Options struct {
	// Addr is where the functions and the sandbox listen ("localhost:8080").
	Addr string
	// PubSubAddr is where the embedded Pub/Sub listens ("localhost:8085").
	PubSubAddr string
	// StorageAddr is where the embedded Cloud Storage listens
	// ("localhost:4443"; empty or port 0: any free port); it serves on
	// 127.0.0.1, the host its XML API answers for.
	StorageAddr string
	// StateDir holds everything that survives a restart.
	StateDir string
	// ClientID and ClientSecret, when both set, select real Google; one
	// without the other is an error.
	ClientID, ClientSecret string
	// Env supplies the functions' settings the dev server does not fix
	// itself (SEND_LEASE, LOG_LEVEL, ALLOWED_DOMAINS, OAUTH_APP_TESTING…);
	// nil supplies none.
	Env envconfig.Lookuper
	// Logs receives the functions' logs (nil: stdout).
	Logs io.Writer
	// Out receives the banner and result lines.
	Out io.Writer
	// Ready, if set, is called with the server once it serves.
	Ready func(*Server)
	// HealthcheckEvery is how often the healthcheck runs (6h by default).
	HealthcheckEvery time.Duration
}

// FromEnv reads Options from the process environment: see FromLookuper.
func FromEnv() Options {
	o := FromLookuper(envconfig.OsLookuper())
	o.Out = os.Stdout
	return o
}

// FromLookuper reads Options from PORT, PUBSUB_PORT, STORAGE_PORT,
// DEV_STATE_DIR, OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET in l, and passes l
// on to the functions for the rest of their settings.
func FromLookuper(l envconfig.Lookuper) Options {
	get := func(k, d string) string {
		if v, _ := l.Lookup(k); v != "" {
			return v
		}
		return d
	}
	return Options{
		Addr:         "localhost:" + get("PORT", "8080"),
		PubSubAddr:   "localhost:" + get("PUBSUB_PORT", "8085"),
		StorageAddr:  "localhost:" + get("STORAGE_PORT", "4443"),
		StateDir:     get("DEV_STATE_DIR", ".dev"),
		ClientID:     get("OAUTH_CLIENT_ID", ""),
		ClientSecret: get("OAUTH_CLIENT_SECRET", ""),
		Env:          l,
	}
}

// Server is a running local stack.
type Server struct {
	BaseURL    string
	PubSubAddr string
	// StorageURL is the embedded Cloud Storage (http://127.0.0.1:PORT),
	// the value for STORAGE_EMULATOR_HOST.
	StorageURL string
	OutboxDir  string
	Sandbox    *sandbox.Server // nil against real Google
	// SendTopics are the apps' send topics, in order.
	SendTopics []string
	Secrets    *secretfake.Server
	PubSub     *pstest.Server
}

// Run starts the stack and serves until ctx ends, then closes everything
// it opened. A configuration the functions refuse stops it before it
// serves, with every problem in the error.
func Run(ctx context.Context, o Options) (err error) {
	if (o.ClientID == "") != (o.ClientSecret == "") {
		missing := "OAUTH_CLIENT_SECRET"
		if o.ClientID == "" {
			missing = "OAUTH_CLIENT_ID"
		}
		return fmt.Errorf("devserver: %s is not set: real Google needs both OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET (unset both to use the sandbox)", missing)
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
		"ATTACHMENTS_BUCKET": AttachmentsBucket,
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
		if err := delegateInSandbox(sb, o.Env, env, base); err != nil {
			return err
		}
	}

	secrets, err := secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{StatePath: filepath.Join(stateDir, "secrets.json")})
	if err != nil {
		return fmt.Errorf("devserver: Secret Manager fake: %w", err)
	}
	defer secrets.Close()
	s.Secrets = secrets

	gcs, gcsClient, err := startStorage(ctx, o.StorageAddr)
	if err != nil {
		return err
	}
	defer gcs.Stop()
	defer gcsClient.Close()
	s.StorageURL = gcs.URL()

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
	// deliver dead-letters after maxDeliveries, as the deployed
	// subscription does after max_delivery_attempts.
	env["SEND_MAX_DELIVERY_ATTEMPTS"] = strconv.Itoa(maxDeliveries)

	psClient, err := pubsub.NewClient(ctx, Project, option.WithEndpoint(ps.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		return fmt.Errorf("devserver: Pub/Sub client: %w", err)
	}
	defer psClient.Close()
	apps := appsFrom(o.Env)
	s.SendTopics = slices.Sorted(maps.Keys(apps.Topics()))
	if err := createTopology(ctx, psClient, apps); err != nil {
		return err
	}
	smClient, err := secrets.NewClient(ctx)
	if err != nil {
		return fmt.Errorf("devserver: Secret Manager client: %w", err)
	}
	defer smClient.Close()
	// One registry and one ledger for every function: each is one file.
	reg, err := registry.NewLocal(filepath.Join(stateDir, "accounts.json"))
	if err != nil {
		return fmt.Errorf("devserver: local registry: %w", err)
	}
	led, err := ledger.NewLocal(filepath.Join(stateDir, "sends.json"))
	if err != nil {
		return fmt.Errorf("devserver: local ledger: %w", err)
	}
	defer led.Close()

	var lookup envconfig.Lookuper = config.MapLookuper(env)
	if o.Env != nil {
		lookup = envconfig.MultiLookuper(lookup, o.Env)
	}
	fns, err := build(ctx, lookup, wiring.Deps{PubSub: psClient, SecretManager: smClient, Registry: reg, Ledger: led, Logs: o.Logs, Storage: gcsClient})
	if err != nil {
		return err
	}
	// Registered last, so the functions stop their publishers before the
	// clients and servers under them close.
	defer func() {
		if cerr := fns.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("devserver: closing the functions: %w", cerr))
		}
	}()

	mux := http.NewServeMux()
	mux.Handle("/authorize", fns.handlers[authorize.Name])
	mux.Handle("/confirm", fns.handlers[confirm.Name])
	// The functions framework serves each function at an exact path; admin
	// has sub-routes, so it is mounted under /admin/ with the prefix
	// stripped, as Cloud Run would serve it at /.
	mux.Handle("/admin/", http.StripPrefix("/admin", fns.handlers[admin.Name]))
	hc := fns.handlers[healthcheck.Name]
	mux.HandleFunc("POST /healthcheck", func(w http.ResponseWriter, r *http.Request) {
		if code, body := runHealthcheck(r.Context(), hc); code != http.StatusOK {
			http.Error(w, "health check failed: "+body, http.StatusInternalServerError)
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
				runHealthcheck(runCtx, hc)
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
		if err := deliverApps(runCtx, psClient, fns.handlers[sender.Name], apps); err != nil {
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

// startStorage starts fakestorage on addr, in memory (a pending request
// does not outlive a restart either: pstest keeps none), with
// AttachmentsBucket, and returns it with a storage client pointed at it the
// way STORAGE_EMULATOR_HOST points one.
func startStorage(ctx context.Context, addr string) (*fakestorage.Server, *storage.Client, error) {
	portStr := "0" // unset: any free port, as for the other listeners
	if addr != "" {
		var err error
		if _, portStr, err = net.SplitHostPort(addr); err != nil {
			return nil, nil, fmt.Errorf("devserver: STORAGE address %q: %w", addr, err)
		}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, nil, fmt.Errorf("devserver: STORAGE_PORT %q is not a port number", portStr)
	}
	// The client reads objects through the XML API at the emulator's host,
	// which the fake serves only for its public host; 127.0.0.1 (not
	// localhost) is what both print and answer.
	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Port: uint16(port), PublicHost: "127.0.0.1",
	})
	if err != nil {
		return nil, nil, fmt.Errorf("devserver: the embedded Cloud Storage cannot listen on 127.0.0.1:%s (set STORAGE_PORT to use another port): %w", portStr, err)
	}
	client, err := storage.NewClient(ctx, option.WithEndpoint(gcs.URL()+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		gcs.Stop()
		return nil, nil, fmt.Errorf("devserver: Cloud Storage client: %w", err)
	}
	// Through the client rather than the fake's CreateBucket, which
	// panics on any error.
	if err := client.Bucket(AttachmentsBucket).Create(ctx, Project, nil); err != nil {
		client.Close()
		gcs.Stop()
		return nil, nil, fmt.Errorf("devserver: creating bucket %s: %w", AttachmentsBucket, err)
	}
	return gcs, client, nil
}

// appsFrom reads APPS as the sender will. A value it refuses stands in as
// the default app here: building the sender then names every problem.
func appsFrom(env envconfig.Lookuper) *policy.Apps {
	var v string
	if env != nil {
		v, _ = env.Lookup("APPS")
	}
	apps, errs := policy.ParseApps(v)
	if len(errs) > 0 {
		return policy.DefaultApps()
	}
	return apps
}

func createTopology(ctx context.Context, c *pubsub.Client, apps *policy.Apps) error {
	topics := []string{ResultsTopic, DeadLetterTopic, AccountsTopic}
	subs := map[string]string{resultsSub: ResultsTopic, "gmail-send-dead-letter-dev": DeadLetterTopic}
	for t := range apps.Topics() {
		topics = append(topics, t)
		subs[apps.SubscriptionOf(t)] = t
	}
	for _, t := range topics {
		_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topicName(t)})
		if err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("devserver: creating topic %s: %w", t, err)
		}
	}
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

// deliverApps runs deliver for every app's push subscription, until ctx
// ends or one fails.
func deliverApps(ctx context.Context, c *pubsub.Client, sender http.Handler, apps *policy.Apps) error {
	g, ctx := errgroup.WithContext(ctx)
	for t := range apps.Topics() {
		g.Go(func() error { return deliver(ctx, c, sender, apps.SubscriptionOf(t)) })
	}
	return g.Wait()
}

// deliver does what a push subscription with a retry and dead-letter policy
// would: it posts each message of sendSub to the sender as a Pub/Sub push
// request naming that subscription, takes a 2xx answer as the ack and
// anything else as a nack, and, because pstest never pushes and redelivers
// a nack at once, waits with backoff before each nack and dead-letters
// after maxDeliveries.
func deliver(ctx context.Context, c *pubsub.Client, sender http.Handler, sendSub string) error {
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
		code, _ := Push(ctx, sender, &push.Message{ID: run + "-" + m.ID, Data: m.Data, Attributes: m.Attributes,
			PublishTime: m.PublishTime, DeliveryAttempt: n, Subscription: subName(sendSub)})
		if code >= 200 && code < 300 {
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
		return fmt.Errorf("devserver: receiving send requests on %s: %w", sendSub, err)
	}
	return nil
}

// Push posts m to h as Pub/Sub would push it, in-process, and returns the
// answer's status and body. A message that cannot be encoded answers 500,
// a nack, as an unreachable endpoint would.
func Push(ctx context.Context, h http.Handler, m *push.Message) (int, string) {
	body, err := push.EncodePush(m)
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", bytes.NewReader(body))
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
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
	send := "make send ACCOUNT=<connected address> TO=bob@example.org"
	if len(s.SendTopics) != 1 || s.SendTopics[0] != SendTopic {
		// With APPS, every app publishes on its own topic.
		send = "go run ./scripts/publish -topic <topic> < request.json"
		fmt.Fprintf(out, "  Send topics (APPS):  %s\n", strings.Join(s.SendTopics, ", "))
	}
	fmt.Fprintf(out, `  Send a message:      %s
  Attachments bucket:  gs://%s/<app>/ (default/ without APPS), for attachments[].gcs_uri

PUBSUB_EMULATOR_HOST=%s
STORAGE_EMULATOR_HOST=%s
`, send, AttachmentsBucket, s.PubSubAddr, s.StorageURL)
}

// runHealthcheck runs the healthcheck function once, with the push request
// Cloud Scheduler's Pub/Sub message would make.
func runHealthcheck(ctx context.Context, h http.Handler) (int, string) {
	return Push(ctx, h, &push.Message{ID: "dev-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Data: []byte(`{"trigger":"dev"}`), PublishTime: time.Now(), Subscription: subName("gmail-healthcheck-dev")})
}

// functionSet is the built functions and what closes them.
type functionSet struct {
	handlers map[string]http.Handler
	closers  []io.Closer
}

// Close closes every function, last built first.
func (f *functionSet) Close() error {
	var errs []error
	for _, c := range slices.Backward(f.closers) {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	f.closers = nil
	return errors.Join(errs...)
}

// build builds every function with its production constructor. When any
// fails, it closes those built and reports every problem once (the
// functions share most settings, so a bad one would be named five times).
func build(ctx context.Context, env envconfig.Lookuper, deps wiring.Deps) (*functionSet, error) {
	constructors := []struct {
		name string
		new  func(context.Context, envconfig.Lookuper, wiring.Deps) (http.Handler, io.Closer, error)
	}{
		{authorize.Name, authorize.New}, {confirm.Name, confirm.New}, {admin.Name, admin.New},
		{sender.Name, sender.New}, {healthcheck.Name, healthcheck.New},
	}
	fns := &functionSet{handlers: map[string]http.Handler{}}
	var problems []string
	for _, c := range constructors {
		h, closer, err := c.new(ctx, env, deps)
		if err != nil {
			for _, p := range entrypoint.Problems(err) {
				if !slices.Contains(problems, p) {
					problems = append(problems, p)
				}
			}
			continue
		}
		fns.handlers[c.name] = h
		fns.closers = append(fns.closers, closer)
	}
	if len(problems) == 0 {
		return fns, nil
	}
	err := fmt.Errorf("devserver: the functions cannot start:\n  - %s", strings.Join(problems, "\n  - "))
	if cerr := fns.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return nil, err
}

// DevDelegate is the delegate service account make dev signs as when
// DELEGATED_DOMAINS is set without DELEGATE_SERVICE_ACCOUNT.
const DevDelegate = "delegate@" + Project + ".iam.gserviceaccount.com"

// delegateInSandbox plays the Workspace admin for DELEGATED_DOMAINS: the
// sandbox authorises the delegate's client ID for gmail.send in each
// domain, and the functions sign through the sandbox's signJwt, so any
// user of those domains sends with no connect step.
func delegateInSandbox(sb *sandbox.Server, l envconfig.Lookuper, env map[string]string, base string) error {
	if l == nil {
		return nil
	}
	raw, _ := l.Lookup("DELEGATED_DOMAINS")
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	sa, _ := l.Lookup("DELEGATE_SERVICE_ACCOUNT")
	if sa = strings.TrimSpace(sa); sa == "" {
		sa = DevDelegate
	}
	clientID := sandbox.ServiceAccountClientID(sa)
	for _, d := range strings.Split(raw, ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		if err := sb.SetDelegation(sandbox.Delegation{Domain: d, ClientID: clientID, Scopes: []string{sandbox.ScopeGmailSend}, Enabled: true}); err != nil {
			return fmt.Errorf("devserver: DELEGATED_DOMAINS: %w", err)
		}
	}
	env["DELEGATE_SERVICE_ACCOUNT"] = sa
	env["DELEGATE_CLIENT_ID"] = clientID
	env["DELEGATION_ENDPOINT"] = base
	return nil
}
