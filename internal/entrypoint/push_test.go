package entrypoint

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/push"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// pushFunction is the push shell around h, behind the logging middleware
// as Push puts it, logging to log (nil: nowhere).
func pushFunction(h PushHandler, log ...*slog.Logger) http.Handler {
	l := logging.New(io.Discard, slog.LevelInfo)
	if len(log) > 0 {
		l = log[0]
	}
	return logging.Middleware(l, "p")(pushHandler(h))
}

func pushBody(id, data string) []byte {
	return []byte(`{"message":{"data":"` + base64.StdEncoding.EncodeToString([]byte(data)) +
		`","attributes":{"k":"v"},"messageId":"` + id + `"},"subscription":"projects/p/subscriptions/s"}`)
}

func TestPushServeHTTP(t *testing.T) {
	t.Parallel()
	failing := errors.New("gmail unavailable")
	cases := []struct {
		name     string
		method   string
		body     []byte
		ceID     string
		err      error // the handler's answer
		status   int
		handled  string // the message ID the handler saw; "" when not called
		wantData string
	}{
		{"delivered", http.MethodPost, pushBody("m-1", "hello"), "", nil, http.StatusOK, "m-1", "hello"},
		{"redeliver", http.MethodPost, pushBody("m-2", "hello"), "", failing, http.StatusInternalServerError, "m-2", "hello"},
		{"no message ID: the CloudEvent ID", http.MethodPost, []byte(`{"message":{"data":"YQ=="}}`), "ce-7", nil, http.StatusOK, "ce-7", "a"},
		{"not a push: acknowledged", http.MethodPost, []byte(`{"message":`), "", nil, http.StatusOK, "", ""},
		{"over the size limit: acknowledged", http.MethodPost, bytes.Repeat([]byte(" "), MaxPushBody+1), "", nil, http.StatusOK, "", ""},
		{"GET", http.MethodGet, nil, "", nil, http.StatusMethodNotAllowed, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var got *push.Message
			f := pushFunction(func(_ context.Context, m *push.Message) error {
				got = m
				return c.err
			})
			req := httptest.NewRequest(c.method, "/", bytes.NewReader(c.body))
			if c.ceID != "" {
				req.Header.Set("Ce-Id", c.ceID)
			}
			rec := httptest.NewRecorder()
			f.ServeHTTP(rec, req)
			if rec.Code != c.status {
				t.Errorf("status %d, want %d (%s)", rec.Code, c.status, rec.Body)
			}
			switch {
			case c.handled == "" && got != nil:
				t.Errorf("the handler was called with %+v", got)
			case c.handled != "" && (got == nil || got.ID != c.handled || string(got.Data) != c.wantData):
				t.Errorf("the handler saw %+v, want ID %q and data %q", got, c.handled, c.wantData)
			}
		})
	}
}

type testIDKey struct{}

// TestPushOwnContext: every message runs under its own request's context,
// so a client that gives up cancels its own delivery and no other. The
// functions framework's CloudEvent path could pair a message with another
// request's context (cloudevents/sdk-go#1224).
func TestPushOwnContext(t *testing.T) {
	t.Parallel()
	const n = 20
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	type seen struct {
		ctxID     any
		cancelled bool
	}
	var mu sync.Mutex
	results := map[string]seen{}
	f := pushFunction(func(ctx context.Context, m *push.Message) error {
		started.Done()
		<-release
		if m.ID == "m-0" {
			<-ctx.Done() // its client gives up
		}
		mu.Lock()
		results[m.ID] = seen{ctxID: ctx.Value(testIDKey{}), cancelled: ctx.Err() != nil}
		mu.Unlock()
		return nil
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), testIDKey{}, r.Header.Get("X-Test-Id"))
		f.ServeHTTP(w, r.WithContext(ctx))
	}))
	defer srv.Close()

	ctx0, cancel0 := context.WithCancel(context.Background())
	var done sync.WaitGroup
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			id := fmt.Sprintf("m-%d", i)
			ctx := context.Background()
			if i == 0 {
				ctx = ctx0
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, bytes.NewReader(pushBody(id, "x")))
			req.Header.Set("X-Test-Id", id)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}()
	}
	started.Wait()
	cancel0()
	close(release)
	done.Wait()
	srv.Close() // waits for the handlers

	mu.Lock()
	defer mu.Unlock()
	if len(results) != n {
		t.Fatalf("%d messages handled, want %d", len(results), n)
	}
	for id, s := range results {
		if s.ctxID != id {
			t.Errorf("message %s ran under the context of request %v", id, s.ctxID)
		}
		if want := id == "m-0"; s.cancelled != want {
			t.Errorf("message %s: context cancelled = %v, want %v", id, s.cancelled, want)
		}
	}
}

// TestPushPanic: a handler that panics costs its own message a redelivery
// and a logged stack, not the process.
func TestPushPanic(t *testing.T) {
	t.Parallel()
	var logs testenv.SyncBuffer
	f := pushFunction(func(_ context.Context, m *push.Message) error {
		if string(m.Data) == "poison" {
			var fields []string
			_ = fields[len(m.Data)] // index out of range
		}
		return nil
	}, logging.New(&logs, slog.LevelInfo))
	for _, c := range []struct {
		data   string
		status int
	}{{"poison", http.StatusInternalServerError}, {"fine", http.StatusOK}} {
		rec := httptest.NewRecorder()
		f.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(pushBody("m-"+c.data, c.data))))
		if rec.Code != c.status {
			t.Errorf("%s: status %d, want %d", c.data, rec.Code, c.status)
		}
	}
	var entry struct {
		Severity, Message, Panic, Stack string
		EventID                         string `json:"event_id"`
	}
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "panicked") {
			line = l
		}
	}
	if err := json.Unmarshal([]byte(line), &entry); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if entry.Severity != "ERROR" || !strings.Contains(entry.Message, "panicked") || !strings.Contains(entry.Panic, "index out of range") ||
		!strings.Contains(entry.Stack, "TestPushPanic") || entry.EventID != "m-poison" {
		t.Errorf("log entry %+v", entry)
	}
	if strings.Contains(logs.String(), "poison") && strings.Count(logs.String(), "poison") != strings.Count(logs.String(), "m-poison") {
		t.Errorf("the log carries the message's content: %s", logs.String())
	}
}
