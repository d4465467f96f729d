package push

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// push is the body Pub/Sub pushes, with both spellings of the ID and the
// publish time, as it sends them.
func push(data string) string {
	return `{"message":{"attributes":{"idempotency_key":"order-42"},"data":"` + base64.StdEncoding.EncodeToString([]byte(data)) +
		`","messageId":"136969346945","message_id":"136969346945","publishTime":"2026-11-22T04:40:41.123Z","publish_time":"2026-11-22T04:40:41.123Z"},` +
		`"subscription":"projects/p/subscriptions/gmail-send-push","deliveryAttempt":3}`
}

// TestDecodePush: a push body decodes to its message, with the ID from
// either spelling or the fallback, and a body that cannot be a Pub/Sub
// message is refused with a reason.
func TestDecodePush(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body, fallback string
		want                 *Message
		wantErr              string
	}{
		{name: "push", body: push(`{"account":"alice@example.com"}`), fallback: "ce-1", want: &Message{
			ID: "136969346945", Data: []byte(`{"account":"alice@example.com"}`), Attributes: map[string]string{"idempotency_key": "order-42"},
			PublishTime: time.Date(2026, 11, 22, 4, 40, 41, 123e6, time.UTC), DeliveryAttempt: 3,
			Subscription: "projects/p/subscriptions/gmail-send-push"}},
		{name: "message_id only", body: `{"message":{"message_id":"9","data":"YQ=="}}`, want: &Message{ID: "9", Data: []byte("a")}},
		{name: "fallback ID", body: `{"message":{"data":"YQ=="}}`, fallback: "ce-7", want: &Message{ID: "ce-7", Data: []byte("a")}},
		{name: "unknown members ignored", body: `{"message":{"data":"YQ==","messageId":"1","orderingKey":"k"},"other":[true]}`,
			want: &Message{ID: "1", Data: []byte("a")}},
		{name: "no message", body: `{}`, wantErr: "carries no Pub/Sub message"},
		{name: "null message", body: `{"message":null}`, wantErr: "carries no Pub/Sub message"},
		{name: "data not base64", body: `{"message":{"data":"%%%","messageId":"1"}}`, wantErr: "decoding the push body"},
		{name: "data not a string", body: `{"message":{"data":7,"messageId":"1"}}`, wantErr: "decoding the push body"},
		{name: "attempt a string", body: `{"message":{"messageId":"1"},"deliveryAttempt":"2"}`, wantErr: "decoding the push body"},
		{name: "bad publish time", body: `{"message":{"messageId":"1","publishTime":"yesterday"}}`, wantErr: "decoding the push body"},
		{name: "malformed", body: `{"message":{"data":"YQ=="`, wantErr: "decoding the push body"},
		{name: "trailing data", body: `{"message":{"messageId":"1"}} {}`, wantErr: "decoding the push body"},
		{name: "empty", body: ``, wantErr: "decoding the push body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m, err := DecodePush([]byte(c.body), c.fallback)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("DecodePush = %+v, %v; want an error containing %q", m, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, c.want) {
				t.Errorf("DecodePush = %+v\nwant %+v", m, c.want)
			}
		})
	}
}

// FuzzDecodeWire: DecodePush never panics on any body, and a well-formed
// push built from the fuzzed message decodes back to it.
func FuzzDecodeWire(f *testing.F) {
	f.Add([]byte(push(`{"account":"alice@example.com"}`)), "136969346945", []byte("hello"), "idempotency_key", "order-42", "projects/p/subscriptions/s", 3)
	f.Add([]byte(`{"message":{"data":"%%%"}}`), "", []byte{}, "", "", "", 0)
	f.Add([]byte(`{"message":null}`), "k\u00e9\n", []byte{0, 0xff}, "\x00", "\"", "", -1)
	f.Fuzz(func(t *testing.T, body []byte, id string, data []byte, key, value, sub string, attempt int) {
		_, _ = DecodePush(body, "fallback")

		if id == "" || !utf8.ValidString(id) || !utf8.ValidString(key) || !utf8.ValidString(value) || !utf8.ValidString(sub) {
			return // json.Marshal would replace invalid UTF-8
		}
		var w wire
		w.Message.Data = data
		w.Message.Attributes = map[string]string{key: value}
		w.Message.MessageID = id
		w.Message.PublishTime = time.Date(2026, 11, 22, 4, 40, 41, 123e6, time.UTC)
		w.Subscription = sub
		w.DeliveryAttempt = attempt
		b, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodePush(b, "fallback")
		if err != nil {
			t.Fatalf("DecodePush(%s): %v", b, err)
		}
		want := &Message{ID: id, Data: data, Attributes: w.Message.Attributes, PublishTime: w.Message.PublishTime,
			DeliveryAttempt: attempt, Subscription: sub}
		if len(data) == 0 {
			want.Data = nil
		}
		if m.ID != want.ID || !bytes.Equal(m.Data, want.Data) || !reflect.DeepEqual(m.Attributes, want.Attributes) ||
			!m.PublishTime.Equal(want.PublishTime) || m.DeliveryAttempt != want.DeliveryAttempt || m.Subscription != want.Subscription {
			t.Errorf("DecodePush(%s)\n = %+v\nwant %+v", b, m, want)
		}
	})
}

// TestEncodeRoundTrip: what EncodePush writes for the dev server decodes
// back to the same message.
func TestEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	in := &Message{ID: "m1", Data: []byte("hello"), Attributes: map[string]string{"a": "b"},
		PublishTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), DeliveryAttempt: 2, Subscription: "projects/p/subscriptions/s"}
	b, err := EncodePush(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodePush(b, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("DecodePush(EncodePush(m)) = %+v, want %+v", out, in)
	}
}
