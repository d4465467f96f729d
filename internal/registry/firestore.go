package registry

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/storeops"
)

// Firestore is the production Store, one document per account in Collection
// of a native-mode database.
type Firestore struct {
	client *firestore.Client
	stats  storeops.Counters
}

var _ Store = (*Firestore)(nil)

// NewFirestore returns a Store on client. The caller owns the client.
func NewFirestore(client *firestore.Client) *Firestore {
	return &Firestore{client: client}
}

// Stats returns the reads and committed writes made so far.
func (f *Firestore) Stats() Stats { return f.stats.Snapshot() }

func (f *Firestore) ref(email string) *firestore.DocumentRef {
	_, docID := account.IDs(email)
	return f.client.Collection(Collection).Doc(docID)
}

// maxRounds bounds the read-and-conditional-write rounds of one change. A
// round is lost only to a concurrent write of the same account, as when
// many sends meet the same dead token at once; the reread then usually
// finds nothing left to do.
const maxRounds = 5

var errContended = fmt.Errorf("%w: the account kept changing under concurrent writers", ErrUnavailable)

// Get implements Store.
func (f *Firestore) Get(ctx context.Context, email string) (*Account, error) {
	if err := checkEmail(email); err != nil {
		return nil, fmt.Errorf("registry.Get: %w", err)
	}
	snap, err := f.ref(email).Get(ctx)
	f.stats.Read(1)
	if err != nil {
		return nil, wrap("registry.Get", err)
	}
	a, err := decode(snap)
	if err != nil {
		return nil, fmt.Errorf("registry.Get: %w", err)
	}
	return a, nil
}

// Upsert implements Store with one Set of every field, merged so that the
// stored aliases stay when a has none: a reconnect must not drop them. The
// empty fields are deleted, so the document is otherwise replaced whole.
func (f *Firestore) Upsert(ctx context.Context, a *Account) error {
	c, err := prepare(a)
	if err != nil {
		return fmt.Errorf("registry.Upsert: %w", err)
	}
	fields := make(map[string]any)
	for _, u := range allFields(c) {
		if (u.Path == "aliases" && len(c.Aliases) == 0) || (u.Path == "daily_limit" && c.DailyLimit <= 0) {
			continue
		}
		fields[u.Path] = u.Value
	}
	if _, err := f.ref(c.Email).Set(ctx, fields, firestore.MergeAll); err != nil {
		return wrap("registry.Upsert", err)
	}
	f.stats.Write()
	return nil
}

// Create implements Store with one Create, which Firestore refuses with
// AlreadyExists when the document is there.
func (f *Firestore) Create(ctx context.Context, a *Account) error {
	c, err := prepare(a)
	if err != nil {
		return fmt.Errorf("registry.Create: %w", err)
	}
	if _, err := f.ref(c.Email).Create(ctx, c); err != nil {
		if status.Code(err) == codes.AlreadyExists {
			return fmt.Errorf("registry.Create: %w", ErrExists)
		}
		return wrap("registry.Create", err)
	}
	f.stats.Write()
	return nil
}

