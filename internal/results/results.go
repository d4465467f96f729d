// Package results publishes the outcome of every send request to the
// results topic (DESIGN §3), so a publisher learns what became of each
// message without polling. Events carry the status, idempotency key and app
// as attributes, so subscribers can filter without decoding.
package results

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// Status is a result's status.
type Status string

// Statuses.
const (
	StatusSent      Status = "sent"
	StatusFailed    Status = "failed"
	StatusDuplicate Status = "duplicate"
)

// Error is a failed result's error.
type Error struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	Retryable    bool   `json:"retryable"`
	ReconnectURL string `json:"reconnect_url,omitempty"`
	// RetryAt is when Google said the request can succeed (a daily
	// sending cap, the project's quota reset), in RFC 3339.
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// Event is one result.
type Event struct {
	IdempotencyKey  string `json:"idempotency_key"`
	PubSubMessageID string `json:"pubsub_message_id"`
	Account         string `json:"account"`
	// App is the app whose topic the request came from (DESIGN §7);
	// empty when the push named no app the relay knows.
	App            string    `json:"app"`
	Status         Status    `json:"status"`
	GmailMessageID string    `json:"gmail_message_id,omitempty"`
	GmailThreadID  string    `json:"gmail_thread_id,omitempty"`
	Attempt        int       `json:"attempt"`
	FinishedAt     time.Time `json:"finished_at"`
	// MaybeDuplicate is set when an earlier attempt reached Gmail without an
	// answer, so this message may have been delivered twice.
	MaybeDuplicate bool   `json:"maybe_duplicate,omitempty"`
	Error          *Error `json:"error,omitempty"`
}

// Message turns e into the Pub/Sub message that carries it.
func (e *Event) Message() (*pubsub.Message, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("results.Event.Message: %w", err)
	}
	// app lets each app's subscription on the shared results topic filter
	// to its own events (attributes.app = "billing").
	attrs := map[string]string{"status": string(e.Status), "idempotency_key": e.IdempotencyKey}
	if e.App != "" {
		attrs["app"] = e.App
	}
	if e.Error != nil {
		attrs["error_code"] = e.Error.Code
	}
	return &pubsub.Message{Data: data, Attributes: attrs}, nil
}

// BatchDelay is how long the publisher waits for more events to bundle
// with one. Results are small and a delivery's acknowledgement waits for
// its result, so it is short.
const BatchDelay = time.Millisecond

// ErrStopped is returned by Publish after Stop.
var ErrStopped = errors.New("results: the publisher is stopped")

// Publisher publishes events to one topic.
type Publisher struct{ p *pubsub.Publisher }

// NewPublisher publishes to topic (an ID, or a full name) through client.
func NewPublisher(client *pubsub.Client, topic string) *Publisher {
	p := client.Publisher(topic)
	p.PublishSettings.DelayThreshold = BatchDelay
	return &Publisher{p: p}
}

// Publish publishes e and waits until Pub/Sub has it, or ctx ends. An event
// whose wait ends with ctx may still be published.
func (p *Publisher) Publish(ctx context.Context, e *Event) error {
	m, err := e.Message()
	if err != nil {
		return fmt.Errorf("results.Publish: %w", err)
	}
	if _, err := p.p.Publish(ctx, m).Get(ctx); err != nil {
		if errors.Is(err, pubsub.ErrPublisherStopped) {
			return fmt.Errorf("results.Publish: %w", ErrStopped)
		}
		return fmt.Errorf("results.Publish: %w", err)
	}
	return nil
}

// Stop sends what is pending, waits for it, and makes later Publish calls
// fail with ErrStopped.
func (p *Publisher) Stop() { p.p.Stop() }
