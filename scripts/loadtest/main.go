// Command loadtest measures the packaged sender as a process, on loopback:
//
//	-mode=build      package the source (scripts/package.sh) and build it the
//	                 way the Cloud Run Go buildpack does; prints the binary
//	                 path and size
//	-mode=load       one sender process (FUNCTION_TARGET=sender) behind the
//	                 gcloud Pub/Sub emulator's push subscription; Gmail is
//	                 the sandbox, Secret Manager the fake, both in this
//	                 process; reports msgs/s and publish→Gmail-accepted
//	                 latency
//	-mode=push       the same sender process, pushed to directly by this
//	                 process at -concurrency, without the emulator
//	-mode=noop       the emulator alone, pushing to a no-op endpoint here
//	-mode=large      peak RSS (VmHWM) of the sender process for the largest
//	                 request Pub/Sub can carry, and of a process that
//	                 composes and sends a 30 MB message with the relay's code
//	-mode=coldstart  process start → listening → first push served
//
// Figures go to stdout as "FIGURE<TAB>name<TAB>value" lines, for
// scripts/bench.sh; progress goes to stderr. Every wait is bounded.
package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/procstat"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

const (
	modulePath   = "github.com/gmailrelay/gmailrelay"
	clientID     = "123456789012-loadtest.apps.googleusercontent.com"
	clientSecret = "loadtest-secret"
	redirectURL  = "http://127.0.0.1/confirm"
	sendTopic    = "gmail-send"
	resultsTopic = "gmail-send-results"
)

// buildpackMain is the program the Go functions buildpack generates for
// functions that register themselves in init().
const buildpackMain = `package main

import (
	"log"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	_ "` + modulePath + `"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("serving: %v", err)
	}
}
`

var (
	mode        = flag.String("mode", "", "build, load, push, noop, large or coldstart")
	binPath     = flag.String("bin", "", "the sender binary (from -mode=build)")
	outDir      = flag.String("out", "", "build: directory for the build")
	n           = flag.Int("n", 10000, "load, noop: messages to send")
	accounts    = flag.Int("accounts", 50, "load: connected accounts")
	rate        = flag.Float64("rate", 0, "load, noop: publish rate in msgs/s (0: as fast as possible)")
	store       = flag.String("store", "local", "load: the sender's store backend, local or firestore (FIRESTORE_EMULATOR_HOST)")
	limit       = flag.Int("concurrency", 80, "load: requests in flight at the sender, enforced by a proxy as Cloud Run does (0: no proxy)")
	runs        = flag.Int("runs", 5, "coldstart: process starts")
	label       = flag.String("label", "", "prefix for figure names")
	maxDuration = flag.Duration("timeout", 10*time.Minute, "bound on one run")
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("loadtest: ")
	flag.Parse()
	var err error
	switch *mode {
	case "build":
		err = build()
	case "load":
		err = load()
	case "push":
		err = push()
	case "noop":
		err = noop()
	case "large":
		err = large()
	case "large-child":
		err = largeChild()
	case "coldstart":
		err = coldstart()
	default:
		err = errors.New("-mode must be build, load, push, noop, large or coldstart")
	}
	if err != nil {
		log.Fatal(err)
	}
}

func figure(name, format string, args ...any) {
	if *label != "" {
		name = *label + "." + name
	}
	fmt.Printf("FIGURE\t%s\t%s\n", name, fmt.Sprintf(format, args...))
}

// ---- build ----------------------------------------------------------------

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for i := 0; i < 10; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		dir = filepath.Dir(dir)
	}
	return "", errors.New("run from inside the gmail-relay repository")
}

