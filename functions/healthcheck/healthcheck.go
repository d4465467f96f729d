// Package healthcheck runs on a schedule (Cloud Scheduler → Pub/Sub →
// CloudEvent) and refreshes every connected mailbox's token, moving dead
// ones to reauth_required and announcing it.
package healthcheck

import (
	"context"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "healthcheck"

// Handle serves the function; the dev server calls it too.
var Handle = function.CloudEvent[config.Healthcheck](Name, func(ctx context.Context, cfg *config.Healthcheck) (function.CloudEventHandler, error) {
	chk, err := setup.Healthcheck(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ event.Event) error {
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

func init() { functions.CloudEvent(Name, Handle) }
