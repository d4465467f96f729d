// Package admin is the operator's API (IAM-only when deployed): accounts,
// connection tests, disconnects and message status.
package admin

import (
	"context"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "admin"

// Handle serves the function; the dev server mounts it under /admin/.
var Handle = function.HTTP[config.Admin](Name, func(ctx context.Context, cfg *config.Admin) (http.Handler, error) {
	return setup.Admin(ctx, cfg)
})

func init() { functions.HTTP(Name, Handle) }