func build() error {
	if *outDir == "" {
		return errors.New("-out is required")
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	out, err := filepath.Abs(*outDir)
	if err != nil {
		return err
	}
	_ = os.RemoveAll(out)
	src, app := filepath.Join(out, "src"), filepath.Join(out, "app")
	archive := filepath.Join(out, "function-source.zip")
	if err := run(root, nil, "bash", filepath.Join(root, "scripts", "package.sh"), archive); err != nil {
		return err
	}
	if err := unzip(archive, src); err != nil {
		return err
	}
	if err := os.MkdirAll(app, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(buildpackMain), 0o644); err != nil {
		return err
	}
	sum, err := os.ReadFile(filepath.Join(src, "go.sum"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(app, "go.sum"), sum, 0o644); err != nil {
		return err
	}
	env := []string{"GOWORK=off", "GOFLAGS=-mod=mod"}
	for _, args := range [][]string{
		{"mod", "init", "functions.local/app"},
		{"mod", "edit", "-require", modulePath + "@v0.0.0"},
		{"mod", "edit", "-replace", modulePath + "@v0.0.0=" + src},
		{"mod", "tidy"},
		{"build", "-o", filepath.Join(app, "server"), "."},
	} {
		if err := run(app, env, "go", args...); err != nil {
			return err
		}
	}
	bin := filepath.Join(app, "server")
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "built", bin)
	figure("binary_size", "%.1f MB (%d bytes)", float64(st.Size())/1e6, st.Size())
	return nil
}

func run(dir string, extraEnv []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func unzip(archive, dir string) error {
	zr, err := zip.OpenReader(archive)
	if err != nil {
		return err
	}
	defer zr.Close()
	for _, f := range zr.File {
		if strings.Contains(f.Name, "..") || filepath.IsAbs(f.Name) {
			return fmt.Errorf("unsafe name in archive: %s", f.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ---- the fake Google in this process ----------------------------------------

type fakeGoogle struct {
	sb      *sandbox.Server
	url     string
	sm      *secretfake.Server
	tokens  *tokenstore.Store
	outbox  string
	closers []func()
}

func scratch(prefix string) (string, error) {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", prefix); err == nil {
			return d, nil
		}
	}
	return os.MkdirTemp("", prefix)
}

func startGoogle(ctx context.Context, dir, project string) (*fakeGoogle, error) {
	g := &fakeGoogle{outbox: filepath.Join(dir, "outbox")}
	var err error
	if g.sb, err = sandbox.New(sandbox.Options{OutboxDir: g.outbox}); err != nil {
		return nil, err
	}
	if err := g.sb.RegisterClient(sandbox.Client{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURL}}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: g.sb}
	go srv.Serve(ln)
	g.url = "http://" + ln.Addr().String()
	g.closers = append(g.closers, func() { g.sb.Close(); srv.Close() })
	if g.sm, err = secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{}); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, func() { g.sm.Close() })
	smc, err := g.sm.NewClient(ctx)
	if err != nil {
		return nil, err
	}
	g.closers = append(g.closers, func() { smc.Close() })
	g.tokens = tokenstore.New(smc, project)
	return g, nil
}

func (g *fakeGoogle) close() {
	for i := len(g.closers) - 1; i >= 0; i-- {
		g.closers[i]()
	}
}

// grant consents as email on the sandbox and exchanges the code.
func (g *fakeGoogle) grant(ctx context.Context, email string) (*oauth2.Token, error) {
	conf := &oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirectURL, Scopes: oauth.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: g.url + sandbox.AuthPath, TokenURL: g.url + sandbox.TokenPath, AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	loc, err := sandbox.Consent(ctx, nil, conf.AuthCodeURL("lt", oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier)), email)
	if err != nil {
		return nil, err
	}
	return conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
}

// connect stores email's token in Secret Manager and the account in reg.
func (g *fakeGoogle) connect(ctx context.Context, reg registry.Store, email string) error {
	tok, err := g.grant(ctx, email)
	if err != nil {
		return fmt.Errorf("connecting %s: %w", email, err)
	}
	now := time.Now().UTC()
	if err := g.tokens.Save(ctx, email, tokenstore.Token{RefreshToken: tok.RefreshToken, Scopes: oauth.Scopes, IssuedAt: now, ClientID: clientID}); err != nil {
		return err
	}
	return reg.Upsert(ctx, &registry.Account{Email: email, Status: registry.StatusConnected, Scopes: oauth.Scopes,
		ConnectedAt: now, TokenIssuedAt: now, LastRefreshAt: now, UpdatedAt: now})
}

// ---- requests ---------------------------------------------------------------

// request is a small message (about 3 KB text, 5 KB html), the same shape
// as the in-process benchmarks'; seq rides in X-Bench-Seq.
func request(account string, seq int) []byte {
	para := "Thank you for your order. Your invoice is attached to this message, and a copy is kept in your account. "
	text := strings.Repeat(para, 30)[:3000]
	html := "<html><body><p>" + strings.Repeat("<b>Thank you</b> for your order. Your invoice is attached. ", 90)[:4960] + "</p></body></html>"
	key := "lt-" + strconv.Itoa(seq)
	b, err := json.Marshal(message.Request{Account: account, FromName: "Acme Billing", To: []string{"Bob Example <bob@example.org>"},
		Subject: "Invoice " + key, Text: text, HTML: html, Headers: map[string]string{"X-Bench-Seq": strconv.Itoa(seq)}, IdempotencyKey: key})
	if err != nil {
		panic(err)
	}
	return b
}

