// Package events publishes account events (a status change, a token about
// to expire) to the account-events topic, so operators and applications can
// react to a mailbox that needs its owner before sends start failing.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// Types of account events.
const (
	TypeStatusChanged = "status_changed"
	TypeTokenExpiring = "token_expiring"
)

// Account is one account event.
type Account struct {
	Type           string    `json:"type"`
	Account        string    `json:"account"`
	Status         string    `json:"status"`
	PreviousStatus string    `json:"previous_status,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	ReconnectURL   string    `json:"reconnect_url,omitempty"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	At             time.Time `json:"at"`
}

// Publisher publishes account events to one topic.
type Publisher struct{ p *pubsub.Publisher }

// NewPublisher publishes to topic through client.
func NewPublisher(client *pubsub.Client, topic string) *Publisher {
	return &Publisher{p: client.Publisher(topic)}
}

// Publish publishes e and waits until Pub/Sub has it. The event type and
// status are attributes, so subscribers can filter.
func (p *Publisher) Publish(ctx context.Context, e *Account) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("events.Publish: %w", err)
	}
	m := &pubsub.Message{Data: data, Attributes: map[string]string{"type": e.Type, "status": e.Status, "account": e.Account}}
	if _, err := p.p.Publish(ctx, m).Get(ctx); err != nil {
		return fmt.Errorf("events.Publish: %w", err)
	}
	return nil
}

// Stop flushes pending events.
func (p *Publisher) Stop() { p.p.Stop() }
