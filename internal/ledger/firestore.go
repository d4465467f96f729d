package ledger

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailrelay/gmailrelay/internal/storeops"
)

// Firestore is the production Store, one document per request (DocID of its
// Scope.ID) in Collection of a native-mode database.
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

func (f *Firestore) ref(id string) *firestore.DocumentRef {
	return f.client.Collection(Collection).Doc(DocID(id))
}

// maxRounds bounds the read-and-conditional-write rounds of one call. A
// round is lost only to a concurrent write of the same document, after which
// the reread usually settles the matter (busy, done), so a few suffice.
const maxRounds = 5

// errContended is returned when every round lost to another writer; the
// caller nacks and a later delivery tries again.
var errContended = fmt.Errorf("%w: the document kept changing under concurrent writers", ErrUnavailable)

// Claim implements Store. The common case, a key never seen, costs one
// Create and no read. A Create that meets an existing document reads it, and
// only a lapsed lease or an expired record is written, with an update on
// condition that the document is unchanged since the read. That optimistic
// write, unlike a transaction, takes no lock, so a burst of redeliveries
// cannot queue behind one another: one wins, the others reread and see busy.
// A permanently failed record reused for new content is rewritten whole the
// same way.
func (f *Firestore) Claim(ctx context.Context, id string, c ClaimRequest) (*Record, ClaimOutcome, error) {
	scope, err := c.check(id)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
	}
	now := nowOr(c.Now)
	ref := f.ref(id)

	fresh, _, _, _ := decide(nil, scope, c, now)
	created, err := f.create(ctx, ref, fresh)
	if err != nil {
		return nil, 0, wrap("ledger.Claim", err)
	}
	if created {
		return fresh, ClaimNew, nil
	}
	for range maxRounds {
		snap, err := ref.Get(ctx)
		f.stats.Read(1)
		if status.Code(err) == codes.NotFound {
			// The TTL deleted it since the Create failed.
			created, err := f.create(ctx, ref, fresh)
			if err != nil {
				return nil, 0, wrap("ledger.Claim", err)
			}
			if created {
				return fresh, ClaimNew, nil
			}
			continue
		}
		if err != nil {
			return nil, 0, wrap("ledger.Claim", err)
		}
		cur, err := decode(snap)
		if err != nil {
			return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
		}
		next, out, write, err := decide(cur, scope, c, now)
		if err != nil {
			return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
		}
		if !write {
			return next, out, nil
		}
		won, err := f.updateIfUnchanged(ctx, snap, allFields(next))
		if err != nil {
			return nil, 0, wrap("ledger.Claim", err)
		}
		if won {
			return next, out, nil
		}
	}
	return nil, 0, fmt.Errorf("ledger.Claim: %w", errContended)
}

// create reports false, without error, when the document exists.
func (f *Firestore) create(ctx context.Context, ref *firestore.DocumentRef, rec *Record) (bool, error) {
	_, err := ref.Create(ctx, rec)
	switch {
	case err == nil:
		f.stats.Write()
		return true, nil
	case status.Code(err) == codes.AlreadyExists:
		return false, nil
	}
	return false, err
}

// updateIfUnchanged applies updates only if the document is as snap saw it,
// and reports false, without error, when another writer got there first.
func (f *Firestore) updateIfUnchanged(ctx context.Context, snap *firestore.DocumentSnapshot, updates []firestore.Update) (bool, error) {
	_, err := snap.Ref.Update(ctx, updates, firestore.LastUpdateTime(snap.UpdateTime))
	switch status.Code(err) {
	case codes.OK:
		f.stats.Write()
		return true, nil
	case codes.FailedPrecondition, codes.NotFound:
		return false, nil
	}
	return false, err
}

// modify rereads and rewrites the key's record until its conditional update
// wins; change returns the fields to write, or none to leave the record.
func (f *Firestore) modify(ctx context.Context, id string, change func(cur *Record) []firestore.Update) error {
	ref := f.ref(id)
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
		updates := change(cur)
		if len(updates) == 0 {
			return nil
		}
		won, err := f.updateIfUnchanged(ctx, snap, updates)
		if err != nil || won {
			return err
		}
	}
	return errContended
}

// Finish implements Store with one blind update: no read, so that a
// message costs two writes in all.
func (f *Firestore) Finish(ctx context.Context, id string, fin Finish) error {
	if err := fin.check(id); err != nil {
		return fmt.Errorf("ledger.Finish: %w", err)
	}
	now := nowOr(fin.Now)
	updates := []firestore.Update{
		{Path: "state", Value: string(fin.State)},
		{Path: "gmail_message_id", Value: orDelete(fin.GmailMessageID)},
		{Path: "gmail_thread_id", Value: orDelete(fin.GmailThreadID)},
		{Path: "error_code", Value: orDelete(fin.ErrorCode)},
		{Path: "error_message", Value: orDelete(fin.ErrorMessage)},
		{Path: "lease_until", Value: firestore.Delete},
		{Path: "updated_at", Value: now},
		{Path: ExpireAtField, Value: norm(now.Add(TTL))},
	}
	if fin.MaybeDuplicate {
		// Only ever set: a false must keep what MarkAmbiguous or a
		// takeover recorded, and a blind write cannot read it.
		updates = append(updates, firestore.Update{Path: "maybe_duplicate", Value: true})
	}
	_, err := f.ref(id).Update(ctx, updates)
	if err != nil {
		return wrap("ledger.Finish", err)
	}
	f.stats.Write()
	return nil
}

