// Package storeops holds what the account registry and the send ledger
// share: the mapping of Firestore's gRPC codes to their domain errors, and
// the counters of reads and writes that benchmarks use to prove the cost of
// a send.
package storeops

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Stats counts the document reads and committed writes a store made.
type Stats struct {
	Reads  int64 `json:"reads"`
	Writes int64 `json:"writes"`
}

// Counters accumulates Stats; safe for concurrent use.
type Counters struct {
	reads, writes atomic.Int64
}

// Read counts n document reads.
func (c *Counters) Read(n int) { c.reads.Add(int64(n)) }

// Write counts one committed write.
func (c *Counters) Write() { c.writes.Add(1) }

// Snapshot returns the counts so far.
func (c *Counters) Snapshot() Stats {
	return Stats{Reads: c.reads.Load(), Writes: c.writes.Load()}
}

// Wrap prefixes err with op and adds the store's domain error: notFound for
// gRPC NotFound, unavailable for the codes a later attempt may not meet
// (and for a deadline), so callers decide with errors.Is alone.
func Wrap(op string, err, notFound, unavailable error) error {
	switch {
	case errors.Is(err, notFound), errors.Is(err, unavailable):
		return fmt.Errorf("%s: %w", op, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w", op, unavailable, err)
	}
	switch status.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("%s: %w: %w", op, notFound, err)
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Internal:
		return fmt.Errorf("%s: %w: %w", op, unavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
