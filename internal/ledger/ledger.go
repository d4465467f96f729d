// Package ledger is the send ledger: one record per send request saying
// whether it is in flight, sent or failed. A request is identified by its
// Scope, (app, account, idempotency key), so the same key from two apps or
// two mailboxes is two requests. The sender claims a scope before it calls
// Gmail, so that Pub/Sub's at-least-once redeliveries send a message once,
// and after an ambiguous failure or a crash at most once more, with that
// second send flagged as a possible duplicate.
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
	"strconv"
	"strings"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/account"
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

// DefaultApp is the app of a request whose subscription names none.
const DefaultApp = "default"

// Scope is what an idempotency key is unique within: one app sending from
// one mailbox. Two scopes that differ in any part are two send requests,
// and neither's record ever answers for the other.
type Scope struct {
	// App is the publishing app; empty means DefaultApp.
	App string
	// Account is the mailbox; it is compared in account.Normalize's form.
	Account string
	// Key is the idempotency key, compared exactly.
	Key string
}

// normalized returns s with its app defaulted and its account normalised,
// the form that ID encodes and records store.
func (s Scope) normalized() Scope {
	if s.App == "" {
		s.App = DefaultApp
	}
	s.Account = account.Normalize(s.Account)
	return s
}

// ID is the string every Store method takes to name a request: the
// normalised scope's three parts as netstrings ("7:default,17:alice@example.com,8:order-42,").
// Length prefixes make the encoding unambiguous whatever the parts contain,
// so no two scopes share an ID (a separator could appear inside a key).
func (s Scope) ID() string {
	s = s.normalized()
	var b strings.Builder
	for _, p := range []string{s.App, s.Account, s.Key} {
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
		b.WriteByte(',')
	}
	return b.String()
}

// ParseID returns the scope that id names. It refuses anything that Scope.ID
// would not have produced, such as a bare idempotency key, so that a caller
// that forgot the scope gets an error rather than another request's record.
func ParseID(id string) (Scope, error) {
	var parts [3]string
	rest := id
	for i := range parts {
		n, after, ok := strings.Cut(rest, ":")
		size, err := strconv.Atoi(n)
		if !ok || err != nil || size < 0 || len(after) < size+1 || after[size] != ',' || strconv.Itoa(size) != n {
			return Scope{}, fmt.Errorf("ledger ID %q is not a Scope.ID (app, account, idempotency key)", id)
		}
		parts[i], rest = after[:size], after[size+1:]
	}
	s := Scope{App: parts[0], Account: parts[1], Key: parts[2]}
	if rest != "" || s.ID() != id {
		return Scope{}, fmt.Errorf("ledger ID %q is not a normalised Scope.ID", id)
	}
	if s.Key == "" {
		return Scope{}, errors.New("empty idempotency key")
	}
	return s, nil
}

