package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/testing/procstat"
)

// The OAuth client every stack registers with its sandbox.
const (
	clientID     = "123456789012-bench.apps.googleusercontent.com"
	clientSecret = "bench-secret"
	redirectURL  = "http://127.0.0.1/confirm"
	connectURL   = "https://relay.example/authorize"
	project      = "bench"
	resultsTopic = "gmail-send-results"
)

// helperEnv makes the test binary run as the fake-Google helper process.
const helperEnv = "GMAILRELAY_BENCH_HELPER"

// helperProfileEnv, when set, is where the helper writes its CPU profile.
const helperProfileEnv = "GMAILRELAY_BENCH_HELPER_CPUPROFILE"

// helperMaxLife bounds the helper even if its parent never closes stdin.
const helperMaxLife = 45 * time.Minute

// smReadMethods are the Secret Manager methods that read a token.
var smReadMethods = []string{"AccessSecretVersion", "GetSecretVersion", "ListSecretVersions", "GetSecret", "ListSecrets"}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper())
	}
	code := m.Run()
	runProcessCleanups()
	os.Exit(code)
}

// google is everything that plays Google for one stack: the sandbox (OAuth
// and Gmail), the Secret Manager fake and pstest for results.
// Either it runs in this process (for fault knobs) or in a helper process
// (so that benchmarks measure the relay's CPU alone).
type google struct {
	SandboxURL string // OAuth endpoints, Gmail and /sandbox/ control
	SMAddr     string
	PubSubAddr string

	// In-process only.
	Sandbox *sandbox.Server
	Secrets *secretfake.Server
	PubSub  *pstest.Server
	Outbox  string

	// Helper only.
	cmd *exec.Cmd
}

// signingKey is shared: RSA key generation is slow.
var signingKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// scratchDir prefers tmpfs, so that outbox files and ledger fsyncs cost
// memory rather than a disk shared with other work.
func scratchDir(prefix string) (string, error) {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", prefix); err == nil {
			return d, nil
		}
	}
	return os.MkdirTemp("", prefix)
}

func tbScratch(tb testing.TB, prefix string) string {
	tb.Helper()
	d, err := scratchDir(prefix)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// fakeGoogleParts builds the pieces; the helper and the in-process stack
// share it.
type fakeParts struct {
	sb     *sandbox.Server
	sm     *secretfake.Server
	ps     *pstest.Server
	sbSrv  *http.Server
	sbLn   net.Listener
	outbox string
}

func newFakeParts(dir string) (*fakeParts, error) {
	key, err := signingKey()
	if err != nil {
		return nil, err
	}
	p := &fakeParts{outbox: filepath.Join(dir, "outbox")}
	p.sb, err = sandbox.New(sandbox.Options{OutboxDir: p.outbox, SigningKey: key})
	if err != nil {
		return nil, err
	}
	if err := p.sb.RegisterClient(sandbox.Client{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURL}}); err != nil {
		return nil, err
	}
	p.sm, err = secretfake.Start(context.Background(), "127.0.0.1:0", secretfake.Options{})
	if err != nil {
		return nil, err
	}
	p.ps = pstest.NewServer()
	mux := http.NewServeMux()
	for _, path := range p.sb.Paths() {
		mux.Handle(path, p.sb)
	}
	mux.HandleFunc("GET /helper/calls", func(w http.ResponseWriter, r *http.Request) {
		calls := map[string]int64{}
		for _, m := range smReadMethods {
			calls[m] = p.sm.Calls(m)
		}
		_ = json.NewEncoder(w).Encode(calls)
	})
	if p.sbLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	p.sbSrv = &http.Server{Handler: mux}
	go p.sbSrv.Serve(p.sbLn)
	return p, nil
}

func (p *fakeParts) close() {
	p.sb.Close()
	p.sbSrv.Close()
	p.sm.Close()
	p.ps.Close()
}

