package sender

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/registry"
)

// usageStore answers AddUsage with err and records the calls.
type usageStore struct {
	mu    sync.Mutex
	err   error
	calls int
	added int
}

func (u *usageStore) AddUsage(_ context.Context, _ string, add []registry.Bucket, _ []time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls++
	if u.err == nil {
		for _, b := range add {
			u.added += b.Messages
		}
	}
	return u.err
}

// TestQuotaWriteFailures: a count the store refuses for a while is kept
// and written by Close; one for an account the store no longer has is
// dropped, not retried for ever.
func TestQuotaWriteFailures(t *testing.T) {
	t.Parallel()
	acct := &registry.Account{Email: "a@example.com"}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name      string
		err       error
		wantClose bool // Close reports lost counts
		wantAdded int
	}{
		{"unavailable, then back", fmt.Errorf("registry.AddUsage: %w", registry.ErrUnavailable), false, 1},
		{"account gone", fmt.Errorf("registry.AddUsage: %w", registry.ErrNotFound), false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			u := &usageStore{err: c.err}
			q := newQuota(u, func() time.Time { return now })
			if r := q.admit(acct.Email, acct, time.Now(), 1, now); r != nil {
				t.Fatalf("admit refused: %+v", r)
			}
			q.settle(context.Background(), acct.Email, 1, true, now)
			u.mu.Lock()
			u.err = nil // the store is back
			u.mu.Unlock()
			err := q.close(context.Background())
			if (err != nil) != c.wantClose {
				t.Errorf("close = %v", err)
			}
			u.mu.Lock()
			defer u.mu.Unlock()
			if u.added != c.wantAdded {
				t.Errorf("stored %d messages after %d writes, want %d", u.added, u.calls, c.wantAdded)
			}
		})
	}
}
