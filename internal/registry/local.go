package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/atomicfile"
	"github.com/gmailrelay/gmailrelay/internal/storeops"
)

// Local is the Store of make dev: accounts live in memory and every change
// rewrites one JSON file, so a restarted dev server keeps its connected
// accounts. It is safe for concurrent use within one process; two processes
// must not share a file.
type Local struct {
	path  string
	stats storeops.Counters

	mu       sync.Mutex
	accounts map[string]*Account // by normalized address
}

var _ Store = (*Local)(nil)

type localFile struct {
	Accounts []*Account `json:"accounts"`
}

// NewLocal opens the registry persisted at path, creating its directory. A
// missing file is an empty registry.
func NewLocal(path string) (*Local, error) {
	l := &Local{path: path, accounts: make(map[string]*Account)}
	var f localFile
	if _, err := atomicfile.ReadJSON(path, &f); err != nil {
		return nil, fmt.Errorf("registry.NewLocal: %w", err)
	}
	for _, a := range f.Accounts {
		if a == nil || checkEmail(a.Email) != nil {
			return nil, fmt.Errorf("registry.NewLocal: %s holds an account without a valid address", path)
		}
		l.accounts[account.Normalize(a.Email)] = a
	}
	return l, nil
}

// Stats returns the reads and writes made so far, counted as Firestore
// would bill the same calls.
func (l *Local) Stats() Stats { return l.stats.Snapshot() }

