package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func decode(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestCloudLoggingKeys(t *testing.T) {
	t.Parallel()
	cases := []struct {
		log  func(*slog.Logger)
		want string
	}{
		{func(l *slog.Logger) { l.Debug("d") }, "DEBUG"},
		{func(l *slog.Logger) { l.Info("i") }, "INFO"},
		{func(l *slog.Logger) { l.Warn("w") }, "WARNING"},
		{func(l *slog.Logger) { l.Error("e") }, "ERROR"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		c.log(New(&buf, slog.LevelDebug))
		lines := decode(t, &buf)
		if len(lines) != 1 {
			t.Fatalf("got %d lines", len(lines))
		}
		if lines[0]["severity"] != c.want {
			t.Errorf("severity = %v, want %s", lines[0]["severity"], c.want)
		}
		if _, ok := lines[0]["message"]; !ok {
			t.Errorf("no message key in %v", lines[0])
		}
		if _, ok := lines[0]["level"]; ok {
			t.Errorf("slog's level key leaked: %v", lines[0])
		}
	}
}

func TestRedaction(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := New(&buf, slog.LevelInfo)
	l.Info("exchange", "error_code", "rate_limited", "refresh_token", "1//secret-rt", "code", "4/secret-code",
		"client_secret", "shh", "access_token", "ya29.x", "email", "alice@example.com",
		slog.Group("req", "authorization", "Bearer ya29.y"))
	out := buf.String()
	for _, secret := range []string{"1//secret-rt", "4/secret-code", "shh", "ya29.x", "ya29.y"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "rate_limited") {
		t.Errorf("non-secret attribute was redacted: %s", out)
	}
}

func TestTraceAttrs(t *testing.T) {
	t.Parallel()
	const id = "105445aa7843bc8bf206b12000100000"
	cases := []struct {
		name, header, value string
		wantTrace, wantSpan string
		wantSampled         bool
	}{
		{"cloud", "X-Cloud-Trace-Context", id + "/1;o=1", "projects/p/traces/" + id, "1", true},
		{"cloud unsampled", "X-Cloud-Trace-Context", id + "/1;o=0", "projects/p/traces/" + id, "1", false},
		{"w3c", "traceparent", "00-" + id + "-00f067aa0ba902b7-01", "projects/p/traces/" + id, "00f067aa0ba902b7", true},
		{"garbage", "X-Cloud-Trace-Context", "not-a-trace", "", "", false},
		{"none", "", "", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if c.header != "" {
				r.Header.Set(c.header, c.value)
			}
			var buf bytes.Buffer
			h := Middleware(New(&buf, slog.LevelInfo), "p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				FromContext(r.Context()).Info("hello")
			}))
			h.ServeHTTP(httptest.NewRecorder(), r)
			line := decode(t, &buf)[0]
			got, _ := line[KeyTrace].(string)
			if got != c.wantTrace {
				t.Errorf("trace = %q, want %q", got, c.wantTrace)
			}
			if c.wantTrace != "" && line[KeyTraceSampled] != c.wantSampled {
				t.Errorf("sampled = %v, want %v", line[KeyTraceSampled], c.wantSampled)
			}
			if span, _ := line[KeySpanID].(string); span != c.wantSpan {
				t.Errorf("spanId = %q, want %q", span, c.wantSpan)
			}
			if line["message"] != "hello" || line["severity"] != "INFO" {
				t.Errorf("the traced line lost its fixed keys: %v", line)
			}
		})
	}
}

// TestRedactsWith: attributes given to With are redacted too, at any
// depth, and an empty secret stays visibly empty.
func TestRedactsWith(t *testing.T) {
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
	if strings.Count(out, Redacted) != 4 {
		t.Errorf("want 4 redacted values: %s", out)
	}
}

// TestLine: the time is RFC 3339 with nanoseconds, With's attributes and
// groups nest as slog nests them, and only the top-level built-in keys are
// renamed: a "msg" or "level" inside a group is the caller's own.
func TestLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := New(&buf, slog.LevelInfo).Handler()
	when := time.Date(2026, 12, 2, 1, 2, 3, 456789000, time.UTC)
	r := slog.NewRecord(when, slog.LevelWarn, "sent", 0)
	r.AddAttrs(slog.Int("attempt", 2), slog.String("msg", "inner"), slog.String("level", "x"))
	h2 := h.WithAttrs([]slog.Attr{slog.String("account", "alice@example.com")}).WithGroup("g").WithGroup("h")
	if err := h2.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-12-02T01:02:03.456789Z","severity":"WARNING","message":"sent","account":"alice@example.com",` +
		`"g":{"h":{"attempt":2,"msg":"inner","level":"x"}}}` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestFromContextDefault(t *testing.T) {
	t.Parallel()
	if FromContext(context.Background()) == nil {
		t.Fatal("FromContext returned nil without a logger")
	}
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]slog.Level{"": slog.LevelInfo, "DEBUG": slog.LevelDebug, "warning": slog.LevelWarn, "error": slog.LevelError} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) succeeded")
	}
}

func TestIsSecretKey(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]bool{
		"refresh_token": true, "Access_Token": true, "client_secret": true, "PASSWORD": true, "token": true,
		"code": true, "code_verifier": true, "verifier": true, "Authorization": true, "cookie": true,
		"set-cookie": true, "raw": true, "body": true, "html": true, "text": true, "state": true,
		"error_code": false, "codes": false, "tokens": false, "account": false, "state_change": false,
		"body_size": false, "subject": false, "": false,
	} {
		if got := isSecretKey(key); got != want {
			t.Errorf("isSecretKey(%q) = %v, want %v", key, got, want)
		}
	}
}
