// Package ledger is the send ledger: one record per idempotency key saying
// whether that send request is in flight, sent or failed. The sender claims a
// key before it calls Gmail, so that Pub/Sub's at-least-once redeliveries
// send a message once, and after an ambiguous failure at most once more, with
// that second send flagged as a possible duplicate.
//
// Two implementations share the Store contract: Firestore for production and
// Local for make dev, which keeps the records in memory and journals every
// change to a JSON-lines file so that a restarted dev server remembers them.
package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/storeops"
)

// Collection is the Firestore collection holding the records. The TTL policy
// on its ExpireAtField is declared in Terraform.
const Collection = "sends"

// ExpireAtField is the Firestore field that the TTL policy watches.
const ExpireAtField = "expire_at"

// TTL is how long a key is remembered after its record was last written. It
// equals the default message retention of a Pub/Sub subscription (7 days; the
// maximum is 31), so a redelivery cannot outlive its record as long as the
// subscription keeps that default.
const TTL = 7 * 24 * time.Hour

var (
	// ErrNotFound means the ledger holds no live record for the key.
	ErrNotFound = errors.New("ledger: record not found")

	// ErrUnavailable means the store could not answer, even after the
	// client's own retries. The sender nacks so that Pub/Sub redelivers.
	ErrUnavailable = errors.New("ledger: store unavailable")
)

// State is where a send stands.
type State string

const (
	// StateSending means a delivery holds, or held, the lease and may be
	// talking to Gmail.
	StateSending State = "sending"
	// StateSent means Gmail accepted the message.
	StateSent State = "sent"
	// StateFailed means the send failed permanently.
	StateFailed State = "failed"
)

func (s State) final() bool { return s == StateSent || s == StateFailed }

// Record is the ledger entry of one idempotency key.
type Record struct {
	// Key is the idempotency key itself; the document ID is its hash.
	Key             string `firestore:"key" json:"key"`
	State           State  `firestore:"state" json:"state"`
	Account         string `firestore:"account,omitempty" json:"account,omitempty"`
	PubSubMessageID string `firestore:"pubsub_message_id,omitempty" json:"pubsub_message_id,omitempty"`
	GmailMessageID  string `firestore:"gmail_message_id,omitempty" json:"gmail_message_id,omitempty"`
	GmailThreadID   string `firestore:"gmail_thread_id,omitempty" json:"gmail_thread_id,omitempty"`
	// Attempts counts the deliveries that held the lease, including the
	// current one.
	Attempts     int    `firestore:"attempts" json:"attempts"`
	ErrorCode    string `firestore:"error_code,omitempty" json:"error_code,omitempty"`
	ErrorMessage string `firestore:"error_message,omitempty" json:"error_message,omitempty"`
	// LeaseUntil is zero once the record is finished or released.
	LeaseUntil time.Time `firestore:"lease_until,omitempty" json:"lease_until,omitzero"`
	// MaybeDuplicate is set when a body may have reached Gmail without an
	// answer, so that a later successful send is reported as a possible
	// duplicate rather than silently counted once.
	MaybeDuplicate bool      `firestore:"maybe_duplicate,omitempty" json:"maybe_duplicate,omitempty"`
	CreatedAt      time.Time `firestore:"created_at" json:"created_at"`
	UpdatedAt      time.Time `firestore:"updated_at" json:"updated_at"`
	ExpireAt       time.Time `firestore:"expire_at" json:"expire_at"`
}

func (r *Record) clone() *Record {
	c := *r
	return &c
}

// expired reports whether the TTL has passed. Firestore deletes expired
// documents only eventually, so both stores treat them as absent at once.
func (r *Record) expired(now time.Time) bool {
	return !r.ExpireAt.IsZero() && !now.Before(r.ExpireAt)
}

// ClaimOutcome says what the caller of Claim must do next.
type ClaimOutcome int

const (
	// ClaimNew: the key was unknown; the caller holds the lease and sends.
	ClaimNew ClaimOutcome = iota + 1
	// ClaimBusy: another delivery holds a live lease; the caller nacks.
	ClaimBusy
	// ClaimTakeover: the previous lease lapsed or was released; the caller
	// now holds the lease and sends. Record.MaybeDuplicate tells whether an
	// earlier body may already have reached Gmail.
	ClaimTakeover
	// ClaimDone: the send already finished; the caller reports a duplicate.
	ClaimDone
)

func (o ClaimOutcome) String() string {
	switch o {
	case ClaimNew:
		return "new"
	case ClaimBusy:
		return "busy"
	case ClaimTakeover:
		return "takeover"
	case ClaimDone:
		return "done"
	}
	return fmt.Sprintf("ClaimOutcome(%d)", int(o))
}

// ClaimRequest describes the delivery that wants the lease.
type ClaimRequest struct {
	Account         string
	PubSubMessageID string
	// Lease is how long the claim blocks other deliveries. It must outlast
	// the sender's Gmail timeout, or two deliveries may send concurrently.
	Lease time.Duration
	// Now is the caller's clock; the zero value means time.Now().
	Now time.Time
}