// pushBody is what a push subscription POSTs.
func pushBody(id string, data []byte, project string) []byte {
	b, _ := json.Marshal(map[string]any{
		"message":      map[string]any{"data": base64.StdEncoding.EncodeToString(data), "messageId": id, "attributes": map[string]string{}},
		"subscription": "projects/" + project + "/subscriptions/direct",
	})
	return b
}

// seqOf reads X-Bench-Seq from an .eml file's header.
func seqOf(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 8192)
	k, _ := io.ReadFull(f, buf)
	head := buf[:k]
	_, after, ok := bytes.Cut(head, []byte("\nX-Bench-Seq: "))
	if !ok {
		return 0, fmt.Errorf("%s: no X-Bench-Seq", path)
	}
	v, _, _ := bytes.Cut(after, []byte("\r\n"))
	return strconv.Atoi(string(v))
}

// ---- the sender process -------------------------------------------------------

type proc struct {
	cmd  *exec.Cmd
	port int
	done chan struct{}
	log  *os.File
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// senderEnv is the deployed sender's configuration pointed at the fakes.
func senderEnv(g *fakeGoogle, project, stateDir, pubsubHost, backend string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + stateDir, "TMPDIR=" + stateDir,
		"FUNCTION_TARGET=sender", "GOOGLE_CLOUD_PROJECT=" + project, "LOG_LEVEL=info",
		"OAUTH_CLIENT_ID=" + clientID, "OAUTH_CLIENT_SECRET=" + clientSecret,
		"OAUTH_AUTH_URL=" + g.url + sandbox.AuthPath, "OAUTH_TOKEN_URL=" + g.url + sandbox.TokenPath,
		"OAUTH_REVOKE_URL=" + g.url + sandbox.RevokePath, "GMAIL_ENDPOINT=" + g.url + "/",
		"STORE_BACKEND=" + backend, "DEV_STATE_DIR=" + stateDir, "RESULTS_TOPIC=" + resultsTopic,
		"CONNECT_URL=https://relay.example/authorize", "PUBSUB_EMULATOR_HOST=" + pubsubHost,
		"SECRET_MANAGER_EMULATOR_HOST=" + g.sm.Addr(),
	}
	if h := os.Getenv("FIRESTORE_EMULATOR_HOST"); h != "" && backend == "firestore" {
		env = append(env, "FIRESTORE_EMULATOR_HOST="+h)
	}
	return env
}

// startSender starts the binary; its output (JSON logs) goes to a file.
func startSender(bin string, env []string, logPath string) (*proc, time.Time, error) {
	port, err := freePort()
	if err != nil {
		return nil, time.Time{}, err
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, time.Time{}, err
	}
	p := &proc{port: port, done: make(chan struct{}), log: lf}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(slices.Clone(env), "PORT="+strconv.Itoa(port))
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	t0 := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, t0, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, t0, nil
}

func (p *proc) url() string { return fmt.Sprintf("http://127.0.0.1:%d", p.port) }

// waitListening polls until the port accepts, for at most 30 s.
func (p *proc) waitListening() error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("the sender exited: %v (log %s)", p.cmd.ProcessState, p.log.Name())
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("the sender did not listen within 30s")
}

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	p.log.Close()
}

// ---- Pub/Sub emulator ------------------------------------------------------------

func emulatorHost() (string, error) {
	for _, k := range []string{"GCLOUD_PUBSUB_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"} {
		if h := os.Getenv(k); h != "" {
			return h, nil
		}
	}
	return "", errors.New("GCLOUD_PUBSUB_EMULATOR_HOST is not set: start the emulator with scripts/emulators.sh start")
}

func pubsubClient(ctx context.Context, host, project string) (*pubsub.Client, error) {
	return pubsub.NewClient(ctx, project, option.WithEndpoint(host), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
}

// setupTopics creates the send topic with a push subscription to endpoint
// (with the deployed retry policy), and the results topic with a pull
// subscription for counting.
func setupTopics(ctx context.Context, c *pubsub.Client, project, endpoint string) error {
	name := func(kind, id string) string { return "projects/" + project + "/" + kind + "/" + id }
	for _, t := range []string{sendTopic, resultsTopic} {
		if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name("topics", t)}); err != nil {
			return err
		}
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: name("subscriptions", "sender-push"), Topic: name("topics", sendTopic), AckDeadlineSeconds: 60,
		PushConfig:  &pubsubpb.PushConfig{PushEndpoint: endpoint},
		RetryPolicy: &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(10 * time.Second), MaximumBackoff: durationpb.New(600 * time.Second)},
	}); err != nil {
		return err
	}
	_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: name("subscriptions", "results-count"), Topic: name("topics", resultsTopic), AckDeadlineSeconds: 600})
	return err
}

