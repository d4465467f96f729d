// Package function is the shared shell of every Cloud Run function: it
// loads and validates the function's configuration and builds its handler
// once, on the first request (sync.OnceValues keeps the error), puts a
// trace-aware logger in each request's context, and answers a clear 503
// when the deployment is misconfigured instead of crashing the instance.
// HTTP serves the browser and API functions; Push, the Pub/Sub-fed ones.
package function

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/web"
)

// MaxRequestBody caps what an HTTP function reads.
const MaxRequestBody = 64 << 10

func load[C any, PC interface {
	*C
	Validate() error
}, H any](name string, log *slog.Logger, build func(context.Context, *C) (H, error)) func() (H, error) {
	return sync.OnceValues(func() (H, error) {
		var zero H
		ctx := logging.WithLogger(context.Background(), log)
		cfg, err := config.Load[C, PC](ctx)
		if err != nil {
			log.Error("configuration is invalid", "error", err.Error())
			return zero, err
		}
		h, err := build(ctx, cfg)
		if err != nil {
			log.Error("start-up failed", "error", err.Error())
			return zero, fmt.Errorf("%s: %w", name, err)
		}
		log.Info("function ready")
		return h, nil
	})
}

// HTTP returns an HTTP function that serves the handler build makes.
func HTTP[C any, PC interface {
	*C
	Validate() error
}](name string, build func(context.Context, *C) (http.Handler, error)) http.HandlerFunc {
	log := logging.NewFromEnv().With("function", name)
	get := load[C, PC](name, log, build)
	mw := logging.Middleware(log, os.Getenv("GOOGLE_CLOUD_PROJECT"))
	return func(w http.ResponseWriter, r *http.Request) {
		h, err := get()
		if err != nil {
			notReady(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBody)
		mw(h).ServeHTTP(w, r)
	}
}

func notReady(w http.ResponseWriter, r *http.Request) {
	const msg = "This gmail-relay function is not configured correctly, so it cannot serve requests."
	const fix = "The operator should read this function's logs (severity ERROR, \"configuration is invalid\" or \"start-up failed\"), fix the deployment and redeploy."
	if web.WantsJSON(r) {
		web.JSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{"code": "not_configured", "message": msg, "fix": fix}})
		return
	}
	http.Error(w, msg+"\n"+fix, http.StatusServiceUnavailable)
}
