// Package registry is the account registry: which Gmail mailboxes are
// connected to the relay, with what scopes, and whether their refresh token
// still works. The tokens themselves live in Secret Manager (package
// tokenstore); the registry holds only what is safe to list and show.
//
// Two implementations share the Store contract: Firestore for production and
// Local, a JSON-file store for make dev.
package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/storeops"
)

// Collection is the Firestore collection holding the accounts.
const Collection = "accounts"

var (
	// ErrNotFound means no account is registered under the address.
	ErrNotFound = errors.New("registry: account not found")

	// ErrUnavailable means the store could not answer, even after the
	// client's own retries; the caller may try again later.
	ErrUnavailable = errors.New("registry: store unavailable")
)

// Status is whether the relay can send from an account.
type Status string

const (
	// StatusConnected: the refresh token is stored and was last seen working.
	StatusConnected Status = "connected"
	// StatusReauthRequired: Google refused the refresh token; the owner
	// must go through the connect flow again.
	StatusReauthRequired Status = "reauth_required"
	// StatusDisconnected: the operator removed the account and its token.
	// Only a new connect (Upsert) brings it back.
	StatusDisconnected Status = "disconnected"
)

func (s Status) valid() bool {
	return s == StatusConnected || s == StatusReauthRequired || s == StatusDisconnected
}

// Kind is how the relay acts as a mailbox.
type Kind string

const (
	// KindOAuth (also the empty Kind, as every account stored before kinds
	// existed is): the owner connected it, and its refresh token is in
	// Secret Manager.
	KindOAuth Kind = "oauth"
	// KindDelegated: a Workspace user the relay acts as through domain-wide
	// delegation (package delegation). No token is stored; the relay
	// mints one per hour, and only the Workspace admin can withdraw it.
	KindDelegated Kind = "delegated"
)

func (k Kind) valid() bool { return k == "" || k == KindOAuth || k == KindDelegated }

// ErrExists means Create found an account already registered.
var ErrExists = errors.New("registry: account already registered")

// Account is a registered mailbox.
type Account struct {
	// Email is the normalized address (see account.Normalize).
	Email  string   `firestore:"email" json:"email"`
	Status Status   `firestore:"status" json:"status"`
	Scopes []string `firestore:"scopes,omitempty" json:"scopes,omitempty"`
	// ConnectedAt is when the owner last completed the connect flow.
	ConnectedAt time.Time `firestore:"connected_at,omitempty" json:"connected_at,omitzero"`
	// TokenIssuedAt is when Google issued the stored refresh token; tokens
	// of apps in Testing status die 7 days after it.
	TokenIssuedAt time.Time `firestore:"token_issued_at,omitempty" json:"token_issued_at,omitzero"`
	// LastRefreshAt is when the token last proved itself by a refresh.
	LastRefreshAt time.Time `firestore:"last_refresh_at,omitempty" json:"last_refresh_at,omitzero"`
	UpdatedAt     time.Time `firestore:"updated_at" json:"updated_at"`
	// LastError is the reason of the last failure, as shown to operators;
	// it must never hold a token or a message body.
	LastError   string    `firestore:"last_error,omitempty" json:"last_error,omitempty"`
	LastErrorAt time.Time `firestore:"last_error_at,omitempty" json:"last_error_at,omitzero"`
	// Aliases are the send-as aliases the operator registered (SetAliases),
	// normalized and sorted: addresses the owner verified in Gmail, which a
	// send request's from may name. gmail.send cannot list them, so the
	// relay knows only these.
	Aliases []string `firestore:"aliases,omitempty" json:"aliases,omitempty"`
	// HoldUntil is when Gmail accepts the mailbox's sends again after it
	// refused them for its daily sending cap; every sender instance
	// refuses the account's deliveries until then without calling Gmail.
	// A past HoldUntil means nothing and is left in place: clearing it
	// would cost a write per send.
	HoldUntil time.Time `firestore:"hold_until,omitempty" json:"hold_until,omitzero"`
	// HoldReason is Gmail's answer that set HoldUntil, as shown to
	// operators; it must never hold a token or a message body.
	HoldReason string `firestore:"hold_reason,omitempty" json:"hold_reason,omitempty"`
	// Kind is empty or KindOAuth for a connected mailbox, KindDelegated
	// for one the relay acts as through domain-wide delegation.
	Kind Kind `firestore:"kind,omitempty" json:"kind,omitempty"`
	// HostedDomain is the Workspace domain Google named (the ID token's
	// hd) at connect, empty for consumer Gmail: it picks the daily limits.
	HostedDomain string `firestore:"hosted_domain,omitempty" json:"hosted_domain,omitempty"`
	// DailyLimit, when positive, is the operator's message limit for the
	// mailbox over a rolling 24 hours, in place of its kind's default. It
	// is the operator's, not the connect flow's, so Upsert keeps it.
	DailyLimit int `firestore:"daily_limit,omitempty" json:"daily_limit,omitempty"`
	// Usage is the mailbox's accepted sends by hour (HourKey), as the
	// senders have counted them (AddUsage): what the daily limits are
	// checked against. A map rather than a list, so that a count is one
	// blind increment, and on the account so that the read every send
	// already makes of it brings the count along. Like Aliases it is not
	// the connect flow's: Upsert keeps it.
	Usage map[string]HourCount `firestore:"usage,omitempty" json:"usage,omitempty"`
}