// countResults pulls and acks results until want arrived or wait passed.
func countResults(ctx context.Context, c *pubsub.Client, project string, want int, wait time.Duration) (map[string]int, error) {
	sub := "projects/" + project + "/subscriptions/results-count"
	got := map[string]int{}
	total := 0
	deadline := time.Now().Add(wait)
	for total < want && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 1000})
		cancel()
		if err != nil {
			if pctx.Err() != nil {
				continue
			}
			return got, err
		}
		var ids []string
		for _, m := range resp.ReceivedMessages {
			got[m.Message.Attributes["status"]]++
			total++
			ids = append(ids, m.AckId)
		}
		if len(ids) > 0 {
			if err := c.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids}); err != nil {
				return got, err
			}
		}
	}
	return got, nil
}

// publishAll publishes count messages made by data(i), at rate per second
// (0: unpaced), and returns when each publish was started.
func publishAll(ctx context.Context, c *pubsub.Client, count int, perSecond float64, data func(i int) ([]byte, map[string]string)) ([]time.Time, time.Duration, error) {
	p := c.Publisher(sendTopic)
	p.PublishSettings.FlowControlSettings.MaxOutstandingMessages = 2000
	defer p.Stop()
	started := make([]time.Time, count)
	results := make([]*pubsub.PublishResult, count)
	t0 := time.Now()
	for i := 0; i < count; i++ {
		if perSecond > 0 {
			if d := time.Until(t0.Add(time.Duration(float64(i) / perSecond * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		d, attrs := data(i)
		started[i] = time.Now()
		results[i] = p.Publish(ctx, &pubsub.Message{Data: d, Attributes: attrs})
	}
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			return nil, 0, err
		}
	}
	return started, time.Since(t0), nil
}

type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ---- load -----------------------------------------------------------------------

// limiter forwards to the sender with at most limit requests in flight, as
// Cloud Run's per-instance concurrency does; the rest wait in line.
func limiter(target string, limit int) http.Handler {
	sem := make(chan struct{}, limit)
	tr := &http.Transport{MaxIdleConns: limit * 2, MaxIdleConnsPerHost: limit * 2, MaxConnsPerHost: limit}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sem <- struct{}{}
		defer func() { <-sem }()
		req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		req.ContentLength = r.ContentLength
		res, err := tr.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		_, _ = io.Copy(w, res.Body)
	})
}

func load() error { return runLoad(false) }

// push is load without the emulator: this process pushes directly, as
// many at a time as -concurrency, so that the sender process meets the
// concurrency Cloud Run would give it.
func push() error { return runLoad(true) }

