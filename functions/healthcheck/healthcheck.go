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
	"github.com/gmailrelay/gmailrelay/internal/entrypoint"
	"github.com/gmailrelay/gmailrelay/internal/push"
	"github.com/gmailrelay/gmailrelay/internal/wiring"
)

// Name is the function's target name.
const Name = "healthcheck"

// New builds the function from env, with deps' clients and stores shared.
// Its handler takes the scheduler's Pub/Sub push requests.
func New(ctx context.Context, env envconfig.Lookuper, deps wiring.Deps) (http.Handler, io.Closer, error) {
	return entrypoint.Push[config.Healthcheck](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Healthcheck) (entrypoint.PushHandler, io.Closer, error) {
		chk, closer, err := wiring.Healthcheck(ctx, cfg, deps)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, _ *push.Message) error {
			_, err := chk.Run(ctx)
			return err
		}, closer, nil
	})
}

func init() {
	entrypoint.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, wiring.Deps{})
	})
}
