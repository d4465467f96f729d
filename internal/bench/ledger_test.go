package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/sender"
)

// countingLedger is a sender.Ledger that reports Firestore-billed reads and
// writes.
type countingLedger interface {
	sender.Ledger
	Stats() ledger.Stats
	Get(ctx context.Context, key string) (*ledger.Record, error)
}

// shardedLedger spreads keys over many ledger.Local files. ledger.Local
// rewrites its whole file on every write, so one file holding 10,000 records
// makes each write cost milliseconds; many small files keep the real Claim,
// Finish, Release and MarkAmbiguous logic at a cost that does not grow with
// the run. The files live on tmpfs where there is one.
type shardedLedger struct {
	shards []*ledger.Local
}

func newShardedLedger(tb testing.TB, n int) *shardedLedger {
	tb.Helper()
	dir := tbScratch(tb, "gmailrelay-bench-ledger-")
	l := &shardedLedger{}
	for i := 0; i < n; i++ {
		s, err := ledger.NewLocal(filepath.Join(dir, fmt.Sprintf("sends-%03d.json", i)))
		if err != nil {
			tb.Fatal(err)
		}
		l.shards = append(l.shards, s)
	}
	return l
}

func (l *shardedLedger) shard(key string) *ledger.Local {
	h := fnv.New32a()
	h.Write([]byte(key))
	return l.shards[h.Sum32()%uint32(len(l.shards))]
}

func (l *shardedLedger) Claim(ctx context.Context, key string, c ledger.ClaimRequest) (*ledger.Record, ledger.ClaimOutcome, error) {
	return l.shard(key).Claim(ctx, key, c)
}

func (l *shardedLedger) Finish(ctx context.Context, key string, f ledger.Finish) error {
	return l.shard(key).Finish(ctx, key, f)
}

func (l *shardedLedger) Release(ctx context.Context, key, code, msg string, now time.Time) error {
	return l.shard(key).Release(ctx, key, code, msg, now)
}

func (l *shardedLedger) MarkAmbiguous(ctx context.Context, key string, now time.Time) error {
	return l.shard(key).MarkAmbiguous(ctx, key, now)
}

func (l *shardedLedger) Get(ctx context.Context, key string) (*ledger.Record, error) {
	return l.shard(key).Get(ctx, key)
}

func (l *shardedLedger) Stats() ledger.Stats {
	var s ledger.Stats
	for _, sh := range l.shards {
		st := sh.Stats()
		s.Reads += st.Reads
		s.Writes += st.Writes
	}
	return s
}

// memLedger keeps records in memory only and counts reads and writes as
// ledger.Firestore bills them (Claim: a create, or a read plus a write on
// takeover; Finish and MarkAmbiguous: one write; Release: a read and a
// write). Benchmarks use it so that the figure is the sender's cost, not a
// store's: ledger.Local's whole-file rewrite would dominate, and the
// Firestore client's cost belongs to a Firestore benchmark.
type memLedger struct {
	mu            sync.Mutex
	recs          map[string]*ledger.Record
	reads, writes atomic.Int64
}

var _ countingLedger = (*memLedger)(nil)

func newMemLedger() *memLedger { return &memLedger{recs: map[string]*ledger.Record{}} }

func (l *memLedger) Stats() ledger.Stats {
	return ledger.Stats{Reads: l.reads.Load(), Writes: l.writes.Load()}
}

func (l *memLedger) Claim(_ context.Context, key string, c ledger.ClaimRequest) (*ledger.Record, ledger.ClaimOutcome, error) {
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.recs[key]
	if cur == nil || (!cur.ExpireAt.IsZero() && !now.Before(cur.ExpireAt)) {
		r := &ledger.Record{Key: key, State: ledger.StateSending, Account: c.Account, PubSubMessageID: c.PubSubMessageID,
			Attempts: 1, LeaseUntil: now.Add(c.Lease), CreatedAt: now, UpdatedAt: now, ExpireAt: now.Add(ledger.TTL)}
		l.recs[key] = r
		l.writes.Add(1)
		c := *r
		return &c, ledger.ClaimNew, nil
	}
	l.reads.Add(1)
	switch {
	case cur.State == ledger.StateSent || cur.State == ledger.StateFailed:
		c := *cur
		return &c, ledger.ClaimDone, nil
	case cur.LeaseUntil.After(now):
		c := *cur
		return &c, ledger.ClaimBusy, nil
	}
	next := *cur
	next.Attempts++
	next.LeaseUntil = now.Add(c.Lease)
	next.UpdatedAt = now
	l.recs[key] = &next
	l.writes.Add(1)
	out := next
	return &out, ledger.ClaimTakeover, nil
}

func (l *memLedger) Finish(_ context.Context, key string, f ledger.Finish) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.recs[key]
	if cur == nil {
		return ledger.ErrNotFound
	}
	next := *cur
	next.State, next.GmailMessageID, next.GmailThreadID = f.State, f.GmailMessageID, f.GmailThreadID
	next.ErrorCode, next.ErrorMessage, next.LeaseUntil, next.UpdatedAt = f.ErrorCode, f.ErrorMessage, time.Time{}, f.Now
	l.recs[key] = &next
	l.writes.Add(1)
	return nil
}

func (l *memLedger) Release(_ context.Context, key, code, msg string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads.Add(1)
	cur := l.recs[key]
	if cur == nil {
		return ledger.ErrNotFound
	}
	if cur.State != ledger.StateSending {
		return nil
	}
	next := *cur
	next.ErrorCode, next.ErrorMessage, next.LeaseUntil, next.UpdatedAt = code, msg, time.Time{}, now
	l.recs[key] = &next
	l.writes.Add(1)
	return nil
}

func (l *memLedger) MarkAmbiguous(_ context.Context, key string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.recs[key]
	if cur == nil {
		return ledger.ErrNotFound
	}
	next := *cur
	next.MaybeDuplicate, next.UpdatedAt = true, now
	l.recs[key] = &next
	l.writes.Add(1)
	return nil
}

func (l *memLedger) Get(_ context.Context, key string) (*ledger.Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads.Add(1)
	cur := l.recs[key]
	if cur == nil {
		return nil, ledger.ErrNotFound
	}
	c := *cur
	return &c, nil
}
