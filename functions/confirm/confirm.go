// Package confirm is the OAuth redirect URI: it finishes the consent flow
// and stores the mailbox's refresh token.
package confirm

import (
	"context"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/function"
	"github.com/gmailrelay/gmailrelay/internal/setup"
)

// Name is the function's target name.
const Name = "confirm"

// Handle serves the function; the dev server mounts it too.
var Handle = function.HTTP[config.Confirm](Name, func(ctx context.Context, cfg *config.Confirm) (http.Handler, error) {
	return setup.Confirm(ctx, cfg)
})

func init() { functions.HTTP(Name, Handle) }
