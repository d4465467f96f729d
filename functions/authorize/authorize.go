// Package authorize is the connect link: it shows what connecting grants and
// sends the mailbox owner to Google's consent screen.
package authorize

import (
	"context"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "authorize"

// Handle serves the function; the dev server mounts it too.
var Handle = function.HTTP[config.Authorize](Name, func(ctx context.Context, cfg *config.Authorize) (http.Handler, error) {
	return setup.Authorize(ctx, cfg)
})

func init() { functions.HTTP(Name, Handle) }