// Release implements Store. It reads first so that it never reopens a
// record that another delivery has finished meanwhile.
func (f *Firestore) Release(ctx context.Context, id, errorCode, errorMessage string, now time.Time) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("ledger.Release: %w", err)
	}
	now = nowOr(now)
	err := f.modify(ctx, id, func(cur *Record) []firestore.Update {
		if cur.State != StateSending {
			return nil
		}
		return []firestore.Update{
			{Path: "error_code", Value: orDelete(errorCode)},
			{Path: "error_message", Value: orDelete(errorMessage)},
			{Path: "lease_until", Value: firestore.Delete},
			{Path: "updated_at", Value: now},
			{Path: ExpireAtField, Value: norm(now.Add(TTL))},
		}
	})
	if err != nil {
		return wrap("ledger.Release", err)
	}
	return nil
}

// MarkAmbiguous implements Store with one blind update. On a record another
// delivery has finished meanwhile the flag is still true: this delivery's
// body may have reached Gmail too.
func (f *Firestore) MarkAmbiguous(ctx context.Context, id string, now time.Time) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("ledger.MarkAmbiguous: %w", err)
	}
	now = nowOr(now)
	_, err := f.ref(id).Update(ctx, []firestore.Update{
		{Path: "maybe_duplicate", Value: true},
		{Path: "updated_at", Value: now},
		{Path: ExpireAtField, Value: norm(now.Add(TTL))},
	})
	if err != nil {
		return wrap("ledger.MarkAmbiguous", err)
	}
	f.stats.Write()
	return nil
}

// Get implements Store.
func (f *Firestore) Get(ctx context.Context, id string) (*Record, error) {
	if err := checkID(id); err != nil {
		return nil, fmt.Errorf("ledger.Get: %w", err)
	}
	snap, err := f.ref(id).Get(ctx)
	f.stats.Read(1)
	if err != nil {
		return nil, wrap("ledger.Get", err)
	}
	rec, err := decode(snap)
	if err != nil {
		return nil, fmt.Errorf("ledger.Get: %w", err)
	}
	return rec, nil
}

func decode(snap *firestore.DocumentSnapshot) (*Record, error) {
	var rec Record
	if err := snap.DataTo(&rec); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", snap.Ref.ID, err)
	}
	return &rec, nil
}

// allFields lists every field of r, so that an update replaces the whole
// document as Set would, while still taking a precondition.
func allFields(r *Record) []firestore.Update {
	return []firestore.Update{
		{Path: "key", Value: r.Key},
		{Path: "app", Value: r.App},
		{Path: "state", Value: string(r.State)},
		{Path: "account", Value: orDelete(r.Account)},
		{Path: "fingerprint", Value: orDelete(r.Fingerprint)},
		{Path: "pubsub_message_id", Value: orDelete(r.PubSubMessageID)},
		{Path: "gmail_message_id", Value: orDelete(r.GmailMessageID)},
		{Path: "gmail_thread_id", Value: orDelete(r.GmailThreadID)},
		{Path: "attempts", Value: r.Attempts},
		{Path: "lapsed", Value: intOrDelete(r.Lapsed)},
		{Path: "error_code", Value: orDelete(r.ErrorCode)},
		{Path: "error_message", Value: orDelete(r.ErrorMessage)},
		{Path: "lease_until", Value: timeOrDelete(r.LeaseUntil)},
		{Path: "maybe_duplicate", Value: boolOrDelete(r.MaybeDuplicate)},
		{Path: "created_at", Value: r.CreatedAt},
		{Path: "updated_at", Value: r.UpdatedAt},
		{Path: ExpireAtField, Value: r.ExpireAt},
	}
}

func timeOrDelete(t time.Time) any {
	if t.IsZero() {
		return firestore.Delete
	}
	return t
}

func intOrDelete(n int) any {
	if n == 0 {
		return firestore.Delete
	}
	return n
}

func boolOrDelete(b bool) any {
	if !b {
		return firestore.Delete
	}
	return true
}

// orDelete removes a field rather than storing "", so that documents written
// by Update look like those written from a Record with omitempty.
func orDelete(s string) any {
	if s == "" {
		return firestore.Delete
	}
	return s
}

func wrap(op string, err error) error { return storeops.Wrap(op, err, ErrNotFound, ErrUnavailable) }
