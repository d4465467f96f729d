// Command function serves the functions the way Cloud Run's Go buildpack
// does: every function package registers itself, and the functions
// framework serves the one named by FUNCTION_TARGET at / (or, with
// FUNCTION_TARGET unset, each at /<name>) on PORT (8080), on every interface
// or only HOST when set. Use it to run one function locally against
// emulators:
//
//	FUNCTION_TARGET=sender PORT=8081 go run ./scripts/function
package main

import (
	"fmt"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	_ "github.com/gmailrelay/gmailrelay/functions/admin"
	_ "github.com/gmailrelay/gmailrelay/functions/authorize"
	_ "github.com/gmailrelay/gmailrelay/functions/confirm"
	_ "github.com/gmailrelay/gmailrelay/functions/healthcheck"
	_ "github.com/gmailrelay/gmailrelay/functions/sender"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	// The framework ignores PORT itself, so it is passed explicitly.
	if err := funcframework.StartHostPort(os.Getenv("HOST"), port); err != nil {
		fmt.Fprintln(os.Stderr, "function:", err)
		os.Exit(1)
	}
}
