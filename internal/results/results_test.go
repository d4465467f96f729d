package results

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const project = "results-test"

// fixture is pstest with one topic, a client whose Publish calls are
// counted (and can be held), and a Publisher on the topic.
type fixture struct {
	srv   *pstest.Server
	pub   *Publisher
	calls atomic.Int64
	mu    sync.Mutex
	sizes []int         // messages per Publish call
	hold  chan struct{} // if set, each Publish call waits for it to close
}

func newFixture(t *testing.T, topic string, create bool) *fixture {
	t.Helper()
	f := &fixture{srv: pstest.NewServer()}
	t.Cleanup(func() { f.srv.Close() })
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if pr, ok := req.(*pubsubpb.PublishRequest); ok {
			f.calls.Add(1)
			f.mu.Lock()
			f.sizes = append(f.sizes, len(pr.Messages))
			hold := f.hold
			f.mu.Unlock()
			if hold != nil {
				<-hold
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	client, err := pubsub.NewClient(context.Background(), project,
		option.WithEndpoint(f.srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithUnaryInterceptor(count)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if create {
		if _, err := client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + topic}); err != nil {
			t.Fatal(err)
		}
	}
	f.pub = NewPublisher(client, topic)
	t.Cleanup(f.pub.Stop)
	return f
}

func event(i int) *Event {
	return &Event{IdempotencyKey: fmt.Sprintf("key-%d", i), PubSubMessageID: fmt.Sprint(i), Account: "alice@example.com",
		Status: StatusSent, GmailMessageID: "18f0", Attempt: 1, FinishedAt: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)}
}

// publishAll publishes n events at once and returns their errors.
func publishAll(ctx context.Context, p *Publisher, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Publish(ctx, event(i))
		}()
	}
	wg.Wait()
	return errs
}

// TestPublishBatches: events published together share Publish calls, each
// within Pub/Sub's 1,000-message limit, and every one arrives once, with
// the event as its data and the status and key as attributes.
func TestPublishBatches(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 50, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, "results", true)
			for i, err := range publishAll(context.Background(), f.pub, n) {
				if err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			msgs := f.srv.Messages()
			if len(msgs) != n {
				t.Fatalf("pstest holds %d messages; want %d", len(msgs), n)
			}
			seen := map[string]bool{}
			for _, m := range msgs {
				var e Event
				if err := json.Unmarshal(m.Data, &e); err != nil {
					t.Fatalf("data %q: %v", m.Data, err)
				}
				if m.Attributes["idempotency_key"] != e.IdempotencyKey || m.Attributes["status"] != string(StatusSent) {
					t.Errorf("attributes %v for event %+v", m.Attributes, e)
				}
				if seen[e.IdempotencyKey] {
					t.Errorf("%s published twice", e.IdempotencyKey)
				}
				seen[e.IdempotencyKey] = true
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			total := 0
			for _, s := range f.sizes {
				if s > maxBatchCount {
					t.Errorf("a Publish call carried %d messages; Pub/Sub takes at most %d", s, maxBatchCount)
				}
				total += s
			}
			if total != n {
				t.Errorf("Publish calls carried %d messages in all; want %d", total, n)
			}
			if n >= 50 && len(f.sizes) > n/5 {
				t.Errorf("%d events took %d Publish calls; want them batched", n, len(f.sizes))
			}
		})
	}
}

// TestPublishError: a Publish call that fails fails every event in it, with
// the gRPC status kept for the caller.
func TestPublishError(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "missing", false)
	for i, err := range publishAll(context.Background(), f.pub, 20) {
		if status.Code(errors.Unwrap(err)) != codes.NotFound {
			t.Errorf("Publish %d = %v; want NotFound", i, err)
		}
	}
}

// TestPublishGivesUp: a caller whose context ends stops waiting at once;
// the batch is still sent, and Stop waits for it.
func TestPublishGivesUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "results", true)
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.pub.Publish(ctx, event(1)) }()
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish = %v; want context.Canceled", err)
	}
	stopped := make(chan struct{})
	go func() { f.pub.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a Publish call was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(hold)
	<-stopped
	if n := len(f.srv.Messages()); n != 1 {
		t.Errorf("pstest holds %d messages; want the abandoned event published", n)
	}
}

