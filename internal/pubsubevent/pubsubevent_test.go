package pubsubevent

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// push is the body Pub/Sub pushes, with both spellings of the ID and the
// publish time, as it sends them.
func push(data string) string {
	return `{"message":{"attributes":{"idempotency_key":"order-42"},"data":"` + base64.StdEncoding.EncodeToString([]byte(data)) +
		`","messageId":"136969346945","message_id":"136969346945","publishTime":"2026-11-22T04:40:41.123Z","publish_time":"2026-11-22T04:40:41.123Z"},` +
		`"subscription":"projects/p/subscriptions/gmail-send-push","deliveryAttempt":3}`
}

// wireCases are event data on and off decodeWire's fast path.
var wireCases = []struct {
	name string
	in   string
	fast bool // the single pass must handle it
}{
	{"push", push(`{"account":"alice@example.com"}`), true},
	{"eventarc form", `{"message":{"data":"eyJhIjoxfQ==","messageId":"1","publishTime":"2026-11-22T00:00:00Z"},"subscription":"projects/p/subscriptions/s"}`, true},
	{"extra members", `{"message":{"data":"","orderingKey":"k","extra":{"a":[1,{"b":null}]}},"other":[true]}`, true},
	{"escapes", `{"message":{"messageId":"\u0031\n","attributes":{"k\u00e9":"v\"w"}},"subscription":"s\/t"}`, true},
	{"repeated attributes merge", `{"message":{"attributes":{"a":"1"},"attributes":{"b":"2"}}}`, true},
	{"repeated data, last wins", `{"message":{"data":"YQ==","data":"Yg=="}}`, true},
	{"whitespace", " \n{ \"message\" : { \"data\" : \"YQ==\" } }\t", true},
	{"base64 with line breaks", `{"message":{"data":"YW\r\nJj"}}`, true},
	{"empty object", `{}`, true},
	{"null", `null`, false},
	{"null message", `{"message":null}`, false},
	{"null data", `{"message":{"data":null}}`, false},
	{"null attribute", `{"message":{"attributes":{"a":null}}}`, false},
	{"key in another case", `{"Message":{"Data":"YQ=="}}`, false},
	{"field in another case", `{"message":{"MessageID":"7"}}`, false},
	{"publish time escaped", `{"message":{"publishTime":"2026-11-22T00:00:00\u005a"}}`, false},
	{"publish time bad", `{"message":{"publishTime":"yesterday"}}`, false},
	{"bad base64", `{"message":{"data":"%%%"}}`, false},
	{"data not a string", `{"message":{"data":7}}`, false},
	{"attempt fractional", `{"deliveryAttempt":1.5}`, false},
	{"attempt huge", `{"deliveryAttempt":99999999999999999999}`, false},
	{"attempt a string", `{"deliveryAttempt":"2"}`, false},
	{"trailing data", `{"message":{}} {}`, false},
	{"malformed", `{"message":{"data":"YQ=="`, false},
	{"array", `[]`, false},
	{"empty", ``, false},
}

// TestDecodeWireMatchesUnmarshal: decodeWire gives what json.Unmarshal
// gives, value and error, and takes the single pass for what Pub/Sub and
// Eventarc send.
func TestDecodeWireMatchesUnmarshal(t *testing.T) {
	t.Parallel()
	for _, tc := range wireCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sameAsUnmarshal(t, []byte(tc.in))
			if _, ok := scanWire([]byte(tc.in)); ok != tc.fast {
				t.Errorf("fast path taken = %v, want %v", ok, tc.fast)
			}
		})
	}
}

func sameAsUnmarshal(t *testing.T, in []byte) {
	t.Helper()
	got, gotErr := decodeWire(in)
	var want wire
	wantErr := json.Unmarshal(in, &want)
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Fatalf("decodeWire(%q) error = %v; json.Unmarshal: %v", in, gotErr, wantErr)
	}
	if gotErr == nil && !reflect.DeepEqual(got, want) {
		t.Errorf("decodeWire(%q)\n = %+v\njson.Unmarshal: %+v", in, got, want)
	}
}

func FuzzDecodeWire(f *testing.F) {
	for _, tc := range wireCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) { sameAsUnmarshal(t, in) })
}

func TestDecode(t *testing.T) {
	t.Parallel()
	newEvent := func(id, typ, data string) event.Event {
		e := event.New()
		e.SetID(id)
		e.SetType(typ)
		e.SetSource("//pubsub.googleapis.com/projects/p/topics/gmail-send")
		if err := e.SetData("application/json", []byte(data)); err != nil {
			t.Fatal(err)
		}
		return e
	}
	m, err := Decode(newEvent("ce-1", Type, push(`{"to":["b@example.org"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{ID: "136969346945", Data: []byte(`{"to":["b@example.org"]}`), Attributes: map[string]string{"idempotency_key": "order-42"},
		PublishTime: time.Date(2026, 11, 22, 4, 40, 41, 123e6, time.UTC), DeliveryAttempt: 3, Subscription: "projects/p/subscriptions/gmail-send-push"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Decode = %+v\nwant %+v", m, want)
	}

	for _, tc := range []struct {
		name, id, typ, data string
		wantID, wantErr     string
	}{
		{"message_id only", "ce", Type, `{"message":{"message_id":"9","data":"YQ=="}}`, "9", ""},
		{"event ID when the message has none", "ce-7", Type, `{"message":{"data":"YQ=="}}`, "ce-7", ""},
		{"another event type", "ce", "google.cloud.storage.object.v1.finalized", `{}`, "", "is not " + Type},
		{"no message at all", "", Type, `{}`, "", "carries no Pub/Sub message"},
		{"not JSON", "ce", Type, `{"message":`, "", "decoding event data"},
	} {
		m, err := Decode(newEvent(tc.id, tc.typ, tc.data))
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: Decode error = %v, want one containing %q", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: Decode: %v", tc.name, err)
		case tc.wantErr == "" && m.ID != tc.wantID:
			t.Errorf("%s: ID = %q, want %q", tc.name, m.ID, tc.wantID)
		}
	}
}

// TestNewRoundTrip: what New builds for the dev server decodes back.
func TestNewRoundTrip(t *testing.T) {
	t.Parallel()
	in := &Message{ID: "m1", Data: []byte("hello"), Attributes: map[string]string{"a": "b"},
		PublishTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), DeliveryAttempt: 2, Subscription: "projects/p/subscriptions/s"}
	e, err := New(in, "projects/p/topics/t")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(e)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("Decode(New(m)) = %+v, want %+v", out, in)
	}
}

func BenchmarkDecode(b *testing.B) {
	req := `{"account":"alice@example.com","to":["bob@example.org"],"html":"` + strings.Repeat(`\u003cp\u003eHello\u003c/p\u003e\n`, 300) + `"}`
	e := event.New()
	e.SetID("ce-1")
	e.SetType(Type)
	if err := e.SetData("application/json", []byte(push(req))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(e); err != nil {
			b.Fatal(err)
		}
	}
}
