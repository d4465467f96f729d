package devserver_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/dev/devserver"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// issueApps is issue 17's example.
const issueApps = `{"billing":{"accounts":["alice@example.com"]},"crm":{"accounts":["*@example.org"]}}`

// appsStack runs a dev server of its own with env, and returns it and its
// output.
func appsStack(t *testing.T, env map[string]string) (*devserver.Server, *testenv.SyncBuffer) {
	t.Helper()
	var out testenv.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *devserver.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- devserver.Run(ctx, devserver.Options{Addr: "localhost:0", PubSubAddr: "localhost:0", StateDir: t.TempDir(),
			Env: config.MapLookuper(env), Out: &out, Logs: &out, Ready: func(s *devserver.Server) { ready <- s }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev server: %v", err)
		}
	})
	select {
	case s := <-ready:
		return s, &out
	case err := <-done:
		done <- nil
		t.Fatalf("dev server did not start: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("dev server did not start within a minute")
	}
	return nil, nil
}

// connectTo runs the connect flow for email against s.
func connectTo(ctx context.Context, t *testing.T, s *devserver.Server, email string) {
	t.Helper()
	client := browserless()
	resp, err := client.Get(s.BaseURL + "/authorize?start=1&login_hint=" + email)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := sandbox.Consent(ctx, client, resp.Header.Get("Location"), email)
	if err != nil {
		t.Fatalf("consent: %v", err)
	}
	resp, err = client.Get(back.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("connecting %s: confirm answered %d", email, resp.StatusCode)
	}
}

func publishTo(ctx context.Context, t *testing.T, s *devserver.Server, topic, data string) {
	t.Helper()
	ps, err := pubsub.NewClient(ctx, devserver.Project, option.WithEndpoint(s.PubSubAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	pub := ps.Publisher(topic)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(data)}).Get(ctx); err != nil {
		t.Fatalf("publishing to %s: %v", topic, err)
	}
}

// TestApps is issue 17's "Done when" through make dev's stack, with
// APPS='{"billing":{"accounts":["alice@example.com"]},"crm":{"accounts":["*@example.org"]}}':
// each app has its topic; carol cannot send on billing, alice can; billing
// cannot send raw; one key used by alice on billing and by dan on crm is
// two messages.
func TestApps(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, out := appsStack(t, map[string]string{"APPS": issueApps})
	if !slices.Equal(s.SendTopics, []string{"gmail-send-billing", "gmail-send-crm"}) {
		t.Fatalf("send topics = %v", s.SendTopics)
	}
	if !strings.Contains(out.String(), "Send topics (APPS):  gmail-send-billing, gmail-send-crm") {
		t.Errorf("the banner does not list the apps' topics:\n%s", out)
	}
	for _, who := range []string{"alice@example.com", "carol@example.com", "dan@example.org"} {
		connectTo(ctx, t, s, who)
	}
	wait := func(what string, subs ...string) {
		t.Helper()
		for !contains(out.String(), subs...) {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s; output:\n%s", what, out)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	req := func(account, key string) string {
		return `{"account":"` + account + `","to":["bob@example.net"],"subject":"apps","text":"hi","idempotency_key":"` + key + `"}`
	}

	publishTo(ctx, t, s, "gmail-send-billing", req("carol@example.com", "apps-carol"))
	wait("carol's refusal", "result failed:", `"idempotency_key":"apps-carol"`, `"app":"billing"`, `"code":"forbidden"`,
		`app \"billing\" may send only as alice@example.com`)

	publishTo(ctx, t, s, "gmail-send-billing", req("alice@example.com", "apps-shared"))
	wait("alice's send", "result sent:", `"idempotency_key":"apps-shared"`, `"account":"alice@example.com"`, `"app":"billing"`)

	raw := base64.StdEncoding.EncodeToString([]byte("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: raw\r\n\r\nx\r\n"))
	publishTo(ctx, t, s, "gmail-send-billing", `{"account":"alice@example.com","raw":"`+raw+`","idempotency_key":"apps-raw"}`)
	wait("the raw refusal", "result failed:", `"idempotency_key":"apps-raw"`, `"code":"forbidden"`, `may not send raw messages`)

	publishTo(ctx, t, s, "gmail-send-crm", req("dan@example.org", "apps-shared"))
	wait("dan's send under alice's key", "result sent:", `"idempotency_key":"apps-shared"`, `"account":"dan@example.org"`, `"app":"crm"`)

	files, _ := filepath.Glob(filepath.Join(s.OutboxDir, "*.eml"))
	if len(files) != 2 {
		t.Errorf("the outbox holds %d messages, want alice's and dan's", len(files))
	}
}

// TestPublishTopics: scripts/publish names the send topics that exist when
// it is given one that does not, and picks an app's topic from APPS when
// there is only one.
func TestPublishTopics(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds scripts/publish")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, out := appsStack(t, map[string]string{"APPS": issueApps})
	bin := filepath.Join(t.TempDir(), "publish")
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../../scripts/publish").CombinedOutput(); err != nil {
		t.Fatalf("go build scripts/publish: %v\n%s", err, b)
	}
	run := func(apps string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+s.PubSubAddr, "GOOGLE_CLOUD_PROJECT=", "APPS="+apps)
		cmd.Stdin = strings.NewReader(`{"account":"nobody@example.com","to":["bob@example.net"],"subject":"x","text":"y","idempotency_key":"publish-topics"}`)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	got, err := run("", "-topic", "gmail-send")
	if err == nil || !strings.Contains(got, "topic gmail-send does not exist in project gmail-relay-dev; its send topics are: gmail-send-billing, gmail-send-crm (pass one with -topic)") {
		t.Errorf("publish -topic gmail-send = %v:\n%s", err, got)
	}
	got, err = run(issueApps)
	if err == nil || !strings.Contains(got, "APPS declares 2 apps; choose a topic with -topic: gmail-send-billing, gmail-send-crm") {
		t.Errorf("publish with two apps and no -topic = %v:\n%s", err, got)
	}
	got, err = run(`{"crm":{"accounts":["*"]}}`)
	if err != nil || !strings.Contains(got, "to gmail-send-crm") {
		t.Fatalf("publish with one app = %v:\n%s", err, got)
	}
	// It reached the sender through crm's subscription.
	for !contains(out.String(), "result failed:", `"idempotency_key":"publish-topics"`, `"app":"crm"`) {
		select {
		case <-ctx.Done():
			t.Fatalf("no result for the published request:\n%s", out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
