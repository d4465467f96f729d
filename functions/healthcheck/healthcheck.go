// Package healthcheck runs on a schedule (Cloud Scheduler → Pub/Sub → push)
// and refreshes every connected mailbox's token, moving dead ones to
// reauth_required and announcing it.
package healthcheck

import (
	"context"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/pubsubevent"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "healthcheck"

// fn is the function, fed by Pub/Sub push like the sender (see
// function.PushFunction).
var fn = function.Push[config.Healthcheck](Name, func(ctx context.Context, cfg *config.Healthcheck) (function.PushHandler, error) {
	chk, err := setup.Healthcheck(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ *pubsubevent.Message) error {
		sum, err := chk.CheckAll(ctx)
		if err != nil {
			// The registry could not be listed: a redelivery may work.
			return err
		}
		// Per-account failures are not redelivered: the next scheduled run
		// retries them, and a redelivery would re-check every account.
		logging.FromContext(ctx).InfoContext(ctx, "health check finished", "checked", sum.Checked, "valid", sum.Valid,
			"expiring", sum.Expiring, "reauth_required", sum.Reauth, "errors", sum.Errors)
		return nil
	}, nil
})

// Handle takes the scheduler's CloudEvent: the dev server calls it.
func Handle(ctx context.Context, e event.Event) error { return fn.CloudEvent(ctx, e) }

// ServeHTTP is what Cloud Run serves: the push request.
func ServeHTTP(w http.ResponseWriter, r *http.Request) { fn.ServeHTTP(w, r) }

func init() { functions.HTTP(Name, ServeHTTP) }
