// Package logging builds the structured logger every function uses: slog JSON
// with the keys Cloud Logging understands (severity, message, trace), carried
// in the request context, with secret-looking attributes redacted on the way
// out as a last line of defence.
package logging

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
)

// Cloud Logging reads these keys from a JSON log line on Cloud Run.
const (
	KeyTrace        = "logging.googleapis.com/trace"
	KeySpanID       = "logging.googleapis.com/spanId"
	KeyTraceSampled = "logging.googleapis.com/trace_sampled"
)

// Redacted replaces the value of any attribute whose key names a secret.
const Redacted = "[REDACTED]"

// isSecretKey reports whether an attribute key names a value that must never
// reach a log, even when a caller forgets: anything ending in token, secret
// or password, and the OAuth code, verifier, headers and mail bodies by exact
// name. Keys are compared lower-cased; "error_code" and the like stay
// readable.
func isSecretKey(key string) bool {
	k := strings.ToLower(key) // no allocation when key is already lower case
	if strings.HasSuffix(k, "token") || strings.HasSuffix(k, "secret") || strings.HasSuffix(k, "password") {
		return true
	}
	switch k {
	case "code", "code_verifier", "verifier", "authorization", "cookie", "set-cookie", "raw", "body", "html", "text", "state":
		return true
	}
	return false
}

// ParseLevel maps LOG_LEVEL strings ("debug", "info", "warning", "error") to
// slog levels. Unknown values are an error so a typo is caught at start-up.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		l = slog.LevelInfo
	case "debug":
		l = slog.LevelDebug
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return l, &LevelError{Value: s}
	}
	return l, nil
}

// LevelError reports an unknown LOG_LEVEL.
type LevelError struct{ Value string }

func (e *LevelError) Error() string {
	return "unknown log level " + `"` + e.Value + `"` + ` (use debug, info, warning or error)`
}

// New returns a JSON logger writing Cloud Logging's field names to w, one
// line per record, with secret-looking attributes redacted (see
// replaceAttr).
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:       level,
		ReplaceAttr: replaceAttr,
	}))
}

// NewFromEnv is New on stdout at the level named by LOG_LEVEL; a bad value
// falls back to info and says so, because logging must work before config
// validation can report anything.
func NewFromEnv() *slog.Logger {
	level, err := ParseLevel(os.Getenv("LOG_LEVEL"))
	l := New(os.Stdout, level)
	if err != nil {
		l.Warn("LOG_LEVEL ignored", "error", err.Error())
	}
	return l
}

// replaceAttr gives slog's built-in keys the names Cloud Logging reads
// (severity, message; time is already right) and redacts attributes whose
// key names a secret, at any depth. slog has already resolved LogValuers
// (config.Secret, tokenstore.Token) by the time it runs, so their own
// redaction holds too. An empty value is kept: it shows a field was unset
// without revealing anything.
func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 {
		switch a.Key {
		case slog.LevelKey:
			return slog.String("severity", severity(a.Value.Any()))
		case slog.MessageKey:
			a.Key = "message"
			return a
		case slog.TimeKey:
			return a
		}
	}
	if a.Value.Kind() != slog.KindGroup && isSecretKey(a.Key) {
		if a.Value.Kind() == slog.KindString && a.Value.String() == "" {
			return a
		}
		return slog.String(a.Key, Redacted)
	}
	return a
}

// severity is Cloud Logging's name for a slog level.
func severity(v any) string {
	l, ok := v.(slog.Level)
	if !ok {
		return "DEFAULT"
	}
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	default:
		return "DEBUG"
	}
}

type ctxKey struct{}

// WithLogger returns a context carrying l.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// FromContext returns the context's logger, or the default logger, so that
// code deep in a request never needs a nil check.
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.Default()
}

// TraceAttrs reads Cloud Run's X-Cloud-Trace-Context header (or the W3C
// traceparent header) and returns the attributes that let Cloud Logging group
// a request's lines under its trace. It returns nil when there is no trace.
func TraceAttrs(r *http.Request, projectID string) []any {
	traceID, spanID, sampled := parseCloudTrace(r.Header.Get("X-Cloud-Trace-Context"))
	if traceID == "" {
		traceID, spanID, sampled = parseTraceparent(r.Header.Get("traceparent"))
	}
	if traceID == "" {
		return nil
	}
	trace := traceID
	if projectID != "" {
		trace = "projects/" + projectID + "/traces/" + traceID
	}
	attrs := []any{slog.String(KeyTrace, trace)}
	if spanID != "" {
		attrs = append(attrs, slog.String(KeySpanID, spanID))
	}
	return append(attrs, slog.Bool(KeyTraceSampled, sampled))
}

var hexID = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

// parseCloudTrace parses "TRACE_ID/SPAN_ID;o=OPTIONS".
func parseCloudTrace(h string) (traceID, spanID string, sampled bool) {
	if h == "" {
		return "", "", false
	}
	rest, opts, _ := strings.Cut(h, ";")
	traceID, spanID, _ = strings.Cut(rest, "/")
	if !hexID.MatchString(traceID) {
		return "", "", false
	}
	return traceID, spanID, strings.TrimSpace(opts) == "o=1"
}

// parseTraceparent parses "00-TRACE_ID-SPAN_ID-FLAGS".
func parseTraceparent(h string) (traceID, spanID string, sampled bool) {
	parts := strings.Split(h, "-")
	if len(parts) != 4 || !hexID.MatchString(parts[1]) {
		return "", "", false
	}
	return parts[1], parts[2], strings.HasSuffix(parts[3], "1")
}

// Middleware puts a logger carrying the request's trace into its context.
func Middleware(base *slog.Logger, projectID string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			l := base
			if attrs := TraceAttrs(r, projectID); attrs != nil {
				l = base.With(attrs...)
			}
			next.ServeHTTP(w, r.WithContext(WithLogger(r.Context(), l)))
		})
	}
}
