// Package authorize is the connect link: it shows what connecting grants and
// sends the mailbox owner to Google's consent screen.
package authorize

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
const Name = "authorize"

// New builds the function from env, with deps' clients and stores shared.
func New(ctx context.Context, env envconfig.Lookuper, deps wiring.Deps) (http.Handler, io.Closer, error) {
	return entrypoint.HTTP[config.Authorize](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Authorize) (http.Handler, io.Closer, error) {
		return wiring.Authorize(ctx, cfg, deps)
	})
}

func init() {
	entrypoint.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, wiring.Deps{})
	})
}
