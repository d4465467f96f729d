// Package sender receives send requests from Pub/Sub push and delivers them
// through Gmail. A delivery that should be retried answers 500, which
// nacks the message.
package sender

import (
	"context"
	"io"
	"net/http"

	"github.com/sethvargo/go-envconfig"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/entrypoint"
	"github.com/gmailrelay/gmailrelay/internal/push"
	send "github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/wiring"
)

// Name is the function's target name.
const Name = "sender"

// New builds the function from env, with deps' clients and stores shared.
// Its handler takes Pub/Sub push requests, as Cloud Run serves it, each
// admitted by its memory cost within the process's GOMEMLIMIT (450 MiB,
// set as the runtime's limit, when unset), so that a burst answers 429 and
// is redelivered instead of killing the instance.
func New(ctx context.Context, env envconfig.Lookuper, deps wiring.Deps) (http.Handler, io.Closer, error) {
	return entrypoint.Push[config.Sender](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Sender) (entrypoint.PushHandler, io.Closer, error) {
		s, closer, err := wiring.Sender(ctx, cfg, deps)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, m *push.Message) error {
			return s.Handle(ctx, send.Delivery{MessageID: m.ID, Data: m.Data, Attributes: m.Attributes, DeliveryAttempt: m.DeliveryAttempt,
				Subscription: m.Subscription})
		}, closer, nil
	}, entrypoint.WithAdmission(entrypoint.AdmitWithin(entrypoint.MemoryLimit())))
}

func init() {
	entrypoint.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, wiring.Deps{})
	})
}
