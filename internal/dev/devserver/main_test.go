package devserver_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/dev/devserver"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// One dev server serves the tests of the local flows; tests of start-up
// and shutdown run stacks of their own beside it.
var (
	srv *devserver.Server
	out testenv.SyncBuffer
	// environ is the process environment before the dev server started.
	environ []string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "devserver-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	environ = os.Environ()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *devserver.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- devserver.Run(ctx, devserver.Options{Addr: "localhost:0", PubSubAddr: "localhost:0", StateDir: dir,
			Out: &out, Ready: func(s *devserver.Server) { ready <- s }})
	}()
	select {
	case srv = <-ready:
	case err := <-done:
		fmt.Fprintln(os.Stderr, "dev server did not start:", err)
		os.Exit(1)
	case <-time.After(time.Minute):
		fmt.Fprintln(os.Stderr, "dev server did not start within a minute")
		os.Exit(1)
	}
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "dev server:", err)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// browserless is an HTTP client with cookies that does not follow
// redirects, so each step of the flow can be checked.
func browserless() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// connect runs the connect flow for email with a plain HTTP client and
// returns confirm's response.
func connect(ctx context.Context, t *testing.T, email string, accept string) *http.Response {
	t.Helper()
	client := browserless()
	resp, err := client.Get(srv.BaseURL + "/authorize?start=1&login_hint=" + email)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d, want 302", resp.StatusCode)
	}
	back, err := sandbox.Consent(ctx, client, resp.Header.Get("Location"), email)
	if err != nil {
		t.Fatalf("consent: %v", err)
	}
	if !strings.HasPrefix(back.String(), srv.BaseURL+"/confirm?") {
		t.Fatalf("consent redirected to %s", back)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, back.String(), nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func publish(ctx context.Context, t *testing.T, data string) {
	t.Helper()
	ps, err := pubsub.NewClient(ctx, devserver.Project, option.WithEndpoint(srv.PubSubAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	pub := ps.Publisher(devserver.SendTopic)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(data)}).Get(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls until cond holds or the context ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; dev server output:\n%s", what, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// outboxFor returns the parsed outbox messages addressed to rcpt.
func outboxFor(t *testing.T, rcpt string) []*mail.Message {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(srv.OutboxDir, "*.eml"))
	var got []*mail.Message
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s does not parse: %v", f, err)
		}
		if strings.Contains(m.Header.Get("To"), rcpt) {
			got = append(got, m)
		}
	}
	return got
}
