package ledger

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/atomicfile"

	"github.com/gmailrelay/gmailrelay/internal/docstore"
)

// Local is the Store of make dev: records live in memory and every change
// rewrites one JSON file, so a restarted dev server still knows which keys
// it has sent. It is safe for concurrent use within one process; two
// processes must not share a file.
type Local struct {
	path  string
	stats docstore.Counters

	mu   sync.Mutex
	recs map[string]*Record // by DocID
}

var _ Store = (*Local)(nil)

type localFile struct {
	Records []*Record `json:"records"`
}

// NewLocal opens the store persisted at path, creating its directory. A
// missing file is an empty ledger; records already past their TTL are
// dropped on load, which is how the file stays small.
func NewLocal(path string) (*Local, error) {
	l := &Local{path: path, recs: make(map[string]*Record)}
	var f localFile
	if _, err := atomicfile.ReadJSON(path, &f); err != nil {
		return nil, fmt.Errorf("ledger.NewLocal: %w", err)
	}
	now := time.Now()
	for _, r := range f.Records {
		if r == nil || r.Key == "" || r.expired(now) {
			continue
		}
		l.recs[DocID(r.Key)] = r
	}
	return l, nil
}

// Stats returns the reads and writes made so far, counted as Firestore
// would bill the same calls.
func (l *Local) Stats() Stats { return l.stats.Snapshot() }

// Claim implements Store.
func (l *Local) Claim(ctx context.Context, key string, c ClaimRequest) (*Record, ClaimOutcome, error) {
	if err := c.check(key); err != nil {
		return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
	}
	now := nowOr(c.Now)
	id := DocID(key)

	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.recs[id]
	if cur != nil {
		l.stats.Read(1)
	}
	rec, out, write, err := decide(cur, key, c, now)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
	}
	if write {
		if err := l.put(id, rec); err != nil {
			return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
		}
	}
	return rec.clone(), out, nil
}

// Finish implements Store.
func (l *Local) Finish(ctx context.Context, key string, fin Finish) error {
	if err := fin.check(key); err != nil {
		return fmt.Errorf("ledger.Finish: %w", err)
	}
	return l.update(ctx, "ledger.Finish", key, false, func(cur *Record) *Record {
		return finished(cur, fin, nowOr(fin.Now))
	})
}

// Release implements Store.
func (l *Local) Release(ctx context.Context, key, errorCode, errorMessage string, now time.Time) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("ledger.Release: %w", err)
	}
	return l.update(ctx, "ledger.Release", key, true, func(cur *Record) *Record {
		if cur.State != StateSending {
			return nil
		}
		return released(cur, errorCode, errorMessage, nowOr(now))
	})
}

// MarkAmbiguous implements Store.
func (l *Local) MarkAmbiguous(ctx context.Context, key string, now time.Time) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("ledger.MarkAmbiguous: %w", err)
	}
	return l.update(ctx, "ledger.MarkAmbiguous", key, false, func(cur *Record) *Record {
		return ambiguous(cur, nowOr(now))
	})
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, key string) (*Record, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("ledger.Get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ledger.Get: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Read(1)
	cur := l.recs[DocID(key)]
	if cur == nil {
		return nil, fmt.Errorf("ledger.Get: %w", ErrNotFound)
	}
	return cur.clone(), nil
}

// update applies change to the key's record; change returns nil to write
// nothing. counted says whether the Firestore twin reads before writing, so
// that both stores report the same Stats.
func (l *Local) update(ctx context.Context, op, key string, counted bool, change func(*Record) *Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	id := DocID(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	if counted {
		l.stats.Read(1)
	}
	cur := l.recs[id]
	if cur == nil {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	next := change(cur)
	if next == nil {
		return nil
	}
	if err := l.put(id, next); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// put stores rec and persists the ledger, undoing the change in memory if the
// file cannot be written, so memory never claims what the disk lost.
func (l *Local) put(id string, rec *Record) error {
	old, had := l.recs[id]
	l.recs[id] = rec
	if err := l.save(); err != nil {
		if had {
			l.recs[id] = old
		} else {
			delete(l.recs, id)
		}
		return fmt.Errorf("%w: saving %s: %w", ErrUnavailable, l.path, err)
	}
	l.stats.Write()
	return nil
}

func (l *Local) save() error {
	f := localFile{Records: make([]*Record, 0, len(l.recs))}
	for _, r := range l.recs {
		f.Records = append(f.Records, r)
	}
	// Sorted, so that the file only changes where the ledger did.
	slices.SortFunc(f.Records, func(a, b *Record) int { return cmp.Compare(a.Key, b.Key) })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(l.path, b, 0o600)
}
