package devserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/devserver"
	"github.com/gmailrelay/gmailrelay/internal/sandbox"
)

// TestEndToEnd is the walking skeleton, as a person with `make dev` and curl
// would do it: connect a mailbox through the sandbox's plain HTML consent
// form, publish a send request, and find the message in the outbox.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stateDir := t.TempDir()
	ready := make(chan *devserver.Server, 1)
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- devserver.Run(ctx, devserver.Options{
			Addr: "localhost:0", PubSubAddr: "localhost:0", StateDir: stateDir,
			Out: &out, Ready: func(s *devserver.Server) { ready <- s },
		})
	}()
	var srv *devserver.Server
	select {
	case srv = <-ready:
	case err := <-done:
		t.Fatalf("dev server stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("dev server did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev server: %v", err)
		}
	})

	// Connect alice@example.com with a plain HTTP client: no browser, no JS.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(srv.BaseURL + "/authorize?start=1&login_hint=alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d, want 302", resp.StatusCode)
	}
	back, err := sandbox.Consent(ctx, client, resp.Header.Get("Location"), "alice@example.com")
	if err != nil {
		t.Fatalf("consent: %v", err)
	}
	if !strings.HasPrefix(back.String(), srv.BaseURL+"/confirm?") {
		t.Fatalf("consent redirected to %s", back)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, back.String(), nil)
	req.Header.Set("Accept", "application/json")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm answered %d: %s", resp.StatusCode, body)
	}
	var connected struct {
		Account, Status string
		Scopes          []string
	}
	if err := json.Unmarshal(body, &connected); err != nil || connected.Account != "alice@example.com" || connected.Status != "connected" {
		t.Fatalf("confirm answered %s", body)
	}

	// Publish a send request the way scripts/publish does.
	ps, err := pubsub.NewClient(ctx, devserver.Project, option.WithEndpoint(srv.PubSubAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	msg := `{"account":"alice@example.com","from_name":"Alice at Acme","to":["Bob <bob@example.org>"],"subject":"Invoice 42","text":"Hello Bob","idempotency_key":"e2e-invoice-42"}`
	pub := ps.Publisher(devserver.SendTopic)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(msg)}).Get(ctx); err != nil {
		t.Fatal(err)
	}

	eml := waitForEML(ctx, t, srv.OutboxDir)
	m, err := mail.ReadMessage(bytes.NewReader(eml))
	if err != nil {
		t.Fatalf("outbox message does not parse: %v", err)
	}
	from, _ := mail.ParseAddress(m.Header.Get("From"))
	to, _ := mail.ParseAddress(m.Header.Get("To"))
	if from == nil || from.Address != "alice@example.com" || from.Name != "Alice at Acme" {
		t.Errorf("From = %q", m.Header.Get("From"))
	}
	if to == nil || to.Address != "bob@example.org" {
		t.Errorf("To = %q", m.Header.Get("To"))
	}
	if got := m.Header.Get("Subject"); got != "Invoice 42" {
		t.Errorf("Subject = %q", got)
	}
	// The result event is printed by the dev server.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), `"status":"sent"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no sent result printed; output:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitForEML(ctx context.Context, t *testing.T, dir string) []byte {
	t.Helper()
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		if len(files) > 0 {
			if len(files) != 1 {
				t.Fatalf("%d messages in the outbox, want 1", len(files))
			}
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		select {
		case <-ctx.Done():
			t.Fatal("no message reached the outbox")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lockedBuffer is written by the dev server and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