// List implements Store.
func (f *Firestore) List(ctx context.Context) ([]*Account, error) {
	snaps, err := f.client.Collection(Collection).OrderBy("email", firestore.Asc).Documents(ctx).GetAll()
	// A query is billed at least one read, even when it finds nothing.
	f.stats.Read(max(1, len(snaps)))
	if err != nil {
		return nil, wrap("registry.List", err)
	}
	out := make([]*Account, 0, len(snaps))
	for _, snap := range snaps {
		a, err := decode(snap)
		if err != nil {
			return nil, fmt.Errorf("registry.List: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// SetStatus implements Store.
func (f *Firestore) SetStatus(ctx context.Context, email string, s Status, reason string, now time.Time) (bool, Status, error) {
	if err := checkEmail(email); err != nil {
		return false, "", fmt.Errorf("registry.SetStatus: %w", err)
	}
	if !s.valid() {
		return false, "", fmt.Errorf("registry.SetStatus: unknown status %q", s)
	}
	now = nowOr(now)
	var (
		changed bool
		prev    Status
	)
	err := f.modify(ctx, email, func(cur *Account) *Account {
		prev = cur.Status
		next, ch, write := withStatus(cur, s, reason, now)
		changed = ch
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return false, "", wrap("registry.SetStatus", err)
	}
	return changed, prev, nil
}

// MarkRefreshed implements Store.
func (f *Firestore) MarkRefreshed(ctx context.Context, email string, at time.Time) error {
	if err := checkEmail(email); err != nil {
		return fmt.Errorf("registry.MarkRefreshed: %w", err)
	}
	at = nowOr(at)
	err := f.modify(ctx, email, func(cur *Account) *Account {
		next, write := refreshed(cur, at)
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return wrap("registry.MarkRefreshed", err)
	}
	return nil
}

// SetHold implements Store. It is written only on Gmail's daily-cap
// answer, so its read-then-write costs nothing per send.
func (f *Firestore) SetHold(ctx context.Context, email string, until time.Time, reason string, now time.Time) (bool, error) {
	if err := checkEmail(email); err != nil {
		return false, fmt.Errorf("registry.SetHold: %w", err)
	}
	now = nowOr(now)
	wrote := false
	err := f.modify(ctx, email, func(cur *Account) *Account {
		next, write := withHold(cur, until, reason, now)
		wrote = write
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return false, wrap("registry.SetHold", err)
	}
	return wrote, nil
}

// SetAliases implements Store.
func (f *Firestore) SetAliases(ctx context.Context, email string, aliases []string, now time.Time) (*Account, error) {
	if err := checkEmail(email); err != nil {
		return nil, fmt.Errorf("registry.SetAliases: %w", err)
	}
	clean, err := cleanAliases(email, aliases)
	if err != nil {
		return nil, fmt.Errorf("registry.SetAliases: %w", err)
	}
	now = nowOr(now)
	var out *Account
	err = f.modify(ctx, email, func(cur *Account) *Account {
		next, write := withAliases(cur, clean, now)
		out = next
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return nil, wrap("registry.SetAliases", err)
	}
	return out.clone(), nil
}

// modify reads the account and writes what change returns (nil: nothing) on
// condition that nobody wrote the account in between, rereading when
// somebody did. Unlike a transaction it takes no lock, so a burst of
// concurrent status changes cannot queue up behind one another.
func (f *Firestore) modify(ctx context.Context, email string, change func(cur *Account) *Account) error {
	ref := f.ref(email)
	for range maxRounds {
		snap, err := ref.Get(ctx)
		f.stats.Read(1)
		if err != nil {
			return err
		}
		cur, err := decode(snap)
		if err != nil {
			return err
		}
		next := change(cur)
		if next == nil {
			return nil
		}
		_, err = ref.Update(ctx, allFields(next), firestore.LastUpdateTime(snap.UpdateTime))
		switch status.Code(err) {
		case codes.OK:
			f.stats.Write()
			return nil
		case codes.FailedPrecondition:
			continue
		}
		return err
	}
	return errContended
}

func decode(snap *firestore.DocumentSnapshot) (*Account, error) {
	var a Account
	if err := snap.DataTo(&a); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", snap.Ref.ID, err)
	}
	if len(a.Scopes) == 0 {
		a.Scopes = nil
	}
	return &a, nil
}

// allFields lists every field of a, so that an update replaces the whole
// document as Set would, while still taking a precondition.
func allFields(a *Account) []firestore.Update {
	var scopes any = firestore.Delete
	if len(a.Scopes) > 0 {
		scopes = a.Scopes
	}
	return []firestore.Update{
		{Path: "email", Value: a.Email},
		{Path: "status", Value: string(a.Status)},
		{Path: "scopes", Value: scopes},
		{Path: "connected_at", Value: timeOrDelete(a.ConnectedAt)},
		{Path: "token_issued_at", Value: timeOrDelete(a.TokenIssuedAt)},
		{Path: "last_refresh_at", Value: timeOrDelete(a.LastRefreshAt)},
		{Path: "updated_at", Value: a.UpdatedAt},
		{Path: "last_error", Value: stringOrDelete(a.LastError)},
		{Path: "last_error_at", Value: timeOrDelete(a.LastErrorAt)},
		{Path: "aliases", Value: aliasesOrDelete(a.Aliases)},
		{Path: "hold_until", Value: timeOrDelete(a.HoldUntil)},
		{Path: "hold_reason", Value: stringOrDelete(a.HoldReason)},
		{Path: "kind", Value: stringOrDelete(string(a.Kind))},
		{Path: "hosted_domain", Value: stringOrDelete(a.HostedDomain)},
		{Path: "daily_limit", Value: limitOrDelete(a.DailyLimit)},
	}
}

func limitOrDelete(n int) any {
	if n <= 0 {
		return firestore.Delete
	}
	return n
}

func timeOrDelete(t time.Time) any {
	if t.IsZero() {
		return firestore.Delete
	}
	return t
}

func aliasesOrDelete(aliases []string) any {
	if len(aliases) == 0 {
		return firestore.Delete
	}
	return aliases
}

func stringOrDelete(s string) any {
	if s == "" {
		return firestore.Delete
	}
	return s
}

func wrap(op string, err error) error { return storeops.Wrap(op, err, ErrNotFound, ErrUnavailable) }

// SetDailyLimit implements Store.
func (f *Firestore) SetDailyLimit(ctx context.Context, email string, limit int, now time.Time) (*Account, error) {
	if err := checkEmail(email); err != nil {
		return nil, fmt.Errorf("registry.SetDailyLimit: %w", err)
	}
	if err := checkDailyLimit(limit); err != nil {
		return nil, fmt.Errorf("registry.SetDailyLimit: %w", err)
	}
	now = nowOr(now)
	var out *Account
	err := f.modify(ctx, email, func(cur *Account) *Account {
		next, write := withDailyLimit(cur, limit, now)
		out = next
		if !write {
			return nil
		}
		return next
	})
	if err != nil {
		return nil, wrap("registry.SetDailyLimit", err)
	}
	return out.clone(), nil
}

// AddUsage implements Store with one blind update: an increment per hour
// counted and a delete per hour dropped, so that concurrent senders add up
// rather than overwrite each other, and no read is billed.
func (f *Firestore) AddUsage(ctx context.Context, email string, add []Bucket, drop []time.Time) error {
	if err := checkEmail(email); err != nil {
		return fmt.Errorf("registry.AddUsage: %w", err)
	}
	var updates []firestore.Update
	for _, b := range mergeBuckets(add) {
		k := HourKey(b.Hour)
		updates = append(updates,
			firestore.Update{FieldPath: firestore.FieldPath{"usage", k, "messages"}, Value: firestore.Increment(b.Messages)},
			firestore.Update{FieldPath: firestore.FieldPath{"usage", k, "recipients"}, Value: firestore.Increment(b.Recipients)})
	}
	counted := usageHours(add)
	for _, h := range drop {
		if k := HourKey(h); !counted[k] {
			updates = append(updates, firestore.Update{FieldPath: firestore.FieldPath{"usage", k}, Value: firestore.Delete})
			counted[k] = true
		}
	}
	if len(updates) == 0 {
		return nil
	}
	if _, err := f.ref(email).Update(ctx, updates); err != nil {
		return wrap("registry.AddUsage", err)
	}
	f.stats.Write()
	return nil
}
