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
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/pubsubevent"
	send "github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "sender"

// New builds the function from env, with deps' clients and stores shared.
// Its handler takes Pub/Sub push requests, as Cloud Run serves it.
func New(ctx context.Context, env envconfig.Lookuper, deps setup.Deps) (http.Handler, io.Closer, error) {
	return function.Push[config.Sender](ctx, Name, env, deps.Logs, func(ctx context.Context, cfg *config.Sender) (function.PushHandler, io.Closer, error) {
		s, closer, err := setup.Sender(ctx, cfg, deps)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, m *pubsubevent.Message) error {
			return s.Handle(ctx, send.Delivery{MessageID: m.ID, Data: m.Data, Attributes: m.Attributes, DeliveryAttempt: m.DeliveryAttempt})
		}, closer, nil
	})
}

func init() {
	function.Register(Name, func(ctx context.Context, env envconfig.Lookuper) (http.Handler, io.Closer, error) {
		return New(ctx, env, setup.Deps{})
	})
}
