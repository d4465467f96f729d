// Package admin is the operator's API (IAM-only when deployed): accounts,
// connection tests, disconnects and message status. The dev server mounts
// it under /admin/.
package admin

import (
	"context"
	"io"
	"net/http"

	"github.com/sethvargo/go-envconfig"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/entrypoint"
	"github.com/gmailrelay/gmailrelay/internal/wiring"
)

// Name is the function's target name.
const Name = "admin"

// New builds the function from env, with deps' clients and stores shared.
func New(ctx context.Context, env envconfig.Lookuper, deps wiring.Deps) (http.Handler, io.Closer, error) {
	return entrypoint.HTTP[config.Admin](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Admin) (http.Handler, io.Closer, error) {
		return wiring.Admin(ctx, cfg, deps)
	})
}

func init() {
	entrypoint.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, wiring.Deps{})
	})
}