// runHelper is the helper process: it serves the fake Google, prints its
// addresses as one JSON line and lives until stdin closes.
func runHelper() int {
	dir, err := scratchDir("gmailrelay-bench-helper-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	p, err := newFakeParts(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer p.close()
	if path := os.Getenv(helperProfileEnv); path != "" {
		// The fakes' own profile, to see what the measurement costs.
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	addrs := map[string]string{
		"sandbox": "http://" + p.sbLn.Addr().String(),
		"sm":      p.sm.Addr(),
		"pubsub":  p.ps.Addr,
	}
	if err := json.NewEncoder(os.Stdout).Encode(addrs); err != nil {
		return 1
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(helperMaxLife):
	}
	return 0
}

// startHelper runs the fake Google in a helper process for tb.
func startHelper(tb testing.TB) *google {
	tb.Helper()
	g, stop, err := startHelperProcess()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return g
}

// processCleanups run after every test and benchmark (TestMain), for
// fixtures that live as long as the test process.
var (
	cleanupMu       sync.Mutex
	processCleanups []func()
)

func atProcessExit(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	processCleanups = append(processCleanups, f)
}

func runProcessCleanups() {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for i := len(processCleanups) - 1; i >= 0; i-- {
		processCleanups[i]()
	}
}

func startHelperProcess() (*google, func(), error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	type line struct {
		m   map[string]string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		var m map[string]string
		err := json.NewDecoder(bufio.NewReader(stdout)).Decode(&m)
		ch <- line{m, err}
	}()
	var l line
	select {
	case l = <-ch:
	case <-time.After(60 * time.Second):
		l.err = fmt.Errorf("the helper process did not start within 60s")
	}
	if l.err != nil {
		stop()
		return nil, nil, fmt.Errorf("helper process: %w", l.err)
	}
	return &google{SandboxURL: l.m["sandbox"], SMAddr: l.m["sm"], PubSubAddr: l.m["pubsub"], cmd: cmd}, stop, nil
}

// startInProcess runs the fake Google in this process, with its knobs.
func startInProcess(tb testing.TB) *google {
	tb.Helper()
	p, err := newFakeParts(tbScratch(tb, "gmailrelay-bench-"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.close)
	return &google{SandboxURL: "http://" + p.sbLn.Addr().String(),
		SMAddr: p.sm.Addr(), PubSubAddr: p.ps.Addr, Sandbox: p.sb, Secrets: p.sm, PubSub: p.ps, Outbox: p.outbox}
}

// counters are the fakes' counts of external calls.
type counters struct {
	SMReads        int64
	TokenRefreshes int64
	GmailAccepted  int64 // by the sandbox
	GmailAttempts  int64 // sandbox: accepted + faulted + rate-limited + rejected
}

func (c counters) minus(o counters) counters {
	return counters{c.SMReads - o.SMReads, c.TokenRefreshes - o.TokenRefreshes, c.GmailAccepted - o.GmailAccepted,
		c.GmailAttempts - o.GmailAttempts}
}

func (g *google) counters(tb testing.TB) counters {
	tb.Helper()
	var st sandbox.Stats
	var calls map[string]int64
	if g.Sandbox != nil {
		st = g.Sandbox.Stats()
		calls = map[string]int64{}
		for _, m := range smReadMethods {
			calls[m] = g.Secrets.Calls(m)
		}
	} else {
		getJSON(tb, g.SandboxURL+"/sandbox/stats", &st)
		getJSON(tb, g.SandboxURL+"/helper/calls", &calls)
	}
	c := counters{TokenRefreshes: st.TokenRefreshes, GmailAccepted: st.SendsAccepted,
		GmailAttempts: st.SendsAccepted + st.SendsFaulted + st.SendsRateLimited + st.SendsRejected}
	for _, m := range smReadMethods {
		c.SMReads += calls[m]
	}
	return c
}

func getJSON(tb testing.TB, url string, v any) {
	tb.Helper()
	res, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
}

// cpuSeconds is the helper's user+system CPU time so far (Linux only; 0
// elsewhere or in-process).
func (g *google) cpuSeconds() float64 {
	if g.cmd == nil || g.cmd.Process == nil {
		return 0
	}
	return procstat.CPUSeconds(g.cmd.Process.Pid)
}
