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
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "admin"

// New builds the function from env, with deps' clients and stores shared.
func New(ctx context.Context, env envconfig.Lookuper, deps setup.Deps) (http.Handler, io.Closer, error) {
	return function.HTTP[config.Admin](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Admin) (http.Handler, io.Closer, error) {
		return setup.Admin(ctx, cfg, deps)
	})
}

func init() {
	function.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, setup.Deps{})
	})
}
