package sender_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

const (
	alice = "alice@example.com"
	bob   = "bob@example.net"
)

// stores are the backends every scenario runs on: the Local files always,
// Firestore when its emulator is there (testenv skips, or fails under CI).
var stores = []sendertest.Store{sendertest.Local, sendertest.Firestore}

// forEachStore runs body once per backend, in parallel.
func forEachStore(t *testing.T, body func(t *testing.T, store sendertest.Store)) {
	t.Helper()
	for _, s := range stores {
		t.Run(s.String(), func(t *testing.T) {
			t.Parallel()
			if s == sendertest.Firestore {
				testenv.FirestoreEmulator(t)
			}
			body(t, s)
		})
	}
}

// record is the ledger record of key sent from account in the default app.
func record(e *sendertest.Env, account, key string) *ledger.Record {
	return e.Record(ledger.Scope{Account: account, Key: key}.ID())
}

func delivery(msgID string, req sendertest.Request) sender.Delivery {
	return sender.Delivery{MessageID: msgID, Data: req.JSON()}
}

func wantAck(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Handle = %v; want nil (ack)", err)
	}
}

func wantNack(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, sender.ErrRetry) {
		t.Fatalf("Handle = %v; want an error wrapping ErrRetry (nack)", err)
	}
}

// oneResult drains the results and requires exactly one, whose attributes
// agree with its body.
func oneResult(t *testing.T, e *sendertest.Env) sendertest.Result {
	t.Helper()
	rs := e.Results()
	if len(rs) != 1 {
		t.Fatalf("got %d result events, want 1: %+v", len(rs), rs)
	}
	checkAttrs(t, rs[0])
	return rs[0]
}

func noResult(t *testing.T, e *sendertest.Env) {
	t.Helper()
	if rs := e.Results(); len(rs) != 0 {
		t.Fatalf("got %d result events, want none (a nack publishes nothing): %+v", len(rs), rs)
	}
}

func checkAttrs(t *testing.T, r sendertest.Result) {
	t.Helper()
	if r.Attributes["status"] != string(r.Event.Status) || r.Attributes["idempotency_key"] != r.Event.IdempotencyKey {
		t.Errorf("attributes %v disagree with the event (status %q, key %q)", r.Attributes, r.Event.Status, r.Event.IdempotencyKey)
	}
	if r.Event.FinishedAt.IsZero() {
		t.Error("finished_at is zero")
	}
}

// wantFailed checks a failed result's error.
func wantFailed(t *testing.T, r sendertest.Result, code string, retryable bool, contains ...string) {
	t.Helper()
	ev := r.Event
	if ev.Status != results.StatusFailed || ev.Error == nil {
		t.Fatalf("result %+v; want status failed with an error", ev)
	}
	if ev.Error.Code != code || ev.Error.Retryable != retryable {
		t.Errorf("error = {code %q retryable %v}; want {code %q retryable %v} (message %q)", ev.Error.Code, ev.Error.Retryable, code, retryable, ev.Error.Message)
	}
	if r.Attributes["error_code"] != code {
		t.Errorf("attribute error_code = %q; want %q", r.Attributes["error_code"], code)
	}
	for _, s := range contains {
		if !strings.Contains(ev.Error.Message, s) {
			t.Errorf("error message %q does not contain %q", ev.Error.Message, s)
		}
	}
	if ev.GmailMessageID != "" {
		t.Errorf("a failure carries gmail_message_id %q", ev.GmailMessageID)
	}
}

func wantOutbox(t *testing.T, e *sendertest.Env, n int) {
	t.Helper()
	if got, files := len(e.Outbox()), e.EMLFiles(); got != n || files != n {
		t.Fatalf("outbox lists %d messages in %d .eml files; want %d", got, files, n)
	}
}

// eml parses an outbox file.
type eml struct {
	header gomessage.Header
	raw    []byte
	entity *gomessage.Entity
}

func readEML(t *testing.T, path string) *eml {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ent, err := gomessage.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	return &eml{header: ent.Header, raw: raw, entity: ent}
}

// parts returns every leaf of the message with its decoded body.
func (m *eml) parts(t *testing.T) []leaf {
	t.Helper()
	var out []leaf
	ent, err := gomessage.Read(bytes.NewReader(m.raw))
	if err != nil {
		t.Fatal(err)
	}
	err = ent.Walk(func(path []int, e *gomessage.Entity, err error) error {
		if err != nil {
			return err
		}
		if mr := e.MultipartReader(); mr != nil {
			return nil
		}
		b, err := io.ReadAll(e.Body)
		if err != nil {
			return err
		}
		ct, _, _ := e.Header.ContentType()
		_, params, _ := e.Header.ContentDisposition()
		out = append(out, leaf{contentType: ct, filename: params["filename"], body: b})
		return nil
	})
	if err != nil {
		t.Fatalf("walking the message: %v", err)
	}
	return out
}

type leaf struct {
	contentType string
	filename    string
	body        []byte
}