// HourCount is one hour of a mailbox's accepted sends.
type HourCount struct {
	Messages   int `firestore:"messages" json:"messages"`
	Recipients int `firestore:"recipients" json:"recipients"`
}

// Buckets returns Usage as the buckets quota.go works on, ignoring keys
// that are not an HourKey.
func (a *Account) Buckets() []Bucket {
	out := make([]Bucket, 0, len(a.Usage))
	for k, c := range a.Usage {
		h, err := time.Parse(hourKeyLayout, k)
		if err != nil {
			continue
		}
		out = append(out, Bucket{Hour: h, Messages: c.Messages, Recipients: c.Recipients})
	}
	return out
}

// Used is what the mailbox sent in the rolling window ending at now.
func (a *Account) Used(now time.Time) (messages, recipients int) { return Usage(a.Buckets(), now) }

// Limits are the account's daily sending limits (see DailyLimits).
func (a *Account) Limits() Limits { return DailyLimits(a.HostedDomain, a.Delegated(), a.DailyLimit) }

// Delegated reports whether the relay acts as the account through
// domain-wide delegation rather than a stored refresh token.
func (a *Account) Delegated() bool { return a.Kind == KindDelegated }

func (a *Account) clone() *Account {
	c := *a
	c.Scopes = slices.Clone(a.Scopes)
	c.Aliases = slices.Clone(a.Aliases)
	c.Usage = maps.Clone(a.Usage)
	return &c
}

