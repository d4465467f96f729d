package sender_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// buildFunction builds scripts/function: the deployed functions as the
// Cloud Run buildpack runs them, one target served by the functions
// framework.
func buildFunction(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "function")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./scripts/function")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the function: %v\n%s", err, b)
	}
	return bin
}

// pushLog counts the push requests Pub/Sub makes, by message ID, and their
// answers, on the way to the function.
type pushLog struct {
	mu       sync.Mutex
	attempts map[string][]int // message ID → status of each delivery
	byKey    map[string]string
}

func (p *pushLog) record(id, key string, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts[id] = append(p.attempts[id], status)
	if key != "" {
		p.byKey[key] = id
	}
}

func (p *pushLog) statuses(id string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.attempts[id]...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// TestEndToEndPubSubEmulator: the gcloud Pub/Sub emulator pushes to the
// function binary (through the framework's conversion of a plain push
// body), with a retry policy and a dead-letter topic. Forced redeliveries
// still give exactly one .eml and one sent result per message; poison is
// answered once with a failed result; what fails forever ends in the
// dead-letter subscription after max_delivery_attempts.
func TestEndToEndPubSubEmulator(t *testing.T) {
	t.Parallel()
	emulator := testenv.PubSubEmulator(t)
	bin := buildFunction(t)
	ctx := context.Background()

	e := sendertest.New(t, sendertest.Options{})
	project := e.Project()
	stateDir := t.TempDir()
	reg, err := registry.NewLocal(filepath.Join(stateDir, "accounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	accounts := []string{"ann@example.com", "ben@example.com", "cat@example.com"}
	const doomed = "doomed@example.com"
	var refreshTokens []string
	for _, a := range append(accounts, doomed) {
		rt := e.Consent(a)
		refreshTokens = append(refreshTokens, rt)
		e.StoreToken(a, rt)
		if err := reg.Upsert(ctx, &registry.Account{Email: a, Status: registry.StatusConnected, Scopes: oauth.Scopes, UpdatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	// Forced redeliveries: the first sends of two accounts fail.
	must(t, e.Sandbox.InjectGmailErrors(accounts[0], sandbox.ServerError500, 5))
	must(t, e.Sandbox.InjectGmailErrors(accounts[1], sandbox.Unavailable503, 3))
	// And one account that never works.
	must(t, e.Sandbox.InjectGmailErrors(doomed, sandbox.ServerError500, -1))

	// The function.
	port := freePort(t)
	var logs testenv.SyncBuffer
	fnCtx, stop := context.WithCancel(ctx)
	cmd := exec.CommandContext(fnCtx, bin)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"PORT=" + port,
		"FUNCTION_TARGET=sender",
		"HOST=127.0.0.1",
		"GOOGLE_CLOUD_PROJECT=" + project,
		"LOG_LEVEL=info",
		"STORE_BACKEND=local",
		"DEV_STATE_DIR=" + stateDir,
		"OAUTH_CLIENT_ID=" + sendertest.ClientID,
		"OAUTH_CLIENT_SECRET=" + sendertest.ClientSecret,
		"OAUTH_AUTH_URL=" + e.URL + sandbox.AuthPath,
		"OAUTH_TOKEN_URL=" + e.URL + sandbox.TokenPath,
		"OAUTH_REVOKE_URL=" + e.URL + sandbox.RevokePath,
		"GMAIL_ENDPOINT=" + e.URL + "/",
		"SECRET_MANAGER_EMULATOR_HOST=" + e.Secrets.Addr(),
		"PUBSUB_EMULATOR_HOST=" + emulator,
		"RESULTS_TOPIC=gmail-send-results",
		"CONNECT_URL=" + sendertest.ConnectURL,
		"SEND_LEASE=1m",
		"SEND_MAX_DELIVERY_ATTEMPTS=5", // maxAttempts below
	}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stop()
		<-exited
		if t.Failed() {
			t.Logf("function output:\n%s", logs.String())
		}
	})

	// The push endpoint: a counting proxy in front of the function, at the
	// path the framework takes the topic from.
	target, _ := url.Parse("http://127.0.0.1:" + port)
	rp := httputil.NewSingleHostReverseProxy(target)
	pushes := &pushLog{attempts: map[string][]int{}, byKey: map[string]string{}}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var push struct {
			Message struct {
				ID         string            `json:"messageId"`
				Attributes map[string]string `json:"attributes"`
			} `json:"message"`
		}
		_ = json.Unmarshal(body, &push)
		// Pub/Sub adds deliveryAttempt to a push when the subscription
		// dead-letters; the emulator leaves it out. A message's deliveries
		// come one after another, so the count so far gives it.
		if !bytes.Contains(body, []byte(`"deliveryAttempt"`)) && bytes.HasSuffix(body, []byte("}")) {
			n := len(pushes.statuses(push.Message.ID)) + 1
			body = fmt.Appendf(body[:len(body)-1], `,"deliveryAttempt":%d}`, n)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		pushes.record(push.Message.ID, push.Message.Attributes["test_key"], sw.status)
	}))
	t.Cleanup(proxy.Close)
	waitListening(t, "127.0.0.1:"+port, exited)

	// The topology, as Terraform declares it, on the emulator.
	ps, err := sendertest.PubSubClient(ctx, emulator, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	topic := func(id string) string { return "projects/" + project + "/topics/" + id }
	sub := func(id string) string { return "projects/" + project + "/subscriptions/" + id }
	for _, id := range []string{"gmail-send", "gmail-send-results", "gmail-send-dead-letter"} {
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic(id)}); err != nil {
			t.Fatalf("CreateTopic %s: %v", id, err)
		}
	}
	for id, tp := range map[string]string{"results": "gmail-send-results", "dead-letter": "gmail-send-dead-letter"} {
		if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub(id), Topic: topic(tp), AckDeadlineSeconds: 60}); err != nil {
			t.Fatalf("CreateSubscription %s: %v", id, err)
		}
	}
	const maxAttempts = 5
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: sub("gmail-send-push"), Topic: topic("gmail-send"), AckDeadlineSeconds: 60,
		PushConfig:       &pubsubpb.PushConfig{PushEndpoint: proxy.URL + "/" + topic("gmail-send")},
		RetryPolicy:      &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(time.Second), MaximumBackoff: durationpb.New(2 * time.Second)},
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic("gmail-send-dead-letter"), MaxDeliveryAttempts: maxAttempts},
	}); err != nil {
		t.Fatalf("CreateSubscription push: %v", err)
	}

	// Publish.
	const n = 30
	pub := ps.Publisher(topic("gmail-send"))
	t.Cleanup(pub.Stop)
	publish := func(key string, data []byte, attrs map[string]string) {
		t.Helper()
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs["test_key"] = key
		if _, err := pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs}).Get(ctx); err != nil {
			t.Fatalf("publishing %s: %v", key, err)
		}
	}
	bodyText := "End-to-end body 93be1"
	for i := range n {
		key := fmt.Sprintf("e2e-%02d", i)
		publish(key, sendertest.NewRequest(accounts[i%len(accounts)], key).With("text", bodyText).JSON(), nil)
	}
	publish("poison-json", []byte(`{"account": "ann@example.com", "to": [`), map[string]string{"idempotency_key": "poison-json"})
	publish("poison-unknown", sendertest.NewRequest("nobody@example.com", "poison-unknown").JSON(), nil)
	publish("doomed", sendertest.NewRequest(doomed, "doomed").JSON(), nil)

	// Wait, bounded, for every outcome: N sent, three failures (one of them
	// the dead letter's), one dead letter.
	sent := map[string]results.Event{}
	failed := map[string]results.Event{}
	var dead []sendertest.Result
	var duplicates, other int
	deadline := time.Now().Add(4 * time.Minute)
	for len(sent) < n || len(failed) < 3 || len(dead) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %d of %d sent, %d of 3 failed, %d of 1 dead-lettered", len(sent), n, len(failed), len(dead))
		}
		select {
		case <-exited:
			t.Fatal("the function exited")
		case <-time.After(250 * time.Millisecond):
		}
		rs, err := sendertest.Drain(ctx, ps, sub("results"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			checkAttrs(t, r)
			switch r.Event.Status {
			case results.StatusSent:
				if _, dup := sent[r.Event.IdempotencyKey]; dup {
					t.Errorf("two sent results for %s", r.Event.IdempotencyKey)
				}
				sent[r.Event.IdempotencyKey] = r.Event
			case results.StatusFailed:
				failed[r.Event.IdempotencyKey] = r.Event
			case results.StatusDuplicate:
				duplicates++
			default:
				other++
			}
		}
		d, err := sendertest.DrainRaw(ctx, ps, sub("dead-letter"))
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, d...)
	}

	// The proxy notes an answer after passing it on, so its log may trail
	// the results by a moment: wait, bounded, until it has every answer.
	answered := func(key string) bool {
		st := pushes.statuses(pushes.id(key))
		return len(st) > 0 && st[len(st)-1]/100 == 2
	}
	for settle := time.Now().Add(time.Minute); ; {
		done := len(pushes.statuses(pushes.id("doomed"))) >= maxAttempts && answered("poison-json") && answered("poison-unknown")
		for i := 0; done && i < n; i++ {
			done = answered(fmt.Sprintf("e2e-%02d", i))
		}
		if done || time.Now().After(settle) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Exactly one copy of each message, and one sent result each.
	if got, files := len(e.Outbox()), e.EMLFiles(); got != n || files != n {
		t.Errorf("outbox lists %d messages in %d .eml files; want %d", got, files, n)
	}
	for i := range n {
		key := fmt.Sprintf("e2e-%02d", i)
		if ev, ok := sent[key]; !ok || ev.Account != accounts[i%len(accounts)] || ev.GmailMessageID == "" {
			t.Errorf("%s: sent result %+v", key, ev)
		}
	}
	if duplicates != 0 || other != 0 {
		t.Logf("also saw %d duplicate and %d other results (Pub/Sub redelivered an acknowledged message)", duplicates, other)
	}

	// The forced faults were nacked and redelivered.
	nacked := 0
	for i := range n {
		st := pushes.statuses(pushes.id(fmt.Sprintf("e2e-%02d", i)))
		if len(st) == 0 || st[len(st)-1]/100 != 2 {
			t.Errorf("e2e-%02d: deliveries answered %v; want a final 2xx", i, st)
		}
		for _, s := range st {
			if s/100 != 2 {
				nacked++
			}
		}
	}
	t.Logf("%d messages sent, %d deliveries nacked and redelivered, %d duplicate results", len(sent), nacked, duplicates)
	if nacked < 8 {
		t.Errorf("%d deliveries were nacked; the 8 injected faults should each have forced one", nacked)
	}

	// Poison: one delivery each, acknowledged, with a failed result.
	for key, code := range map[string]string{"poison-json": "invalid_request", "poison-unknown": "unknown_account"} {
		if st := pushes.statuses(pushes.id(key)); len(st) != 1 || st[0]/100 != 2 {
			t.Errorf("%s: deliveries answered %v; want one 2xx", key, st)
		}
		if ev, ok := failed[key]; !ok || ev.Error == nil || ev.Error.Code != code {
			t.Errorf("%s: failed result %+v; want code %s", key, ev, code)
		}
	}

	// Failing forever: max_delivery_attempts nacks, then the dead letter.
	doomedID := pushes.id("doomed")
	if st := pushes.statuses(doomedID); len(st) != maxAttempts {
		t.Errorf("doomed: %d deliveries %v; want %d", len(st), st, maxAttempts)
	} else {
		for _, s := range st {
			if s != http.StatusInternalServerError {
				t.Errorf("doomed: deliveries answered %v; want 500 each", st)
				break
			}
		}
	}
	if len(dead) != 1 || dead[0].Attributes["test_key"] != "doomed" ||
		dead[0].Attributes["CloudPubSubDeadLetterSourceDeliveryCount"] != strconv.Itoa(maxAttempts) {
		t.Errorf("dead letters = %+v", dead)
	}
	// ... and, published on the last attempt, its one result.
	if ev, ok := failed["doomed"]; !ok || ev.Error == nil || ev.Error.Code != "gmail_error" || !ev.Error.Retryable ||
		!strings.Contains(ev.Error.Message, fmt.Sprintf("attempt %d of %d", maxAttempts, maxAttempts)) || ev.Attempt != maxAttempts {
		t.Errorf("doomed: failed result %+v (error %+v); want gmail_error, retryable, on attempt %d of %d", ev, ev.Error, maxAttempts, maxAttempts)
	}

	// The function's own ledger agrees.
	led, err := ledger.NewLocal(filepath.Join(stateDir, "sends.json"))
	if err != nil {
		t.Fatal(err)
	}
	for sc, state := range map[ledger.Scope]ledger.State{
		{Account: "ann@example.com", Key: "e2e-00"}: ledger.StateSent, {Account: "ann@example.com", Key: "e2e-27"}: ledger.StateSent,
		{Account: "nobody@example.com", Key: "poison-unknown"}: ledger.StateFailed, {Key: "poison-json"}: ledger.StateFailed,
		{Account: "doomed@example.com", Key: "doomed"}: ledger.StateSending,
	} {
		rec, err := led.Get(ctx, sc.ID())
		if err != nil || rec.State != state {
			t.Errorf("ledger %+v = %+v, %v; want %s", sc, rec, err, state)
		}
	}
	if rec, err := led.Get(ctx, ledger.Scope{Account: "doomed@example.com", Key: "doomed"}.ID()); err == nil && (rec.Attempts != maxAttempts || rec.ErrorCode != "gmail_error" || !rec.LeaseUntil.IsZero()) {
		t.Errorf("doomed ledger record = %+v; want %d attempts, released", rec, maxAttempts)
	}

	// Nothing secret in the function's logs.
	out := logs.String()
	for _, s := range append(refreshTokens, bodyText, "ya29.") {
		if strings.Contains(out, s) {
			t.Errorf("the function's logs contain %q", s)
		}
	}
}

func (p *pushLog) id(key string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byKey[key]
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// waitListening waits, bounded, until addr accepts connections.
func waitListening(t *testing.T, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the function never listened on %s: %v", addr, err)
		}
		select {
		case <-exited:
			t.Fatal("the function exited before listening")
		case <-time.After(100 * time.Millisecond):
		}
	}
}
