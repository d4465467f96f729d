package results

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
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

// newFixture starts pstest, creates topic on it when create is set, and
// returns the server and a Publisher on the topic.
func newFixture(t *testing.T, topic string, create bool) (*pstest.Server, *Publisher) {
	t.Helper()
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	client, err := pubsub.NewClient(context.Background(), project,
		option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if create {
		if _, err := client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + topic}); err != nil {
			t.Fatal(err)
		}
	}
	p := NewPublisher(client, topic)
	t.Cleanup(p.Stop)
	return srv, p
}

var finished = time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)

// TestPublish: every event arrives once, its data the event in DESIGN §3's
// field names and its attributes the status, the idempotency key, the app
// and, for a failure, the error code.
func TestPublish(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		event     *Event
		wantData  string
		wantAttrs map[string]string
	}{
		{
			name: "sent",
			event: &Event{IdempotencyKey: "order-42", PubSubMessageID: "1", Account: "alice@example.com", App: "billing", Status: StatusSent,
				GmailMessageID: "18f0", GmailThreadID: "18e9", Attempt: 1, FinishedAt: finished},
			wantData: `{"idempotency_key":"order-42","pubsub_message_id":"1","account":"alice@example.com","app":"billing","status":"sent",` +
				`"gmail_message_id":"18f0","gmail_thread_id":"18e9","attempt":1,"finished_at":"2026-12-01T20:00:00Z"}`,
			wantAttrs: map[string]string{"status": "sent", "idempotency_key": "order-42", "app": "billing"},
		},
		{
			name: "failed",
			event: &Event{IdempotencyKey: "order-43", PubSubMessageID: "2", Account: "bob@example.com", App: "crm", Status: StatusFailed,
				Attempt: 3, FinishedAt: finished, MaybeDuplicate: true,
				Error: &Error{Code: "reauth_required", Message: "reconnect <bob>", ReconnectURL: "https://relay.example/authorize?login_hint=bob"}},
			wantData: `{"idempotency_key":"order-43","pubsub_message_id":"2","account":"bob@example.com","app":"crm","status":"failed",` +
				`"attempt":3,"finished_at":"2026-12-01T20:00:00Z","maybe_duplicate":true,"error":{"code":"reauth_required",` +
				`"message":"reconnect \u003cbob\u003e","retryable":false,"reconnect_url":"https://relay.example/authorize?login_hint=bob"}}`,
			wantAttrs: map[string]string{"status": "failed", "idempotency_key": "order-43", "error_code": "reauth_required", "app": "crm"},
		},
		{
			name: "duplicate",
			event: &Event{IdempotencyKey: "order-42", PubSubMessageID: "3", Account: "alice@example.com", Status: StatusDuplicate,
				GmailMessageID: "18f0", Attempt: 1, FinishedAt: finished},
			// An unknown app (a refused subscription) has no attribute.
			wantData: `{"idempotency_key":"order-42","pubsub_message_id":"3","account":"alice@example.com","app":"","status":"duplicate",` +
				`"gmail_message_id":"18f0","attempt":1,"finished_at":"2026-12-01T20:00:00Z"}`,
			wantAttrs: map[string]string{"status": "duplicate", "idempotency_key": "order-42"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv, p := newFixture(t, "results", true)
			if err := p.Publish(context.Background(), c.event); err != nil {
				t.Fatal(err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("pstest holds %d messages; want 1", len(msgs))
			}
			if got := string(msgs[0].Data); got != c.wantData {
				t.Errorf("data\n%s\nwant\n%s", got, c.wantData)
			}
			if !maps.Equal(msgs[0].Attributes, c.wantAttrs) {
				t.Errorf("attributes %v; want %v", msgs[0].Attributes, c.wantAttrs)
			}
		})
	}
}

// TestPublishConcurrent: events published at once all arrive, once each,
// with their own attributes.
func TestPublishConcurrent(t *testing.T) {
	t.Parallel()
	const n = 200
	srv, p := newFixture(t, "results", true)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = p.Publish(context.Background(), &Event{IdempotencyKey: fmt.Sprintf("key-%d", i),
				PubSubMessageID: fmt.Sprint(i), Account: "alice@example.com", Status: StatusSent, Attempt: 1, FinishedAt: finished})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range srv.Messages() {
		var e Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatalf("data %q: %v", m.Data, err)
		}
		if m.Attributes["idempotency_key"] != e.IdempotencyKey {
			t.Errorf("attributes %v for event %+v", m.Attributes, e)
		}
		keys = append(keys, e.IdempotencyKey)
	}
	slices.Sort(keys)
	if len(slices.Compact(keys)) != n {
		t.Errorf("%d distinct events arrived; want %d", len(keys), n)
	}
}

// TestPublishError: a failed publish is returned with its gRPC status kept
// for the caller, which nacks on it.
func TestPublishError(t *testing.T) {
	t.Parallel()
	_, p := newFixture(t, "missing", false)
	err := p.Publish(context.Background(), &Event{IdempotencyKey: "k", Status: StatusSent, FinishedAt: finished})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Publish to a missing topic = %v; want NotFound", err)
	}
}

// TestStop: Publish after Stop fails with ErrStopped and publishes nothing.
func TestStop(t *testing.T) {
	t.Parallel()
	srv, p := newFixture(t, "results", true)
	if err := p.Publish(context.Background(), &Event{IdempotencyKey: "before", Status: StatusSent, FinishedAt: finished}); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if err := p.Publish(context.Background(), &Event{IdempotencyKey: "after", Status: StatusSent, FinishedAt: finished}); !errors.Is(err, ErrStopped) {
		t.Errorf("Publish after Stop = %v; want ErrStopped", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("pstest holds %d messages; want only the one before Stop", n)
	}
}
