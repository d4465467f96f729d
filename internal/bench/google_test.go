package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/gmailrelay/gmailrelay/internal/procstat"
	"github.com/gmailrelay/gmailrelay/internal/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/secretfake"
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
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		quietFunctionLogs()
	}
	code := m.Run()
	runProcessCleanups()
	os.Exit(code)
}

// google is everything that plays Google for one stack: the sandbox (OAuth
// and Gmail), the Secret Manager fake, pstest for results, and a no-op Gmail.
// Either it runs in this process (for fault knobs) or in a helper process
// (so that benchmarks measure the relay's CPU alone).
type google struct {
	SandboxURL string // OAuth endpoints, Gmail and /sandbox/ control
	NoopURL    string // a Gmail that accepts everything and does nothing
	SMAddr     string
	PubSubAddr string

	// In-process only.
	Sandbox *sandbox.Server
	Secrets *secretfake.Server
	PubSub  *pstest.Server
	Outbox  string

	// Helper only.
	cmd  *exec.Cmd
	noop *atomic.Int64 // in-process no-op count
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
	noopLn net.Listener
	count  *atomic.Int64
	outbox string
}

func newFakeParts(dir string) (*fakeParts, error) {
	key, err := signingKey()
	if err != nil {
		return nil, err
	}
	p := &fakeParts{outbox: filepath.Join(dir, "outbox"), count: new(atomic.Int64)}
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
		calls["noop_sends"] = p.count.Load()
		_ = json.NewEncoder(w).Encode(calls)
	})
	if p.sbLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	p.sbSrv = &http.Server{Handler: mux}
	go p.sbSrv.Serve(p.sbLn)
	if p.noopLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	go serveNoopGmail(p.noopLn, p.count)
	return p, nil
}

func (p *fakeParts) close() {
	p.sb.Close()
	p.sbSrv.Close()
	p.noopLn.Close()
	p.sm.Close()
	p.ps.Close()
}

// serveNoopGmail answers every users.messages.send on ln with a fixed
// success after reading the body, and does nothing else: no auth check, no
// parsing, no file. It speaks just enough HTTP/1.1 for the relay's sends (a
// Content-Length body on a kept-alive connection) and refuses anything
// else, so that the benchmark fails rather than mismeasures. It is not
// net/http's server because that took 70 µs of the shared two cores per
// message (a goroutine per request, header maps, the body read in 4 KiB
// system calls) that belong to neither the relay nor Gmail.
func serveNoopGmail(ln net.Listener, count *atomic.Int64) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go noopConn(c, count)
	}
}

func noopConn(c net.Conn, count *atomic.Int64) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	var out []byte
	for {
		length := -1
		for first := true; ; first = false {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return // the client closed the connection, or sent nonsense
			}
			if first {
				if !bytes.HasPrefix(line, []byte("POST /upload/gmail/v1/users/")) {
					_, _ = io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					return
				}
				continue
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
			name, value, _ := bytes.Cut(line, []byte(":"))
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
					return
				}
			case bytes.EqualFold(name, []byte("Transfer-Encoding")), bytes.EqualFold(name, []byte("Expect")):
				_, _ = io.WriteString(c, "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			}
		}
		if length < 0 {
			_, _ = io.WriteString(c, "HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		if _, err := br.Discard(length); err != nil {
			return
		}
		n := count.Add(1)
		body := fmt.Sprintf(`{"id":"%016x","threadId":"%016x","labelIds":["SENT"]}`, n, n)
		out = fmt.Appendf(out[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
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
		"noop":    "http://" + p.noopLn.Addr().String(),
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
	return &google{SandboxURL: l.m["sandbox"], NoopURL: l.m["noop"], SMAddr: l.m["sm"], PubSubAddr: l.m["pubsub"], cmd: cmd}, stop, nil
}

// startInProcess runs the fake Google in this process, with its knobs.
func startInProcess(tb testing.TB) *google {
	tb.Helper()
	p, err := newFakeParts(tbScratch(tb, "gmailrelay-bench-"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.close)
	return &google{SandboxURL: "http://" + p.sbLn.Addr().String(), NoopURL: "http://" + p.noopLn.Addr().String(),
		SMAddr: p.sm.Addr(), PubSubAddr: p.ps.Addr, Sandbox: p.sb, Secrets: p.sm, PubSub: p.ps, Outbox: p.outbox, noop: p.count}
}

// counters are the fakes' counts of external calls.
type counters struct {
	SMReads        int64
	TokenRefreshes int64
	GmailAccepted  int64 // by the sandbox
	GmailAttempts  int64 // sandbox: accepted + faulted + rate-limited + rejected
	NoopSends      int64
}

func (c counters) minus(o counters) counters {
	return counters{c.SMReads - o.SMReads, c.TokenRefreshes - o.TokenRefreshes, c.GmailAccepted - o.GmailAccepted,
		c.GmailAttempts - o.GmailAttempts, c.NoopSends - o.NoopSends}
}

func (g *google) counters(tb testing.TB) counters {
	tb.Helper()
	var st sandbox.Stats
	var calls map[string]int64
	if g.Sandbox != nil {
		st = g.Sandbox.Stats()
		calls = map[string]int64{"noop_sends": g.noop.Load()}
		for _, m := range smReadMethods {
			calls[m] = g.Secrets.Calls(m)
		}
	} else {
		getJSON(tb, g.SandboxURL+"/sandbox/stats", &st)
		getJSON(tb, g.SandboxURL+"/helper/calls", &calls)
	}
	c := counters{TokenRefreshes: st.TokenRefreshes, GmailAccepted: st.SendsAccepted, NoopSends: calls["noop_sends"],
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