// TestStop: Stop sends the batch still waiting for its delay, and Publish
// after Stop fails with ErrStopped without calling Pub/Sub.
func TestStop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "results", true)
	f.pub.delay = time.Hour
	errc := make(chan error, 1)
	go func() { errc <- f.pub.Publish(context.Background(), event(1)) }()
	for {
		f.pub.mu.Lock()
		queued := f.pub.cur != nil
		f.pub.mu.Unlock()
		if queued {
			break
		}
		time.Sleep(time.Millisecond)
	}
	f.pub.Stop()
	if err := <-errc; err != nil {
		t.Fatalf("Publish = %v; want the pending event sent by Stop", err)
	}
	if err := f.pub.Publish(context.Background(), event(2)); !errors.Is(err, ErrStopped) {
		t.Errorf("Publish after Stop = %v; want ErrStopped", err)
	}
	if n, c := len(f.srv.Messages()), f.calls.Load(); n != 1 || c != 1 {
		t.Errorf("%d messages in %d Publish calls; want 1 in 1", n, c)
	}
}

// BenchmarkPublish: one result per delivery, 80 in flight, through this
// Publisher and through pubsub.Publisher with the 1 ms bundling it used to
// have. pstest runs in-process, so its CPU is in both figures alike.
func BenchmarkPublish(b *testing.B) {
	srv := pstest.NewServer()
	b.Cleanup(func() { srv.Close() })
	client, err := pubsub.NewClient(context.Background(), project,
		option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	if _, err := client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: "projects/" + project + "/topics/bench"}); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, publish func(*Event) error) {
		b.ReportAllocs()
		b.SetParallelism(40) // × GOMAXPROCS
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := publish(event(int(seq.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("publisher=results", func(b *testing.B) {
		p := NewPublisher(client, "bench")
		defer p.Stop()
		run(b, func(e *Event) error { return p.Publish(context.Background(), e) })
	})
	b.Run("publisher=pubsub", func(b *testing.B) {
		p := client.Publisher("bench")
		p.PublishSettings.DelayThreshold = time.Millisecond
		defer p.Stop()
		run(b, func(e *Event) error {
			m, err := e.Message()
			if err != nil {
				return err
			}
			_, err = p.Publish(context.Background(), m).Get(context.Background())
			return err
		})
	})
}

// TestSendersReused: events published one after another, each a batch of
// its own, are sent by one goroutine that waits for the next batch; a slow
// Publish call does not hold up the next batch, which gets a sender of its
// own; and after Stop no sender is left.
func TestSendersReused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "results", true)
	for i := range 20 {
		if err := f.pub.Publish(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if c, s := f.calls.Load(), f.pub.started.Load(); c != 20 || s != 1 {
		t.Errorf("20 events one after another: %d Publish calls by %d sender goroutines; want 20 by 1", c, s)
	}
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- f.pub.Publish(context.Background(), event(20)) }()
	for f.calls.Load() == 20 {
		time.Sleep(time.Millisecond)
	}
	f.mu.Lock()
	f.hold = nil
	f.mu.Unlock()
	if err := f.pub.Publish(context.Background(), event(21)); err != nil {
		t.Fatalf("Publish while another call is held: %v", err)
	}
	close(hold)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if s := f.pub.started.Load(); s != 2 {
		t.Errorf("%d sender goroutines; want 2 (one held, one for the next batch)", s)
	}
	f.pub.Stop()
	for deadline := time.Now().Add(10 * time.Second); f.pub.running.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sender goroutines still running after Stop", f.pub.running.Load())
		}
	}
}

// FuzzAppendJSON: an event's data is what json.Marshal makes of it, byte
// for byte, whatever its strings hold.
func FuzzAppendJSON(f *testing.F) {
	f.Add("order-42", "1234", "alice@example.com", "sent", "18f0", "", 1, int64(1764619200123456789), false, "", "", false, "")
	f.Add("k<&>\"\\", "\x00\x1f\b\f\n\r\t\x7f", "é\u2028\u2029", "failed", "", "t", -3, int64(-62135596800), true,
		"reauth_required", "reconnect at \xff\xfe", true, "https://relay.example/connect?a=1&b=<2>")
	f.Fuzz(func(t *testing.T, key, id, account, status, gid, tid string, attempt int, nanos int64, maybe bool,
		code, msg string, retryable bool, reconnect string) {
		e := &Event{IdempotencyKey: key, PubSubMessageID: id, Account: account, Status: Status(status),
			GmailMessageID: gid, GmailThreadID: tid, Attempt: attempt, FinishedAt: time.Unix(0, nanos).UTC(), MaybeDuplicate: maybe}
		if code != "" || msg != "" {
			e.Error = &Error{Code: code, Message: msg, Retryable: retryable, ReconnectURL: reconnect}
		}
		want, wantErr := json.Marshal(e)
		got, err := e.appendJSON(nil)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("appendJSON error %v; json.Marshal error %v", err, wantErr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("appendJSON\n%s\njson.Marshal\n%s", got, want)
		}
	})
}
