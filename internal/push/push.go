// Package push reads a Pub/Sub message from the body of a push
// request, and writes that body for the dev server and tests, which push
// to the functions as Pub/Sub does.
package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

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

// wire is the push body. Pub/Sub sends the message ID in both spellings; data is base64, which
// json.Unmarshal decodes into the []byte.
type wire struct {
	Message struct {
		Data        []byte            `json:"data"`
		Attributes  map[string]string `json:"attributes,omitempty"`
		MessageID   string            `json:"messageId"`
		MessageID2  string            `json:"message_id,omitempty"`
		PublishTime time.Time         `json:"publishTime"`
	} `json:"message"`
	Subscription    string `json:"subscription"`
	DeliveryAttempt int    `json:"deliveryAttempt,omitempty"`
}

// DecodePush extracts the Pub/Sub message from the body of a push request.
// fallbackID
// (the ce-id header of an Eventarc delivery, say) names a message that
// carries no ID of its own.
func DecodePush(body []byte, fallbackID string) (*Message, error) {
	return decode(body, fallbackID)
}

func decode(data []byte, fallbackID string) (*Message, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("push: decoding the push body: %w", err)
	}
	id := w.Message.MessageID
	if id == "" {
		id = w.Message.MessageID2
	}
	if id == "" {
		id = fallbackID
	}
	if id == "" && len(w.Message.Data) == 0 {
		return nil, errors.New("push: the push body carries no Pub/Sub message")
	}
	return &Message{
		ID: id, Data: w.Message.Data, Attributes: w.Message.Attributes,
		PublishTime: w.Message.PublishTime, DeliveryAttempt: w.DeliveryAttempt, Subscription: w.Subscription,
	}, nil
}

// EncodePush writes the body Pub/Sub would push for m.
func EncodePush(m *Message) ([]byte, error) {
	var w wire
	w.Message.Data = m.Data
	w.Message.Attributes = m.Attributes
	w.Message.MessageID = m.ID
	w.Message.PublishTime = m.PublishTime.UTC()
	w.Subscription = m.Subscription
	w.DeliveryAttempt = m.DeliveryAttempt
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("push.EncodePush: %w", err)
	}
	return b, nil
}