// Get implements Store.
func (l *Local) Get(ctx context.Context, email string) (*Account, error) {
	if err := checkEmail(email); err != nil {
		return nil, fmt.Errorf("registry.Get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("registry.Get: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Read(1)
	a := l.accounts[account.Normalize(email)]
	if a == nil {
		return nil, fmt.Errorf("registry.Get: %w", ErrNotFound)
	}
	return a.clone(), nil
}

// Upsert implements Store.
func (l *Local) Upsert(ctx context.Context, a *Account) error {
	c, err := prepare(a)
	if err != nil {
		return fmt.Errorf("registry.Upsert: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry.Upsert: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := l.accounts[c.Email]; cur != nil {
		if len(c.Aliases) == 0 {
			c.Aliases = slices.Clone(cur.Aliases)
		}
		if c.DailyLimit <= 0 {
			c.DailyLimit = cur.DailyLimit
		}
	}
	// The senders' count is theirs alone, as in Firestore, where Upsert
	// does not name the field.
	c.Usage = nil
	if cur := l.accounts[c.Email]; cur != nil {
		c.Usage = maps.Clone(cur.Usage)
	}
	if err := l.put(c); err != nil {
		return fmt.Errorf("registry.Upsert: %w", err)
	}
	return nil
}

// Create implements Store.
func (l *Local) Create(ctx context.Context, a *Account) error {
	c, err := prepare(a)
	if err != nil {
		return fmt.Errorf("registry.Create: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry.Create: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.accounts[c.Email] != nil {
		return fmt.Errorf("registry.Create: %w", ErrExists)
	}
	if err := l.put(c); err != nil {
		return fmt.Errorf("registry.Create: %w", err)
	}
	return nil
}

// List implements Store.
func (l *Local) List(ctx context.Context) ([]*Account, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("registry.List: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Account, 0, len(l.accounts))
	for _, a := range l.accounts {
		out = append(out, a.clone())
	}
	l.stats.Read(max(1, len(out)))
	slices.SortFunc(out, byEmail)
	return out, nil
}

// SetStatus implements Store.
func (l *Local) SetStatus(ctx context.Context, email string, s Status, reason string, now time.Time) (bool, Status, error) {
	if err := checkEmail(email); err != nil {
		return false, "", fmt.Errorf("registry.SetStatus: %w", err)
	}
	if !s.valid() {
		return false, "", fmt.Errorf("registry.SetStatus: unknown status %q", s)
	}
	var (
		changed bool
		prev    Status
	)
	err := l.modify(ctx, email, func(cur *Account) *Account {
		prev = cur.Status
		next, ch, write := withStatus(cur, s, reason, nowOr(now))
		changed = ch
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return false, "", fmt.Errorf("registry.SetStatus: %w", err)
	}
	return changed, prev, nil
}

// MarkRefreshed implements Store.
func (l *Local) MarkRefreshed(ctx context.Context, email string, at time.Time) error {
	if err := checkEmail(email); err != nil {
		return fmt.Errorf("registry.MarkRefreshed: %w", err)
	}
	err := l.modify(ctx, email, func(cur *Account) *Account {
		next, write := refreshed(cur, nowOr(at))
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return fmt.Errorf("registry.MarkRefreshed: %w", err)
	}
	return nil
}

// SetHold implements Store.
func (l *Local) SetHold(ctx context.Context, email string, until time.Time, reason string, now time.Time) (bool, error) {
	if err := checkEmail(email); err != nil {
		return false, fmt.Errorf("registry.SetHold: %w", err)
	}
	wrote := false
	err := l.modify(ctx, email, func(cur *Account) *Account {
		next, write := withHold(cur, until, reason, nowOr(now))
		wrote = write
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return false, fmt.Errorf("registry.SetHold: %w", err)
	}
	return wrote, nil
}

// SetAliases implements Store.
func (l *Local) SetAliases(ctx context.Context, email string, aliases []string, now time.Time) (*Account, error) {
	if err := checkEmail(email); err != nil {
		return nil, fmt.Errorf("registry.SetAliases: %w", err)
	}
	clean, err := cleanAliases(email, aliases)
	if err != nil {
		return nil, fmt.Errorf("registry.SetAliases: %w", err)
	}
	var out *Account
	err = l.modify(ctx, email, func(cur *Account) *Account {
		next, write := withAliases(cur, clean, nowOr(now))
		out = next.clone()
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return nil, fmt.Errorf("registry.SetAliases: %w", err)
	}
	return out, nil
}

func (l *Local) modify(ctx context.Context, email string, change func(*Account) *Account) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Read(1)
	cur := l.accounts[account.Normalize(email)]
	if cur == nil {
		return ErrNotFound
	}
	next := change(cur)
	if next == nil {
		return nil
	}
	return l.put(next)
}

// put stores a and persists the registry, undoing the change in memory if
// the file cannot be written, so memory never claims what the disk lost.
func (l *Local) put(a *Account) error {
	key := account.Normalize(a.Email)
	old, had := l.accounts[key]
	l.accounts[key] = a
	if err := l.save(); err != nil {
		if had {
			l.accounts[key] = old
		} else {
			delete(l.accounts, key)
		}
		return fmt.Errorf("%w: saving %s: %w", ErrUnavailable, l.path, err)
	}
	l.stats.Write()
	return nil
}

func byEmail(a, b *Account) int { return cmp.Compare(a.Email, b.Email) }

func (l *Local) save() error {
	f := localFile{Accounts: make([]*Account, 0, len(l.accounts))}
	for _, a := range l.accounts {
		f.Accounts = append(f.Accounts, a)
	}
	// Sorted, so that the file only changes where the registry did.
	slices.SortFunc(f.Accounts, byEmail)
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(l.path, b, 0o600)
}

// SetDailyLimit implements Store.
func (l *Local) SetDailyLimit(ctx context.Context, email string, limit int, now time.Time) (*Account, error) {
	if err := checkEmail(email); err != nil {
		return nil, fmt.Errorf("registry.SetDailyLimit: %w", err)
	}
	if err := checkDailyLimit(limit); err != nil {
		return nil, fmt.Errorf("registry.SetDailyLimit: %w", err)
	}
	var out *Account
	err := l.modify(ctx, email, func(cur *Account) *Account {
		next, write := withDailyLimit(cur, limit, nowOr(now))
		out = next.clone()
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return nil, fmt.Errorf("registry.SetDailyLimit: %w", err)
	}
	return out, nil
}

// AddUsage implements Store. Like Firestore's blind update it counts a
// write and no read.
func (l *Local) AddUsage(ctx context.Context, email string, add []Bucket, drop []time.Time) error {
	if err := checkEmail(email); err != nil {
		return fmt.Errorf("registry.AddUsage: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry.AddUsage: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.accounts[account.Normalize(email)]
	if cur == nil {
		return fmt.Errorf("registry.AddUsage: %w", ErrNotFound)
	}
	next := cur.clone()
	next.Usage = withUsage(cur.Usage, add, drop)
	if err := l.put(next); err != nil {
		return fmt.Errorf("registry.AddUsage: %w", err)
	}
	return nil
}
