// Package entrypoint is the shared shell of every Cloud Run function. HTTP
// and Push load a function's configuration from the lookuper they are
// given, build its handler, and put a trace-aware logger in each request's
// context; they return, with the handler, a closer for every client the
// build opened. Register is the Cloud Run side: it builds from the process
// environment, at start-up when deployed, and registers the result with
// the functions framework.
package entrypoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/sethvargo/go-envconfig"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/respond"
)

// MaxRequestBody caps what an HTTP function reads.
const MaxRequestBody = 64 << 10

// Config is what every function's configuration type provides.
type Config[C any] interface {
	*C
	Validate() error
	Common() *config.Base
}

// Builder builds a function's handler H from its validated configuration;
// the closer closes every client the build opened. A builder that fails
// closes what it opened itself.
type Builder[C, H any] func(ctx context.Context, cfg *C) (H, io.Closer, error)

// New is the shape of each function package's constructor once its shared
// dependencies are bound: the handler and its closer, from a lookuper.
type New func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error)

// ConfigError is a configuration that does not validate: the operator's to
// fix, where other build errors may be transient.
type ConfigError struct {
	Function string
	Err      error
}

func (e *ConfigError) Error() string { return e.Function + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Problems lists the problems err reports one by one: the errors that
// errors.Join collected (config.Validate joins one per variable), or err.
func Problems(err error) []string {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range joined.Unwrap() {
		out = append(out, Problems(e)...)
	}
	return out
}

// HTTP builds an HTTP function: its request bodies are capped at
// MaxRequestBody. logs is where it logs (nil: stdout).
func HTTP[C any, PC Config[C]](ctx context.Context, name string, env envconfig.Lookuper, logs io.Writer, build Builder[C, http.Handler]) (http.Handler, io.Closer, error) {
	return assemble[C, PC](ctx, name, env, logs, build, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBody)
			h.ServeHTTP(w, r)
		})
	})
}

// Push builds a function fed by Pub/Sub push: the handler reads each push
// request and calls the PushHandler the build made (see push.go). With an
// Admission, each push is admitted by its memory cost before its body is
// read (see admission.go).
func Push[C any, PC Config[C]](ctx context.Context, name string, env envconfig.Lookuper, logs io.Writer, build Builder[C, PushHandler], opts ...PushOption) (http.Handler, io.Closer, error) {
	var o pushOptions
	for _, opt := range opts {
		opt(&o)
	}
	return assemble[C, PC](ctx, name, env, logs, build, func(h PushHandler) http.Handler {
		if o.admission == nil {
			return pushHandler(h)
		}
		return o.admission.Handler(pushHandler(h))
	})
}

// PushOption configures Push.
type PushOption func(*pushOptions)

type pushOptions struct{ admission *Admission }

// WithAdmission admits each push through a.
func WithAdmission(a *Admission) PushOption { return func(o *pushOptions) { o.admission = a } }

func assemble[C any, PC Config[C], H any](ctx context.Context, name string, env envconfig.Lookuper, logs io.Writer, build Builder[C, H], serve func(H) http.Handler) (http.Handler, io.Closer, error) {
	cfg, err := config.LoadFrom[C, PC](ctx, env)
	if err != nil {
		return nil, nil, &ConfigError{Function: name, Err: err}
	}
	base := PC(cfg).Common()
	if logs == nil {
		logs = os.Stdout
	}
	level, _ := logging.ParseLevel(base.LogLevel) // Validate checked it
	log := logging.New(logs, level).With("function", name)
	h, closer, err := build(logging.WithLogger(ctx, log), cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	log.Info("function ready")
	return logging.Middleware(log, base.ProjectID)(serve(h)), closer, nil
}

// Register registers the function named name with the functions framework,
// built by newFn from the process environment. Deployed, FUNCTION_TARGET
// names the function and it is built here, at start-up: if that fails, every
// problem is logged at severity ERROR and the process exits, so Cloud Run
// marks the revision failed instead of serving errors. Elsewhere (all
// functions in one process, or a test that imports the package) it is built
// on its first request, and a failure answers 503.
func Register(name string, newFn New) {
	functions.HTTP(name, registered(name, os.Getenv("FUNCTION_TARGET"), envconfig.OsLookuper(), logging.NewFromEnv(), os.Exit, newFn))
}

func registered(name, target string, env envconfig.Lookuper, log *slog.Logger, exit func(int), newFn New) http.HandlerFunc {
	log = log.With("function", name)
	build := func() (http.Handler, error) {
		// The closer is dropped: the clients live as long as the instance,
		// and the sender waits for each result's publication before it
		// acks. All a stopped instance can lose is the sender's last
		// second of daily-quota counts (sender/quota.go coalesces them),
		// which errs toward letting a few more sends through.
		h, _, err := newFn(context.Background(), env)
		if err != nil {
			msg := "start-up failed"
			if errors.As(err, new(*ConfigError)) {
				msg = "configuration is invalid"
			}
			log.Error(msg, "error", err.Error(), "problems", Problems(err))
		}
		return h, err
	}
	if target == name {
		h, err := build()
		if err != nil {
			exit(1)
			return notReady
		}
		return h.ServeHTTP
	}
	get := sync.OnceValues(build)
	return func(w http.ResponseWriter, r *http.Request) {
		h, err := get()
		if err != nil {
			notReady(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}
}

func notReady(w http.ResponseWriter, r *http.Request) {
	respond.Error(w, r, http.StatusServiceUnavailable, respond.APIError{Code: "not_configured",
		Message: "This gmail-relay function is not configured correctly, so it cannot serve requests.",
		Fix:     "The operator should read this function's logs (severity ERROR, \"configuration is invalid\" or \"start-up failed\"), fix the deployment and redeploy."})
}
