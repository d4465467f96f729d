// Package sender receives send requests from Pub/Sub as CloudEvents and
// delivers them through Gmail. Returning an error nacks the message.
package sender

import (
	"context"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/pubsubevent"
	send "github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "sender"

// Handle serves the function; the dev server calls it too.
var Handle = function.CloudEvent[config.Sender](Name, func(ctx context.Context, cfg *config.Sender) (function.CloudEventHandler, error) {
	s, err := setup.Sender(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, e event.Event) error {
		m, err := pubsubevent.Decode(e)
		if err != nil {
			// A malformed event can never succeed; acknowledging it is the
			// only way to stop redelivery. The log says why.
			logging.FromContext(ctx).ErrorContext(ctx, "undecodable event acknowledged", "error", err)
			return nil
		}
		return s.Handle(ctx, send.Delivery{MessageID: m.ID, Data: m.Data, Attributes: m.Attributes})
	}, nil
})

func init() { functions.CloudEvent(Name, Handle) }