// Fingerprint is what the ledger compares to tell a corrected request from
// a repeated one: hex(sha256) of the Pub/Sub message data, byte for byte.
// Attributes do not count. The idempotency_key field, when the key rides
// in the body, is part of the bytes; under one scope it is the same key on
// both sides, so it cannot make two equal requests differ, and hashing the
// bytes as they came costs no parse of a body of up to 10 MB. Re-encoding
// the same request (other whitespace or field order) counts as different
// content, which matters only for a permanently failed key, where a
// publisher that republishes wants it tried again.
func Fingerprint(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Record is the ledger entry of one send request.
type Record struct {
	// Key is the idempotency key itself; App and Account complete the
	// scope, and the document ID is the hash of the scope's ID.
	Key     string `firestore:"key" json:"key"`
	App     string `firestore:"app" json:"app"`
	State   State  `firestore:"state" json:"state"`
	Account string `firestore:"account,omitempty" json:"account,omitempty"`
	// Fingerprint is the Fingerprint of the request last attempted, so
	// that a permanently failed key can be reused for corrected content.
	Fingerprint     string `firestore:"fingerprint,omitempty" json:"fingerprint,omitempty"`
	PubSubMessageID string `firestore:"pubsub_message_id,omitempty" json:"pubsub_message_id,omitempty"`
	GmailMessageID  string `firestore:"gmail_message_id,omitempty" json:"gmail_message_id,omitempty"`
	GmailThreadID   string `firestore:"gmail_thread_id,omitempty" json:"gmail_thread_id,omitempty"`
	// Attempts counts the deliveries that held the lease, including the
	// current one.
	Attempts int `firestore:"attempts" json:"attempts"`
	// Lapsed counts the takeovers of a lease that lapsed without a
	// release: each previous holder may have died, or gone unanswered,
	// after its body reached Gmail.
	Lapsed       int    `firestore:"lapsed,omitempty" json:"lapsed,omitempty"`
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

// Scope is the request the record belongs to.
func (r *Record) Scope() Scope { return Scope{App: r.App, Account: r.Account, Key: r.Key} }

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
	// ClaimNew: the request was unknown, or its key failed permanently and
	// the new delivery's content differs; the caller holds the lease and
	// sends.
	ClaimNew ClaimOutcome = iota + 1
	// ClaimBusy: another delivery holds a live lease; the caller nacks.
	ClaimBusy
	// ClaimTakeover: the previous lease lapsed or was released; the caller
	// now holds the lease and sends. Record.MaybeDuplicate tells whether an
	// earlier body may already have reached Gmail, and Record.Lapsed how
	// many earlier deliveries ended without saying what they did.
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
	PubSubMessageID string
	// Fingerprint is the Fingerprint of this delivery's data. Empty never
	// matches and never differs: a failed record then stays a duplicate.
	Fingerprint string
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
	// MaybeDuplicate, when true, sets the record's flag (false keeps it):
	// a failure whose body may have reached Gmail, so that its key is never
	// reused for other content.
	MaybeDuplicate bool
	Now            time.Time // zero means time.Now()
}

// Store is the contract shared by Firestore and Local. Every id is a
// Scope.ID; any other string is refused with a plain error.
type Store interface {
	// Claim creates the request's record, or reads it when it exists, and
	// returns the outcome described on ClaimOutcome. When ClaimNew or
	// ClaimTakeover is returned, the caller holds the lease until
	// c.Now+c.Lease. A record whose ExpireAt has passed counts as absent.
	Claim(ctx context.Context, id string, c ClaimRequest) (*Record, ClaimOutcome, error)

	// Finish records the final state and Gmail's IDs or the error, clears
	// the lease and keeps MaybeDuplicate. It is a single blind write: the
	// last Finish wins.
	Finish(ctx context.Context, id string, f Finish) error

	// Release records a transient failure known not to have sent anything
	// and clears the lease, so the next delivery takes over at once.
	// Attempts is kept. A finished record is left untouched.
	Release(ctx context.Context, id, errorCode, errorMessage string, now time.Time) error

	// MarkAmbiguous records that a body may have reached Gmail without an
	// answer: the record stays sending with its lease, and MaybeDuplicate is
	// set so that a later takeover is reported as a possible duplicate.
	MarkAmbiguous(ctx context.Context, id string, now time.Time) error

	// Get returns the request's record as stored, even past ExpireAt:
	// until the TTL deletes it, what happened to the request is still true.
	Get(ctx context.Context, id string) (*Record, error)
}

// Stats counts the reads and committed writes a store made.
type Stats = storeops.Stats

// DocID is the document ID of a Scope.ID: hex(sha256(id)). Keys may contain
// "/", which Firestore IDs cannot, and may be long, so the ID is a
// fixed-size hash. Records written before scoping were filed under
// hex(sha256(key)) and are not found under these IDs; they expire with TTL.
func DocID(id string) string {
	sum := sha256.Sum256([]byte(id))
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

func checkID(id string) error {
	_, err := ParseID(id)
	return err
}

func (c ClaimRequest) check(id string) (Scope, error) {
	s, err := ParseID(id)
	if err != nil {
		return Scope{}, err
	}
	if c.Lease <= 0 {
		return Scope{}, fmt.Errorf("lease %v is not positive", c.Lease)
	}
	return s, nil
}

func (f Finish) check(id string) error {
	if err := checkID(id); err != nil {
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
func decide(cur *Record, s Scope, c ClaimRequest, now time.Time) (*Record, ClaimOutcome, bool, error) {
	s = s.normalized()
	fresh := func() *Record {
		return &Record{
			Key:             s.Key,
			App:             s.App,
			State:           StateSending,
			Account:         s.Account,
			Fingerprint:     c.Fingerprint,
			PubSubMessageID: c.PubSubMessageID,
			Attempts:        1,
			LeaseUntil:      norm(now.Add(c.Lease)),
			CreatedAt:       now,
			UpdatedAt:       now,
			ExpireAt:        norm(now.Add(TTL)),
		}
	}
	if cur == nil || cur.expired(now) {
		return fresh(), ClaimNew, true, nil
	}
	switch {
	case cur.State == StateFailed && reusable(cur, c.Fingerprint):
		// The publisher corrected a request that failed without reaching
		// Gmail: a new send under the same key, with nothing of the old
		// one's attempts, error or flags. CreatedAt restarts too, since the
		// record now describes the new request.
		return fresh(), ClaimNew, true, nil
	case cur.State.final():
		return cur, ClaimDone, false, nil
	case cur.State != StateSending:
		return nil, 0, false, fmt.Errorf("record %s has unknown state %q", DocID(s.ID()), cur.State)
	case cur.LeaseUntil.After(now):
		return cur, ClaimBusy, false, nil
	}
	next := cur.clone()
	if !cur.LeaseUntil.IsZero() {
		// The lease lapsed instead of being released: its holder died
		// (kill, OOM, timeout) or was left unanswered, maybe after its body
		// reached Gmail. The next send may be a second copy, and says so.
		next.MaybeDuplicate = true
		next.Lapsed++
	}
	if c.Fingerprint != "" {
		next.Fingerprint = c.Fingerprint
	}
	next.Attempts++
	next.LeaseUntil = norm(now.Add(c.Lease))
	next.UpdatedAt = now
	next.ExpireAt = norm(now.Add(TTL))
	return next, ClaimTakeover, true, nil
}

// reusable reports whether a failed record's key may carry a new request
// with fingerprint fp: the failure must be one where nothing can have
// reached Gmail (no MaybeDuplicate), and the content must differ. Without
// a fingerprint on either side nothing differs, so the key stays a
// duplicate, as it was before fingerprints.
func reusable(cur *Record, fp string) bool {
	return !cur.MaybeDuplicate && fp != "" && cur.Fingerprint != "" && fp != cur.Fingerprint
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
	next.MaybeDuplicate = next.MaybeDuplicate || f.MaybeDuplicate
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