// Finish is the final outcome of a send.
type Finish struct {
	State          State // StateSent or StateFailed
	GmailMessageID string
	GmailThreadID  string
	ErrorCode      string
	ErrorMessage   string
	Now            time.Time // zero means time.Now()
}

// Store is the contract shared by Firestore and Local.
type Store interface {
	// Claim creates the key's record, or reads it when it exists, and
	// returns the outcome described on ClaimOutcome. When ClaimNew or
	// ClaimTakeover is returned, the caller holds the lease until
	// c.Now+c.Lease. A record whose ExpireAt has passed counts as absent.
	Claim(ctx context.Context, key string, c ClaimRequest) (*Record, ClaimOutcome, error)

	// Finish records the final state and Gmail's IDs or the error, clears
	// the lease and keeps MaybeDuplicate. It is a single blind write: the
	// last Finish wins.
	Finish(ctx context.Context, key string, f Finish) error

	// Release records a transient failure known not to have sent anything
	// and clears the lease, so the next delivery takes over at once.
	// Attempts is kept. A finished record is left untouched.
	Release(ctx context.Context, key, errorCode, errorMessage string, now time.Time) error

	// MarkAmbiguous records that a body may have reached Gmail without an
	// answer: the record stays sending with its lease, and MaybeDuplicate is
	// set so that a later takeover is reported as a possible duplicate.
	MarkAmbiguous(ctx context.Context, key string, now time.Time) error

	// Get returns the key's record as stored, even past ExpireAt: until
	// the TTL deletes it, what happened to the key is still true.
	Get(ctx context.Context, key string) (*Record, error)
}

// Stats counts the reads and committed writes a store made.
type Stats = storeops.Stats

// DocID is the document ID of key. Idempotency keys may contain "/", which
// Firestore IDs cannot, and may be long, so the ID is a fixed-size hash.
func DocID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// norm makes times compare equal after a round trip through either store:
// Firestore keeps microseconds and returns UTC.
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return norm(t)
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("empty idempotency key")
	}
	return nil
}

func (c ClaimRequest) check(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if c.Lease <= 0 {
		return fmt.Errorf("lease %v is not positive", c.Lease)
	}
	return nil
}

func (f Finish) check(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if !f.State.final() {
		return fmt.Errorf("finish state %q is neither %q nor %q", f.State, StateSent, StateFailed)
	}
	return nil
}

// decide is the whole of Claim's logic, shared by both stores so they cannot
// disagree: given the current record (nil when absent) it returns the
// resulting record, the outcome, and whether the result must be written.
func decide(cur *Record, key string, c ClaimRequest, now time.Time) (*Record, ClaimOutcome, bool, error) {
	if cur == nil || cur.expired(now) {
		return &Record{
			Key:             key,
			State:           StateSending,
			Account:         c.Account,
			PubSubMessageID: c.PubSubMessageID,
			Attempts:        1,
			LeaseUntil:      norm(now.Add(c.Lease)),
			CreatedAt:       now,
			UpdatedAt:       now,
			ExpireAt:        norm(now.Add(TTL)),
		}, ClaimNew, true, nil
	}
	switch {
	case cur.State.final():
		return cur, ClaimDone, false, nil
	case cur.State != StateSending:
		return nil, 0, false, fmt.Errorf("record %s has unknown state %q", DocID(key), cur.State)
	case cur.LeaseUntil.After(now):
		return cur, ClaimBusy, false, nil
	}
	next := cur.clone()
	next.Attempts++
	next.LeaseUntil = norm(now.Add(c.Lease))
	next.UpdatedAt = now
	next.ExpireAt = norm(now.Add(TTL))
	return next, ClaimTakeover, true, nil
}

// finished applies f to a copy of cur; Local uses it, and Firestore writes
// the same fields.
func finished(cur *Record, f Finish, now time.Time) *Record {
	next := cur.clone()
	next.State = f.State
	next.GmailMessageID = f.GmailMessageID
	next.GmailThreadID = f.GmailThreadID
	next.ErrorCode = f.ErrorCode
	next.ErrorMessage = f.ErrorMessage
	next.LeaseUntil = time.Time{}
	next.UpdatedAt = now
	next.ExpireAt = norm(now.Add(TTL))
	return next
}

func released(cur *Record, code, msg string, now time.Time) *Record {
	next := cur.clone()
	next.ErrorCode = code
	next.ErrorMessage = msg
	next.LeaseUntil = time.Time{}
	next.UpdatedAt = now
	next.ExpireAt = norm(now.Add(TTL))
	return next
}

func ambiguous(cur *Record, now time.Time) *Record {
	next := cur.clone()
	next.MaybeDuplicate = true
	next.UpdatedAt = now
	next.ExpireAt = norm(now.Add(TTL))
	return next
}