func runLoad(direct bool) error {
	if *binPath == "" {
		return errors.New("-bin is required (build it with -mode=build)")
	}
	ctx := context.Background()
	project := fmt.Sprintf("loadtest-%d", rand.IntN(1e9))
	var host string
	if direct {
		ps := pstest.NewServer()
		defer ps.Close()
		host = ps.Addr
	} else {
		h, err := emulatorHost()
		if err != nil {
			return err
		}
		host = h
	}
	dir, err := scratch("gmailrelay-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	g, err := startGoogle(ctx, dir, project)
	if err != nil {
		return err
	}
	defer g.close()

	state := filepath.Join(dir, "state")
	var reg registry.Store
	switch *store {
	case "local":
		if reg, err = registry.NewLocal(filepath.Join(state, "accounts.json")); err != nil {
			return err
		}
	case "firestore":
		if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" {
			return errors.New("-store=firestore needs FIRESTORE_EMULATOR_HOST")
		}
		fs, err := firestore.NewClient(ctx, project)
		if err != nil {
			return err
		}
		defer fs.Close()
		reg = registry.NewFirestore(fs)
	default:
		return fmt.Errorf("-store %q: want local or firestore", *store)
	}
	var emails []string
	for i := 0; i < *accounts; i++ {
		e := fmt.Sprintf("user%03d@example.com", i)
		emails = append(emails, e)
		if err := g.connect(ctx, reg, e); err != nil {
			return err
		}
	}

	sp, _, err := startSender(*binPath, senderEnv(g, project, state, host, *store), filepath.Join(dir, "sender.log"))
	if err != nil {
		return err
	}
	defer sp.stop()
	if err := sp.waitListening(); err != nil {
		return err
	}
	ps, err := pubsubClient(ctx, host, project)
	if err != nil {
		return err
	}
	defer ps.Close()
	endpoint := sp.url() + "/projects/" + project + "/topics/" + sendTopic
	var inflight, maxInflight atomic.Int64
	if *limit > 0 && !direct {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lim := limiter(sp.url(), *limit)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v := inflight.Add(1)
			for m := maxInflight.Load(); v > m && !maxInflight.CompareAndSwap(m, v); m = maxInflight.Load() {
			}
			defer inflight.Add(-1)
			lim.ServeHTTP(w, r)
		})}
		go srv.Serve(ln)
		defer srv.Close()
		endpoint = "http://" + ln.Addr().String() + "/projects/" + project + "/topics/" + sendTopic
	}
	if err := setupTopics(ctx, ps, project, endpoint); err != nil {
		return err
	}
	// send delivers count messages made by data(i), through the emulator or
	// by pushing directly, and returns when each was started.
	send := func(count int, data func(i int) []byte) ([]time.Time, time.Duration, error) {
		if !direct {
			return publishAll(ctx, ps, count, *rate, func(i int) ([]byte, map[string]string) { return data(i), nil })
		}
		bodies := make([][]byte, count)
		for i := range bodies {
			bodies[i] = pushBody(fmt.Sprintf("direct-%d", i), data(i), project)
		}
		return pushAll(endpoint, bodies, max(*limit, 1), *rate, &maxInflight)
	}

	// Warm-up: one message per account, so every token is read and
	// refreshed before the measured run, as at steady state.
	log.Printf("warm-up: %d accounts", len(emails))
	if _, _, err := send(len(emails), func(i int) []byte { return request(emails[i], -1-i) }); err != nil {
		return err
	}
	if err := waitOutbox(g, len(emails), time.Minute); err != nil {
		return err
	}
	warm := len(g.sb.Outbox())
	maxInflight.Store(0)

	via := "emulator push"
	if direct {
		via = "direct push"
	}
	log.Printf("run: %d messages by %s, rate %s, store %s, concurrency %d", *n, via, rateString(*rate), *store, *limit)
	cpu0 := procstat.CPUSeconds(sp.cmd.Process.Pid)
	t0 := time.Now()
	started, pubTook, err := send(*n, func(i int) []byte { return request(emails[i%len(emails)], i) })
	if err != nil {
		return err
	}
	if err := waitOutbox(g, warm+*n, *maxDuration); err != nil {
		log.Print(err)
	}
	out := g.sb.Outbox()[warm:]
	cpu := procstat.CPUSeconds(sp.cmd.Process.Pid) - cpu0
	hwm := procstat.PeakRSSKB(sp.cmd.Process.Pid)
	var last time.Time
	var lat latencies
	seen := map[int]int{}
	for _, m := range out {
		s, err := seqOf(m.Path)
		if err != nil {
			return err
		}
		seen[s]++
		if s >= 0 && s < len(started) && seen[s] == 1 {
			lat = append(lat, m.Time.Sub(started[s]))
		}
		if m.Time.After(last) {
			last = m.Time
		}
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	res, err := countResults(ctx, ps, project, warm+*n, time.Minute)
	if err != nil {
		return err
	}
	// From the first publish or push, not from t0: direct push encodes its
	// bodies first.
	var first time.Time
	for _, st := range started {
		if !st.IsZero() && (first.IsZero() || st.Before(first)) {
			first = st
		}
	}
	if first.IsZero() {
		first = t0
	}
	span := last.Sub(first)
	what := "publish"
	if direct {
		what = "push"
	}
	figure("accepted", "%d of %d (%d duplicates)", len(seen), *n, dups)
	figure("throughput", "%.0f msgs/s (%d msgs in %.2fs, first %s to last Gmail accept; %s took %.2fs; store %s)",
		float64(len(out))/span.Seconds(), len(out), span.Seconds(), what, what, pubTook.Seconds(), *store)
	figure("latency", "p50 %.1f ms, p99 %.1f ms, max %.1f ms (%s to Gmail-accepted, offered rate %s)",
		ms(lat.pct(50)), ms(lat.pct(99)), ms(lat.pct(100)), what, rateString(*rate))
	figure("sender_cpu", "%.0f µs/msg (sender process user+sys)", cpu*1e6/float64(max(len(out), 1)))
	figure("sender_rss", "%.1f MB peak (VmHWM)", float64(hwm)/1024)
	figure("results", "%v (want %d in all, warm-up included)", res, warm+*n)
	if *limit > 0 {
		figure("max_inflight", "%d pushes in flight at the sender (limit %d)", maxInflight.Load(), *limit)
	}
	if len(seen) != *n || dups != 0 {
		return fmt.Errorf("accepted %d distinct of %d with %d duplicates (sender log %s)", len(seen), *n, dups, sp.log.Name())
	}
	return nil
}

