package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/slogtest"
	"time"
)

// TestHandlerFollowsSlog runs slog's own conformance tests. They expect
// slog's key names, so the parse maps Cloud Logging's back.
func TestHandlerFollowsSlog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	newHandler := func(*testing.T) slog.Handler {
		buf.Reset()
		return newHandler(&buf, slog.LevelDebug)
	}
	result := func(t *testing.T) map[string]any {
		t.Helper()
		m := map[string]any{}
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", buf.Bytes(), err)
		}
		if v, ok := m["message"]; ok {
			m[slog.MessageKey] = v
			delete(m, "message")
		}
		if v, ok := m["severity"]; ok {
			m[slog.LevelKey] = v
			delete(m, "severity")
		}
		return m
	}
	slogtest.Run(t, newHandler, result)
}

type marshaler struct{}

func (marshaler) MarshalJSON() ([]byte, error) { return []byte(`{"custom":true}`), nil }

type marshalError struct{}

func (marshalError) Error() string                { return "text" }
func (marshalError) MarshalJSON() ([]byte, error) { return []byte(`"json"`), nil }

// TestHandlerValues: each kind of value is written as JSONHandler writes
// it, and every line is one JSON object.
func TestHandlerValues(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 12, 2, 1, 2, 3, 456789000, time.UTC)
	cases := []struct {
		name string
		attr slog.Attr
		want string // the value's JSON
	}{
		{"string", slog.String("k", `a "quoted" <b> line\n`), `"a \"quoted\" \u003cb\u003e line\\n"`},
		{"int", slog.Int("k", -42), `-42`},
		{"uint", slog.Uint64("k", math.MaxUint64), `18446744073709551615`},
		{"float", slog.Float64("k", 1.5), `1.5`},
		{"nan", slog.Float64("k", math.NaN()), `"NaN"`},
		{"inf", slog.Float64("k", math.Inf(-1)), `"-Inf"`},
		{"bool", slog.Bool("k", true), `true`},
		{"duration", slog.Duration("k", 1500*time.Millisecond), `1500000000`},
		{"time", slog.Time("k", when), `"2026-12-02T01:02:03.456789Z"`},
		{"error", slog.Any("k", errors.New("boom")), `"boom"`},
		{"error that marshals", slog.Any("k", marshalError{}), `"json"`},
		{"marshaler", slog.Any("k", marshaler{}), `{"custom":true}`},
		{"map", slog.Any("k", map[string]int{"a": 1}), `{"a":1}`},
		{"unmarshalable", slog.Any("k", make(chan int)), `"!ERROR: json: unsupported type: chan int"`},
		{"nil", slog.Any("k", nil), `null`},
		{"group", slog.Group("k", "a", 1, slog.Group("b", "c", "d")), `{"a":1,"b":{"c":"d"}}`},
		{"empty group", slog.Group("k"), ``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			l := slog.New(newHandler(&buf, slog.LevelInfo))
			l.LogAttrs(context.Background(), slog.LevelInfo, "m", c.attr)
			line := strings.TrimSuffix(buf.String(), "\n")
			if !json.Valid([]byte(line)) || strings.Count(buf.String(), "\n") != 1 {
				t.Fatalf("not one JSON line: %q", buf.String())
			}
			_, rest, ok := strings.Cut(line, `"message":"m"`)
			if !ok {
				t.Fatalf("no message in %s", line)
			}
			want := "}"
			if c.want != "" {
				want = `,"k":` + c.want + "}"
			}
			if rest != want {
				t.Errorf("after the message: %s, want %s", rest, want)
			}
		})
	}
}

// TestHandlerLine: the fixed members come first, in Cloud Logging's names,
// then With's attributes inside their groups, then the record's.
func TestHandlerLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := newHandler(&buf, slog.LevelInfo)
	when := time.Date(2026, 12, 2, 1, 2, 3, 0, time.UTC)
	r := slog.NewRecord(when, slog.LevelWarn, "sent", 0)
	r.AddAttrs(slog.Int("attempt", 2))
	h2 := h.WithAttrs([]slog.Attr{slog.String("account", "alice@example.com")}).WithGroup("g").WithGroup("h")
	if err := h2.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	// A group that gets no attributes is left out, With's ones included.
	if err := h2.Handle(context.Background(), slog.NewRecord(when, slog.LevelError, "bare", 0)); err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-12-02T01:02:03Z","severity":"WARNING","message":"sent","account":"alice@example.com","g":{"h":{"attempt":2}}}` + "\n" +
		`{"time":"2026-12-02T01:02:03Z","severity":"ERROR","message":"bare","account":"alice@example.com"}` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// TestHandlerRedactsWith: attributes given to With are redacted too, at any
// depth.
func TestHandlerRedactsWith(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := New(&buf, slog.LevelInfo).With("access_token", "ya29.with", slog.Group("oauth", "refresh_token", "1//with")).
		WithGroup("req").With("Authorization", "Bearer ya29.grouped", "email", "bob@example.org")
	l.Info("hello", "client_secret", "shh", "empty_token", "")
	out := buf.String()
	for _, secret := range []string{"ya29.with", "1//with", "ya29.grouped", "shh"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, `"email":"bob@example.org"`) || !strings.Contains(out, `"empty_token":""`) {
		t.Errorf("an attribute that is not secret was changed: %s", out)
	}
}

// TestHandlerConcurrentLines: lines written at once from many goroutines
// through handlers derived from one come out whole.
func TestHandlerConcurrentLines(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	base := New(&buf, slog.LevelInfo)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := base.With("g", g)
			for i := range 200 {
				l.Info("line", "i", i, "pad", strings.Repeat("x", 100))
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines, want 1600", len(lines))
	}
	for _, line := range lines {
		if !json.Valid([]byte(line)) {
			t.Fatalf("torn line %q", line)
		}
	}
}

// BenchmarkSenderLine is the sender's logging for one message: a With for
// the delivery, then its one line.
func BenchmarkSenderLine(b *testing.B) {
	l := New(io.Discard, slog.LevelInfo)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ll := l.With("pubsub_message_id", "1234567890123", "idempotency_key", "order-42-invoice", "account", "alice@example.com")
		ll.InfoContext(ctx, "sent", "gmail_message_id", "18c2f0a1b2c3d4e5", "attempt", 1)
	}
}
