// Package sender receives send requests from Pub/Sub push and delivers them
// through Gmail. A failed delivery answers 500, which nacks the message.
package sender

import (
	"context"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/pubsubevent"
	send "github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "sender"

// fn is the function: one sender, built on first use, behind both entry
// points.
var fn = function.Push[config.Sender](Name, func(ctx context.Context, cfg *config.Sender) (function.PushHandler, error) {
	s, err := setup.Sender(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, m *pubsubevent.Message) error {
		return s.Handle(ctx, send.Delivery{MessageID: m.ID, Data: m.Data, Attributes: m.Attributes, DeliveryAttempt: m.DeliveryAttempt})
	}, nil
})

// Handle takes a messagePublished CloudEvent: the dev server and the
// benchmarks call it in-process.
func Handle(ctx context.Context, e event.Event) error { return fn.CloudEvent(ctx, e) }

// ServeHTTP is what Cloud Run serves: the Pub/Sub push request, read by the
// relay rather than converted by the functions framework (see
// function.PushFunction for why).
func ServeHTTP(w http.ResponseWriter, r *http.Request) { fn.ServeHTTP(w, r) }

func init() { functions.HTTP(Name, ServeHTTP) }
