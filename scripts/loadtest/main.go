// Command loadtest measures the packaged sender as a process, with every
// fake Google (sandbox, Secret Manager fake, pstest for results) in this
// process, on loopback:
//
//	-mode=build      package the source (scripts/package.sh) and build it the
//	                 way the Cloud Run Go buildpack does; prints the binary
//	                 path and size
//	-mode=push       one sender process (FUNCTION_TARGET=sender) at the
//	                 deployed settings, pushed to directly at -concurrency,
//	                 with the sandbox answering each send after
//	                 -gmail-latency; reports msgs/s, push-to-ack latency,
//	                 the sender's CPU per message and peak RSS (VmHWM)
//	-mode=large      peak RSS (VmHWM) of the sender process for the largest
//	                 request Pub/Sub can carry, and of a process that
//	                 composes and sends a 30 MB message with the relay's code
//	-mode=coldstart  process start → listening → first push served
//	-mode=kill       2,000 messages while the sender is killed (SIGKILL) and
//	                 restarted five times; lost, duplicates, unflagged (kill.go)
//	-mode=burst      peak RSS of the sender under 80 pushes of nearly 10 MB
//	                 at once, then 80 invalid ones of 9.9 MB (burst.go)
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
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/procstat"
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
	mode         = flag.String("mode", "", "build, push, large or coldstart")
	binPath      = flag.String("bin", "", "the sender binary (from -mode=build)")
	outDir       = flag.String("out", "", "build: directory for the build")
	n            = flag.Int("n", 3000, "push: messages to send")
	accounts     = flag.Int("accounts", 50, "push: connected accounts")
	limit        = flag.Int("concurrency", 80, "push: requests in flight at the sender, as Cloud Run's max_instance_request_concurrency allows")
	gmailLatency = flag.Duration("gmail-latency", 300*time.Millisecond, "push: how long the sandbox takes to answer each send")
	memLimit     = flag.String("gomemlimit", "", "push: GOMEMLIMIT for the sender process (empty: unset)")
	runs         = flag.Int("runs", 5, "coldstart: process starts")
	label        = flag.String("label", "", "prefix for figure names")
	maxDuration  = flag.Duration("timeout", 10*time.Minute, "bound on one run")
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("loadtest: ")
	flag.Parse()
	var err error
	switch *mode {
	case "build":
		err = build()
	case "push":
		err = push()
	case "large":
		err = large()
	case "large-child":
		err = largeChild()
	case "coldstart":
		err = coldstart()
	case "kill":
		err = kill() // kill.go
	case "burst":
		err = burst() // burst.go
	default:
		err = errors.New("-mode must be build, push, large or coldstart")
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

// senderEnv is the deployed sender's configuration pointed at the fakes,
// with make dev's local stores.
func senderEnv(g *fakeGoogle, project, stateDir, pubsubHost string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + stateDir, "TMPDIR=" + stateDir,
		"FUNCTION_TARGET=sender", "GOOGLE_CLOUD_PROJECT=" + project, "LOG_LEVEL=info",
		"OAUTH_CLIENT_ID=" + clientID, "OAUTH_CLIENT_SECRET=" + clientSecret,
		"OAUTH_AUTH_URL=" + g.url + sandbox.AuthPath, "OAUTH_TOKEN_URL=" + g.url + sandbox.TokenPath,
		"OAUTH_REVOKE_URL=" + g.url + sandbox.RevokePath, "GMAIL_ENDPOINT=" + g.url + "/",
		"STORE_BACKEND=local", "DEV_STATE_DIR=" + stateDir, "RESULTS_TOPIC=" + resultsTopic,
		"CONNECT_URL=https://relay.example/authorize", "PUBSUB_EMULATOR_HOST=" + pubsubHost,
		"SECRET_MANAGER_EMULATOR_HOST=" + g.sm.Addr(),
	}
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

// ---- results on pstest -------------------------------------------------------------

func pubsubClient(ctx context.Context, host, project string) (*pubsub.Client, error) {
	return pubsub.NewClient(ctx, project, option.WithEndpoint(host), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
}

// setupResults creates the results topic and a pull subscription on it for
// counting.
func setupResults(ctx context.Context, c *pubsub.Client, project string) error {
	name := func(kind, id string) string { return "projects/" + project + "/" + kind + "/" + id }
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name("topics", resultsTopic)}); err != nil {
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

// ---- push -----------------------------------------------------------------------

// push runs one packaged sender process at the deployed settings
// (FUNCTION_TARGET=sender, -gomemlimit as Terraform sets GOMEMLIMIT) and
// pushes to it directly, -concurrency at a time, as a push subscription
// does to a Cloud Run instance with that request concurrency. The sandbox
// answers each send after -gmail-latency, so that the figure is what a
// deployment sees at Gmail's real latency, not what loopback allows.
func push() error {
	if *binPath == "" {
		return errors.New("-bin is required (build it with -mode=build)")
	}
	if *limit < 1 {
		return errors.New("-concurrency must be at least 1")
	}
	ctx := context.Background()
	st, err := newStack(ctx, "push", *accounts, "user%03d@example.com")
	if err != nil {
		return err
	}
	defer st.close()
	project, g, psc, dir, emails := st.project, st.g, st.psc, st.dir, st.emails
	env := st.env()
	if *memLimit != "" {
		env = append(env, "GOMEMLIMIT="+*memLimit)
	}
	sp, _, err := startSender(*binPath, env, filepath.Join(dir, "sender.log"))
	if err != nil {
		return err
	}
	defer sp.stop()
	if err := sp.waitListening(); err != nil {
		return err
	}
	endpoint := sp.url() + "/projects/" + project + "/topics/" + sendTopic
	send := func(count int, data func(i int) []byte) (pushTimes, error) {
		bodies := make([][]byte, count)
		for i := range bodies {
			bodies[i] = pushBody(fmt.Sprintf("direct-%d", i), data(i), project)
		}
		return pushAll(endpoint, bodies, *limit)
	}

	// Warm-up, before Gmail is slowed: one message per account, so every
	// token is read and refreshed before the measured run, as at steady
	// state.
	log.Printf("warm-up: %d accounts", len(emails))
	if _, err := send(len(emails), func(i int) []byte { return request(emails[i], -1-i) }); err != nil {
		return err
	}
	if err := waitOutbox(g, len(emails), time.Minute); err != nil {
		return err
	}
	warm := len(g.sb.Outbox())
	g.sb.SetLatency(*gmailLatency)

	log.Printf("run: %d messages by direct push, concurrency %d, Gmail latency %s, GOMEMLIMIT %q", *n, *limit, *gmailLatency, *memLimit)
	cpu0 := procstat.CPUSeconds(sp.cmd.Process.Pid)
	times, err := send(*n, func(i int) []byte { return request(emails[i%len(emails)], i) })
	if err != nil {
		return err
	}
	if err := waitOutbox(g, warm+*n, *maxDuration); err != nil {
		log.Print(err)
	}
	out := g.sb.Outbox()[warm:]
	cpu := procstat.CPUSeconds(sp.cmd.Process.Pid) - cpu0
	hwm := procstat.PeakRSSKB(sp.cmd.Process.Pid)
	seen := map[int]int{}
	for _, m := range out {
		s, err := seqOf(m.Path)
		if err != nil {
			return err
		}
		seen[s]++
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	res, err := countResults(ctx, psc, project, warm+*n, time.Minute)
	if err != nil {
		return err
	}
	var first, last time.Time
	lat := make(latencies, 0, *n)
	for i := range times.started {
		st, done := times.started[i], times.acked[i]
		if first.IsZero() || st.Before(first) {
			first = st
		}
		if done.After(last) {
			last = done
		}
		lat = append(lat, done.Sub(st))
	}
	span := last.Sub(first)
	figure("accepted", "%d of %d (%d duplicates)", len(seen), *n, dups)
	figure("throughput", "%.0f msgs/s (%d msgs in %.2fs, first push to last ack; concurrency %d, Gmail latency %s, GOMEMLIMIT %s)",
		float64(*n)/span.Seconds(), *n, span.Seconds(), *limit, *gmailLatency, memLimitString())
	figure("latency", "p50 %.1f ms, p99 %.1f ms, max %.1f ms (push to ack)", ms(lat.pct(50)), ms(lat.pct(99)), ms(lat.pct(100)))
	figure("sender_cpu", "%.0f µs/msg (sender process user+sys)", cpu*1e6/float64(max(len(out), 1)))
	figure("sender_rss", "%.1f MB peak (VmHWM)", float64(hwm)/1024)
	figure("results", "%v (want %d in all, warm-up included)", res, warm+*n)
	if len(seen) != *n || dups != 0 {
		return fmt.Errorf("accepted %d distinct of %d with %d duplicates (sender log %s)", len(seen), *n, dups, sp.log.Name())
	}
	return nil
}

func memLimitString() string {
	if *memLimit == "" {
		return "unset"
	}
	return *memLimit
}

// pushTimes is when each push was first posted and when it was acked.
type pushTimes struct{ started, acked []time.Time }

// pushAll POSTs bodies to endpoint, workers at a time, as a push
// subscription would; a non-2xx answer is retried after a short backoff,
// at most 10 times.
func pushAll(endpoint string, bodies [][]byte, workers int) (pushTimes, error) {
	t := pushTimes{started: make([]time.Time, len(bodies)), acked: make([]time.Time, len(bodies))}
	tr := &http.Transport{MaxIdleConns: workers * 2, MaxIdleConnsPerHost: workers * 2}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	work := make(chan int)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t.started[i] = time.Now()
				for attempt := 0; ; attempt++ {
					res, err := client.Post(endpoint, "application/json", bytes.NewReader(bodies[i]))
					if err == nil {
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if res.StatusCode/100 == 2 {
							t.acked[i] = time.Now()
							break
						}
					}
					if attempt == 9 {
						failures.Add(1)
						break
					}
					time.Sleep(100 * time.Millisecond << min(attempt, 5))
				}
			}
		}()
	}
	for i := range bodies {
		work <- i
	}
	close(work)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		return t, fmt.Errorf("%d pushes never succeeded", f)
	}
	return t, nil
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
	sp, _, err := startSender(*binPath, senderEnv(g, project, state, ps.Addr), filepath.Join(dir, "sender.log"))
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
		sp, t0, err := startSender(*binPath, senderEnv(g, project, state, ps.Addr), filepath.Join(dir, fmt.Sprintf("sender-%d.log", i)))
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
