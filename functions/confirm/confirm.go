// Package confirm is the OAuth redirect URI: it finishes the consent flow
// and stores the mailbox's refresh token.
package confirm

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
const Name = "confirm"

// New builds the function from env, with deps' clients and stores shared.
func New(ctx context.Context, env envconfig.Lookuper, deps wiring.Deps) (http.Handler, io.Closer, error) {
	return entrypoint.HTTP[config.Confirm](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Confirm) (http.Handler, io.Closer, error) {
		return wiring.Confirm(ctx, cfg, deps)
	})
}

func init() {
	entrypoint.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, wiring.Deps{})
	})
}