// Store is the contract shared by Firestore and Local. Every method takes
// the address in any case and with surrounding spaces.
type Store interface {
	// Get returns the account registered under email.
	Get(ctx context.Context, email string) (*Account, error)

	// Upsert writes the whole account, replacing any earlier one: the
	// confirm step calls it on every connect and reconnect. The address is
	// stored normalized; a zero UpdatedAt means now. Aliases and
	// DailyLimit are the exception: they are the operator's, not the
	// connect flow's, so an account without them keeps those stored.
	Upsert(ctx context.Context, a *Account) error

	// SetAliases replaces the account's send-as aliases with aliases,
	// normalized, deduplicated and sorted; an empty list removes them all.
	// It refuses more than MaxAliases, or an entry that is not an address,
	// and returns the account as stored.
	SetAliases(ctx context.Context, email string, aliases []string, now time.Time) (*Account, error)

	// SetDailyLimit sets the operator's daily message limit for the
	// account; zero restores its kind's default. It returns the account
	// as stored and writes nothing when the limit is already limit.
	SetDailyLimit(ctx context.Context, email string, limit int, now time.Time) (*Account, error)

	// Create registers a only if no account is registered under its
	// address, else it fails with ErrExists: the sender registers a
	// delegated account on first use this way, so that it can never
	// overwrite a connect or revive an account the operator disconnected.
	Create(ctx context.Context, a *Account) error

	// List returns every account, ordered by address.
	List(ctx context.Context) ([]*Account, error)

	// SetStatus moves the account to s and, when reason is not empty,
	// records it as LastError at now. A status and reason already recorded
	// are not written again, so LastErrorAt tells since when the error has
	// held. Moving to connected without a reason clears LastError. A disconnected account stays disconnected: asking
	// for any other status changes nothing, so that a failure noticed just
	// after an operator's disconnect cannot revive the account. It reports
	// whether the status changed and what it was before.
	SetStatus(ctx context.Context, email string, s Status, reason string, now time.Time) (changed bool, prev Status, err error)

	// SetHold records that Gmail refuses the account's sends until until,
	// for reason, at now. Only a later hold is written: Gmail moves its
	// time later while it keeps refusing, and an answer that arrives late
	// must not shorten the hold. A disconnected account is left untouched.
	// It reports whether it wrote.
	SetHold(ctx context.Context, email string, until time.Time, reason string, now time.Time) (bool, error)

	// AddUsage adds the counts in add to the account's Usage, one bucket
	// per hour, and removes the hours in drop (buckets that have left the
	// window, which the caller saw in its last read): a blind write, so
	// that counting costs no read. It fails with ErrNotFound when no
	// account is registered.
	AddUsage(ctx context.Context, email string, add []Bucket, drop []time.Time) error

	// MarkRefreshed records a successful token refresh made at at: it
	// advances LastRefreshAt and, unless an error was recorded after at,
	// clears LastError and moves reauth_required back to connected. A
	// disconnected account is left untouched.
	MarkRefreshed(ctx context.Context, email string, at time.Time) error
}

// MaxAliases bounds an account's send-as aliases: enough for the
// role addresses of one mailbox, and few enough to show on one page.
const MaxAliases = 30

