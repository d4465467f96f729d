package bench

import (
	"context"
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

// newLocalLedger is make dev's ledger, the real Claim, Finish, Release and
// MarkAmbiguous logic behind an append-only journal, in a scratch directory
// (on tmpfs where there is one).
func newLocalLedger(tb testing.TB) *ledger.Local {
	tb.Helper()
	l, err := ledger.NewLocal(filepath.Join(tbScratch(tb, "gmailrelay-bench-ledger-"), "sends.json"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

// memLedger keeps records in memory only and counts reads and writes as
// ledger.Firestore bills them (Claim: a create, or a read plus a write on
// takeover; Finish and MarkAmbiguous: one write; Release: a read and a
// write). Benchmarks use it so that the figure is the sender's cost, not a
// store's: ledger.Local's journal append is a system call per change, and
// the Firestore client's cost belongs to a Firestore benchmark.
//
// It keeps only the most recent finished records (keepFinished): a
// Firestore ledger holds nothing in the sender's heap, and a fake that kept
// a record per message ever sent made the relay's collector mark all of
// them (the live heap grew from 2 to 36 MB over a 40,000-message run, and
// each collection's marking with it), so the relay's CPU per message rose
// with the length of the run. Only a redelivery of a message finished more
// than keepFinished messages earlier would miss its record, and the
// benchmarks never redeliver a finished message.
type memLedger struct {
	mu            sync.Mutex
	recs          map[string]*ledger.Record
	finished      []string // ring of the most recently finished keys
	next          int      // where the ring's next key goes
	reads, writes atomic.Int64
}

// keepFinished is how many finished records memLedger keeps.
const keepFinished = 4096

var _ countingLedger = (*memLedger)(nil)

func newMemLedger() *memLedger {
	return &memLedger{recs: map[string]*ledger.Record{}, finished: make([]string, 0, keepFinished)}
}

// forgetOldLocked records key as finished, and forgets the record of the
// key finished keepFinished messages before it.
func (l *memLedger) forgetOldLocked(key string) {
	if len(l.finished) < keepFinished {
		l.finished = append(l.finished, key)
		return
	}
	if old := l.finished[l.next]; old != key {
		if r := l.recs[old]; r != nil && (r.State == ledger.StateSent || r.State == ledger.StateFailed) {
			delete(l.recs, old)
		}
	}
	l.finished[l.next] = key
	l.next = (l.next + 1) % keepFinished
}

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
	scope, err := ledger.ParseID(key)
	if err != nil {
		return nil, 0, err
	}
	cur := l.recs[key]
	if cur == nil || (!cur.ExpireAt.IsZero() && !now.Before(cur.ExpireAt)) {
		r := &ledger.Record{Key: scope.Key, App: scope.App, State: ledger.StateSending, Account: scope.Account, PubSubMessageID: c.PubSubMessageID,
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
	if cur.State == ledger.StateSending {
		l.forgetOldLocked(key)
	}
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
