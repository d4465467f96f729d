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
		wantTrace           string
		wantSampled         bool
	}{
		{"cloud", "X-Cloud-Trace-Context", id + "/1;o=1", "projects/p/traces/" + id, true},
		{"cloud unsampled", "X-Cloud-Trace-Context", id + "/1;o=0", "projects/p/traces/" + id, false},
		{"w3c", "traceparent", "00-" + id + "-00f067aa0ba902b7-01", "projects/p/traces/" + id, true},
		{"garbage", "X-Cloud-Trace-Context", "not-a-trace", "", false},
		{"none", "", "", "", false},
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
		})
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