// cleanAliases is SetAliases's input as stored: normalized, deduplicated
// and sorted, nil when empty.
func cleanAliases(email string, aliases []string) ([]string, error) {
	var out []string
	for _, a := range aliases {
		if err := checkEmail(a); err != nil {
			return nil, fmt.Errorf("alias: %w", err)
		}
		n := account.Normalize(a)
		if n == account.Normalize(email) {
			return nil, fmt.Errorf("alias %q is the account itself, which needs no alias", n)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) > MaxAliases {
		return nil, fmt.Errorf("%d aliases; the limit is %d", len(out), MaxAliases)
	}
	slices.Sort(out)
	return out, nil
}

// MaxDailyLimit bounds an operator's daily limit: above Workspace's own
// 2,000 Gmail refuses anyway, and a typo should not disable the guard.
const MaxDailyLimit = WorkspaceDailyMessages

func checkDailyLimit(limit int) error {
	if limit < 0 || limit > MaxDailyLimit {
		return fmt.Errorf("daily limit %d is outside 0..%d (0 restores the default)", limit, MaxDailyLimit)
	}
	return nil
}

// withDailyLimit is SetDailyLimit's logic, shared by both stores.
func withDailyLimit(cur *Account, limit int, now time.Time) (next *Account, write bool) {
	if cur.DailyLimit == limit {
		return cur, false
	}
	next = cur.clone()
	next.DailyLimit = limit
	if now.After(next.UpdatedAt) {
		next.UpdatedAt = now
	}
	return next, true
}

// withAliases is SetAliases's logic, shared by both stores.
func withAliases(cur *Account, aliases []string, now time.Time) (next *Account, write bool) {
	if slices.Equal(cur.Aliases, aliases) {
		return cur, false
	}
	next = cur.clone()
	next.Aliases = aliases
	if now.After(next.UpdatedAt) {
		next.UpdatedAt = now
	}
	return next, true
}

// Stats counts the reads and committed writes a store made.
type Stats = storeops.Stats

func checkEmail(email string) error {
	n := account.Normalize(email)
	if n == "" {
		return errors.New("empty email address")
	}
	if !strings.Contains(n, "@") {
		return fmt.Errorf("%q is not an email address", n)
	}
	return nil
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

// prepare validates a for Upsert and returns the copy to store.
func prepare(a *Account) (*Account, error) {
	if a == nil {
		return nil, errors.New("nil account")
	}
	if err := checkEmail(a.Email); err != nil {
		return nil, err
	}
	if !a.Status.valid() {
		return nil, fmt.Errorf("unknown status %q", a.Status)
	}
	if !a.Kind.valid() {
		return nil, fmt.Errorf("unknown kind %q", a.Kind)
	}
	c := a.clone()
	c.Email = account.Normalize(a.Email)
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	c.ConnectedAt = norm(c.ConnectedAt)
	c.TokenIssuedAt = norm(c.TokenIssuedAt)
	c.LastRefreshAt = norm(c.LastRefreshAt)
	c.LastErrorAt = norm(c.LastErrorAt)
	c.HoldUntil = norm(c.HoldUntil)
	c.HostedDomain = strings.ToLower(strings.TrimSpace(c.HostedDomain))
	c.DailyLimit = max(c.DailyLimit, 0)
	if len(c.Aliases) > 0 {
		aliases, err := cleanAliases(c.Email, c.Aliases)
		if err != nil {
			return nil, err
		}
		c.Aliases = aliases
	}
	c.UpdatedAt = nowOr(c.UpdatedAt)
	return c, nil
}

// withStatus is SetStatus's logic, shared by both stores: the account after
// the change and whether it must be written.
func withStatus(cur *Account, s Status, reason string, now time.Time) (next *Account, changed, write bool) {
	if cur.Status == StatusDisconnected && s != StatusDisconnected {
		return cur, false, false
	}
	changed = cur.Status != s
	// Repeating the error already recorded writes nothing: LastErrorAt then
	// says since when it has held, and the many sends that meet one dead
	// token at once do not all contend to write the same document.
	if !changed && (reason == "" || reason == cur.LastError) {
		return cur, false, false
	}
	next = cur.clone()
	next.Status = s
	next.UpdatedAt = now
	switch {
	case reason != "":
		next.LastError = reason
		next.LastErrorAt = now
	case s == StatusConnected:
		next.LastError = ""
		next.LastErrorAt = time.Time{}
	}
	return next, changed, true
}

// withHold is SetHold's logic, shared by both stores: the account after
// the hold and whether it must be written.
func withHold(cur *Account, until time.Time, reason string, now time.Time) (*Account, bool) {
	until = norm(until)
	if cur.Status == StatusDisconnected || !until.After(cur.HoldUntil) || !until.After(now) {
		return cur, false
	}
	next := cur.clone()
	next.HoldUntil = until
	next.HoldReason = reason
	if now.After(next.UpdatedAt) {
		next.UpdatedAt = now
	}
	return next, true
}

// refreshed is MarkRefreshed's logic, shared by both stores. UpdatedAt
// follows the caller's clock, as SetStatus's does, but never goes back.
func refreshed(cur *Account, at time.Time) (next *Account, write bool) {
	if cur.Status == StatusDisconnected {
		return cur, false
	}
	next = cur.clone()
	if at.After(next.LastRefreshAt) {
		next.LastRefreshAt = at
	}
	// A refresh that happened before the latest error says nothing about it.
	if !cur.LastErrorAt.After(at) {
		next.LastError = ""
		next.LastErrorAt = time.Time{}
		if next.Status == StatusReauthRequired {
			next.Status = StatusConnected
		}
	}
	if next.LastRefreshAt.Equal(cur.LastRefreshAt) && next.LastError == cur.LastError &&
		next.LastErrorAt.Equal(cur.LastErrorAt) && next.Status == cur.Status {
		return cur, false
	}
	if at.After(next.UpdatedAt) {
		next.UpdatedAt = at
	}
	return next, true
}
