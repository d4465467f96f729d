// Package pubsubevent decodes a Pub/Sub message from the body of a push
// request, or from the CloudEvent (type
// google.cloud.pubsub.topic.v1.messagePublished) whose data is that body.
package pubsubevent

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Type is the CloudEvent type of a published Pub/Sub message.
const Type = "google.cloud.pubsub.topic.v1.messagePublished"

// Message is the Pub/Sub message inside the event.
type Message struct {
	ID          string
	Data        []byte
	Attributes  map[string]string
	PublishTime time.Time
	// DeliveryAttempt is set by Pub/Sub when the subscription has a
	// dead-letter policy; 0 when unknown.
	DeliveryAttempt int
	Subscription    string
}

// wire is the push body, and a messagePublished event's data. Pub/Sub
// sends the message ID in both spellings; data is base64, which
// json.Unmarshal decodes into the []byte.
type wire struct {
	Message struct {
		Data        []byte            `json:"data"`
		Attributes  map[string]string `json:"attributes"`
		MessageID   string            `json:"messageId"`
		MessageID2  string            `json:"message_id"`
		PublishTime time.Time         `json:"publishTime"`
	} `json:"message"`
	Subscription    string `json:"subscription"`
	DeliveryAttempt int    `json:"deliveryAttempt"`
}

// Decode extracts the Pub/Sub message from e.
func Decode(e event.Event) (*Message, error) {
	if e.Type() != "" && e.Type() != Type {
		return nil, fmt.Errorf("pubsubevent: event type %q is not %s", e.Type(), Type)
	}
	return decode(e.Data(), e.ID())
}

// DecodePush extracts the Pub/Sub message from the body of a push request,
// which is the same JSON as a messagePublished event's data. fallbackID
// (the ce-id header of an Eventarc delivery, say) names a message that
// carries no ID of its own.
func DecodePush(body []byte, fallbackID string) (*Message, error) {
	return decode(body, fallbackID)
}

func decode(data []byte, fallbackID string) (*Message, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("pubsubevent: decoding event data: %w", err)
	}
	id := w.Message.MessageID
	if id == "" {
		id = w.Message.MessageID2
	}
	if id == "" {
		id = fallbackID
	}
	if id == "" && len(w.Message.Data) == 0 {
		return nil, errors.New("pubsubevent: the event carries no Pub/Sub message")
	}
	return &Message{
		ID: id, Data: w.Message.Data, Attributes: w.Message.Attributes,
		PublishTime: w.Message.PublishTime, DeliveryAttempt: w.DeliveryAttempt, Subscription: w.Subscription,
	}, nil
}

// New builds the event that Pub/Sub push would deliver for m, for the dev
// server and tests.
func New(m *Message, topic string) (event.Event, error) {
	var w wire
	w.Message.Data = m.Data
	w.Message.Attributes = m.Attributes
	w.Message.MessageID = m.ID
	w.Message.PublishTime = m.PublishTime
	w.Subscription = m.Subscription
	w.DeliveryAttempt = m.DeliveryAttempt
	e := event.New()
	e.SetID(m.ID)
	e.SetType(Type)
	e.SetSource("//pubsub.googleapis.com/" + topic)
	if !m.PublishTime.IsZero() {
		e.SetTime(m.PublishTime)
	}
	if err := e.SetData("application/json", w); err != nil {
		return e, fmt.Errorf("pubsubevent.New: %w", err)
	}
	return e, nil
}