// pushAll POSTs bodies to endpoint, workers at a time, as a push
// subscription would; a non-2xx answer is retried after a short backoff,
// at most 10 times.
func pushAll(endpoint string, bodies [][]byte, workers int, perSecond float64, maxInflight *atomic.Int64) ([]time.Time, time.Duration, error) {
	started := make([]time.Time, len(bodies))
	tr := &http.Transport{MaxIdleConns: workers * 2, MaxIdleConnsPerHost: workers * 2}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	var inflight atomic.Int64
	work := make(chan int)
	var wg sync.WaitGroup
	var failures atomic.Int64
	t0 := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				started[i] = time.Now()
				for attempt := 0; attempt < 10; attempt++ {
					v := inflight.Add(1)
					for m := maxInflight.Load(); v > m && !maxInflight.CompareAndSwap(m, v); m = maxInflight.Load() {
					}
					res, err := client.Post(endpoint, "application/json", bytes.NewReader(bodies[i]))
					inflight.Add(-1)
					if err == nil {
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if res.StatusCode/100 == 2 {
							break
						}
					}
					if attempt == 9 {
						failures.Add(1)
					}
					time.Sleep(100 * time.Millisecond << min(attempt, 5))
				}
			}
		}()
	}
	for i := range bodies {
		if perSecond > 0 {
			if d := time.Until(t0.Add(time.Duration(float64(i) / perSecond * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		return started, time.Since(t0), fmt.Errorf("%d pushes never succeeded", f)
	}
	return started, time.Since(t0), nil
}

func rateString(r float64) string {
	if r <= 0 {
		return "unpaced"
	}
	return fmt.Sprintf("%.0f/s", r)
}

// waitOutbox waits until the sandbox accepted want messages.
func waitOutbox(g *fakeGoogle, want int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	lastN, lastChange := 0, time.Now()
	for time.Now().Before(deadline) {
		st := g.sb.Stats()
		got := int(st.SendsAccepted)
		if got >= want {
			return nil
		}
		if got != lastN {
			lastN, lastChange = got, time.Now()
		}
		if time.Since(lastChange) > 90*time.Second {
			return fmt.Errorf("stalled at %d of %d accepted messages", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("only %d of %d messages accepted within %s", g.sb.Stats().SendsAccepted, want, wait)
}

// ---- noop -------------------------------------------------------------------------

func noop() error {
	host, err := emulatorHost()
	if err != nil {
		return err
	}
	ctx := context.Background()
	project := fmt.Sprintf("loadtest-noop-%d", rand.IntN(1e9))
	type arrival struct {
		seq int
		at  time.Time
	}
	var mu sync.Mutex
	var arrivals []arrival
	var inflight, maxInflight atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := inflight.Add(1)
		for m := maxInflight.Load(); v > m && !maxInflight.CompareAndSwap(m, v); m = maxInflight.Load() {
		}
		defer inflight.Add(-1)
		var body struct {
			Message struct {
				Attributes map[string]string `json:"attributes"`
			} `json:"message"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		s, _ := strconv.Atoi(body.Message.Attributes["seq"])
		now := time.Now()
		mu.Lock()
		arrivals = append(arrivals, arrival{s, now})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ps, err := pubsubClient(ctx, host, project)
	if err != nil {
		return err
	}
	defer ps.Close()
	if err := setupTopics(ctx, ps, project, "http://"+ln.Addr().String()+"/projects/"+project+"/topics/"+sendTopic); err != nil {
		return err
	}
	payload := request("user000@example.com", 0)
	t0 := time.Now()
	started, pubTook, err := publishAll(ctx, ps, *n, *rate, func(i int) ([]byte, map[string]string) {
		return payload, map[string]string{"seq": strconv.Itoa(i)}
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(*maxDuration)
	for time.Now().Before(deadline) {
		mu.Lock()
		k := len(arrivals)
		mu.Unlock()
		if k >= *n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var last time.Time
	var lat latencies
	seen := map[int]bool{}
	for _, a := range arrivals {
		if a.seq >= 0 && a.seq < len(started) && !seen[a.seq] {
			seen[a.seq] = true
			lat = append(lat, a.at.Sub(started[a.seq]))
		}
		if a.at.After(last) {
			last = a.at
		}
	}
	span := last.Sub(t0)
	figure("pushed", "%d distinct of %d (%d pushes)", len(seen), *n, len(arrivals))
	figure("throughput", "%.0f msgs/s (%.2fs; publishing took %.2fs)", float64(len(seen))/span.Seconds(), span.Seconds(), pubTook.Seconds())
	figure("latency", "p50 %.1f ms, p99 %.1f ms (publish to push received, offered rate %s)", ms(lat.pct(50)), ms(lat.pct(99)), rateString(*rate))
	figure("max_inflight", "%d pushes in flight", maxInflight.Load())
	return nil
}

// ---- large ------------------------------------------------------------------------

// large measures peak RSS twice: (1) the packaged sender process serving the
// largest send request Pub/Sub can carry (10 MB of request data, pushed
// directly); (2) a process that composes and sends a 30 MB message with the
// relay's message and gmail packages (a 30 MB message cannot arrive through
// Pub/Sub, whose messages are at most 10 MB).
func large() error {
	if *binPath == "" {
		return errors.New("-bin is required")
	}
	ctx := context.Background()
	project := "loadtest-large"
	dir, err := scratch("gmailrelay-large-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	g, err := startGoogle(ctx, dir, project)
	if err != nil {
		return err
	}
	defer g.close()
	ps := pstest.NewServer()
	defer ps.Close()
	psc, err := pubsubClient(ctx, ps.Addr, project)
	if err != nil {
		return err
	}
	defer psc.Close()
	if _, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + resultsTopic}); err != nil {
		return err
	}
	state := filepath.Join(dir, "state")
	reg, err := registry.NewLocal(filepath.Join(state, "accounts.json"))
	if err != nil {
		return err
	}
	const email = "big@example.com"
	if err := g.connect(ctx, reg, email); err != nil {
		return err
	}

	// (1) The packaged sender, largest request.
	sp, _, err := startSender(*binPath, senderEnv(g, project, state, ps.Addr, "local"), filepath.Join(dir, "sender.log"))
	if err != nil {
		return err
	}
	defer sp.stop()
	if err := sp.waitListening(); err != nil {
		return err
	}
	small := pushBody("warm", request(email, 1), project)
	if err := post(sp.url()+"/projects/"+project+"/topics/"+sendTopic, small); err != nil {
		return err
	}
	hwm0 := procstat.PeakRSSKB(sp.cmd.Process.Pid)
	// The attachment's base64 fills the request to just under 10 MB.
	att := make([]byte, (message.MaxRequestSize-20_000)/4*3)
	fillPseudoRandom(att)
	data, err := json.Marshal(message.Request{Account: email, To: []string{"bob@example.org"}, Subject: "large", Text: "see attachment",
		Attachments: []message.Attachment{{Filename: "big.bin", ContentType: "application/octet-stream", Data: att}}, IdempotencyKey: "large-1"})
	if err != nil {
		return err
	}
	if err := post(sp.url()+"/projects/"+project+"/topics/"+sendTopic, pushBody("large-1", data, project)); err != nil {
		return err
	}
	hwm1 := procstat.PeakRSSKB(sp.cmd.Process.Pid)
	out := g.sb.Outbox()
	if len(out) != 2 {
		return fmt.Errorf("the sandbox accepted %d messages, want 2 (sender log %s)", len(out), sp.log.Name())
	}
	size := out[1].Size
	figure("max_request", "request %.1f MB → message %.1f MB; sender VmHWM %.0f MB (%.1fx the message; %.0f MB before it)",
		float64(len(data))/1e6, float64(size)/1e6, float64(hwm1)*1024/1e6, float64(hwm1)*1024/float64(size), float64(hwm0)*1024/1e6)

	// (2) A 30 MB message through the relay's compose and send code, in a
	// process of its own.
	tok, err := g.grant(ctx, email)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-mode=large-child")
	cmd.Env = append(os.Environ(), "LOADTEST_GMAIL="+g.url+"/", "LOADTEST_TOKEN="+tok.AccessToken, "LOADTEST_ACCOUNT="+email)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("large-child: %v", err)
	}
	var res struct {
		Size      int64 `json:"size"`
		HWMStart  int64 `json:"hwm_start_kb"`
		HWMBefore int64 `json:"hwm_before_kb"`
		HWM       int64 `json:"hwm_kb"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return fmt.Errorf("large-child said %q: %v", stdout.String(), err)
	}
	out = g.sb.Outbox()
	if len(out) != 3 || out[2].Size != res.Size {
		return fmt.Errorf("the sandbox holds %d messages; want the 30 MB one as the third", len(out))
	}
	figure("30mb", "message %.1f MB; VmHWM %.0f MB = %.1fx the message (%.0f MB at process start, %.0f MB once the 22 MB attachment is in memory)",
		float64(res.Size)/1e6, float64(res.HWM)*1024/1e6, float64(res.HWM)*1024/float64(res.Size), float64(res.HWMStart)*1024/1e6, float64(res.HWMBefore)*1024/1e6)
	return nil
}

func fillPseudoRandom(b []byte) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

func post(url string, body []byte) error {
	c := &http.Client{Timeout: 5 * time.Minute}
	res, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", url, res.Status, b)
	}
	return nil
}

// largeChild composes a 30 MB message (a 22 MB attachment) and sends it
// with the relay's gmail client, then reports its peak RSS.
func largeChild() error {
	ctx := context.Background()
	hwmStart := procstat.PeakRSSKB(os.Getpid())
	att := make([]byte, 22_000_000)
	fillPseudoRandom(att)
	req := &message.Request{Account: os.Getenv("LOADTEST_ACCOUNT"), To: []string{"bob@example.org"}, Subject: "thirty",
		Text: "see attachment", Attachments: []message.Attachment{{Filename: "big.bin", ContentType: "application/octet-stream", Data: att}}}
	hwm0 := procstat.PeakRSSKB(os.Getpid())
	raw, err := message.Compose(req, message.ComposeOptions{Now: time.Now()})
	if err != nil {
		return err
	}
	box, err := gmail.New(os.Getenv("LOADTEST_GMAIL"), nil).Mailbox(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: os.Getenv("LOADTEST_TOKEN")}))
	if err != nil {
		return err
	}
	if _, err := gmail.Send(ctx, box, raw, ""); err != nil {
		return err
	}
	hwm := procstat.PeakRSSKB(os.Getpid())
	return json.NewEncoder(os.Stdout).Encode(map[string]int64{"size": int64(len(raw)), "hwm_start_kb": hwmStart, "hwm_before_kb": hwm0, "hwm_kb": hwm})
}

// ---- coldstart ----------------------------------------------------------------------

func coldstart() error {
	if *binPath == "" {
		return errors.New("-bin is required")
	}
	ctx := context.Background()
	project := "loadtest-cold"
	dir, err := scratch("gmailrelay-cold-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	g, err := startGoogle(ctx, dir, project)
	if err != nil {
		return err
	}
	defer g.close()
	ps := pstest.NewServer()
	defer ps.Close()
	psc, err := pubsubClient(ctx, ps.Addr, project)
	if err != nil {
		return err
	}
	defer psc.Close()
	if _, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + resultsTopic}); err != nil {
		return err
	}
	var listen, first, second latencies
	for i := 0; i < *runs; i++ {
		state := filepath.Join(dir, fmt.Sprintf("state-%d", i))
		reg, err := registry.NewLocal(filepath.Join(state, "accounts.json"))
		if err != nil {
			return err
		}
		email := fmt.Sprintf("cold%d@example.com", i)
		if err := g.connect(ctx, reg, email); err != nil {
			return err
		}
		sp, t0, err := startSender(*binPath, senderEnv(g, project, state, ps.Addr, "local"), filepath.Join(dir, fmt.Sprintf("sender-%d.log", i)))
		if err != nil {
			return err
		}
		err = func() error {
			defer sp.stop()
			if err := sp.waitListening(); err != nil {
				return err
			}
			listen = append(listen, time.Since(t0))
			url := sp.url() + "/projects/" + project + "/topics/" + sendTopic
			if err := post(url, pushBody(fmt.Sprintf("c%d-1", i), request(email, 2*i), project)); err != nil {
				return err
			}
			first = append(first, time.Since(t0))
			t1 := time.Now()
			if err := post(url, pushBody(fmt.Sprintf("c%d-2", i), request(email, 2*i+1), project)); err != nil {
				return err
			}
			second = append(second, time.Since(t1))
			return nil
		}()
		if err != nil {
			return err
		}
	}
	if got := len(g.sb.Outbox()); got != 2**runs {
		return fmt.Errorf("the sandbox accepted %d messages, want %d", got, 2**runs)
	}
	st, err := os.Stat(*binPath)
	if err != nil {
		return err
	}
	figure("coldstart", "median %.0f ms to the first push served (a full send: config, clients, token read and refresh, Gmail, result); %.0f ms to listening; next push %.1f ms; %d runs",
		ms(first.pct(50)), ms(listen.pct(50)), ms(second.pct(50)), *runs)
	figure("binary_size", "%.1f MB", float64(st.Size())/1e6)
	return nil
}
