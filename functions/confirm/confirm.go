// Package confirm is the OAuth redirect URI: it finishes the consent flow
// and stores the mailbox's refresh token.
package confirm

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
const Name = "confirm"

// New builds the function from env, with deps' clients and stores shared.
func New(ctx context.Context, env envconfig.Lookuper, deps setup.Deps) (http.Handler, io.Closer, error) {
	return function.HTTP[config.Confirm](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Confirm) (http.Handler, io.Closer, error) {
		return setup.Confirm(ctx, cfg, deps)
	})
}

func init() {
	function.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, setup.Deps{})
	})
}
