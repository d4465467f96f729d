// Package healthcheck runs on a schedule (Cloud Scheduler → Pub/Sub → push)
// and refreshes every connected mailbox's token, moving dead ones to
// reauth_required and announcing it (internal/health decides how).
package healthcheck

import (
	"context"
	"io"
	"net/http"

	"github.com/sethvargo/go-envconfig"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/pubsubevent"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "healthcheck"

// New builds the function from env, with deps' clients and stores shared.
// Its handler takes the scheduler's Pub/Sub push requests.
func New(ctx context.Context, env envconfig.Lookuper, deps setup.Deps) (http.Handler, io.Closer, error) {
	return function.Push[config.Healthcheck](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Healthcheck) (function.PushHandler, io.Closer, error) {
		chk, closer, err := setup.Healthcheck(ctx, cfg, deps)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, _ *pubsubevent.Message) error {
			_, err := chk.Run(ctx)
			return err
		}, closer, nil
	})
}

func init() {
	function.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, setup.Deps{})
	})
}
