package logging_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/logging"
)

// TestLogValueRedaction: a value that redacts itself through LogValue stays
// redacted under a key that does not look secret, directly, in a group and
// through With.
func TestLogValueRedaction(t *testing.T) {
	t.Parallel()
	const secret = "GOCSPX-client-secret-value"
	cases := []struct {
		name string
		log  func(*slog.Logger)
	}{
		{"attribute", func(l *slog.Logger) { l.Info("cfg", "client", config.Secret(secret)) }},
		{"group", func(l *slog.Logger) { l.Info("cfg", slog.Group("oauth", "client", config.Secret(secret))) }},
		{"with", func(l *slog.Logger) { l.With("client", config.Secret(secret)).Info("cfg") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			c.log(logging.New(&buf, slog.LevelInfo))
			out := buf.String()
			if strings.Contains(out, secret) {
				t.Fatalf("log contains the secret: %s", out)
			}
			if !strings.Contains(out, `"client":"[REDACTED]"`) {
				t.Errorf("the redacted value is missing: %s", out)
			}
		})
	}
}
