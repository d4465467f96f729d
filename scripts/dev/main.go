// Command dev runs gmail-relay locally: every function, the sandbox Google,
// an embedded Pub/Sub and the local stores, in one process (`make dev`).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gmailrelay/gmailrelay/internal/dev/devserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := devserver.Run(ctx, devserver.FromEnv()); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}
