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
}

func (a *Account) clone() *Account {
	c := *a
	c.Scopes = slices.Clone(a.Scopes)
	return &c
}

// Store is the contract shared by Firestore and Local. Every method takes
// the address in any case and with surrounding spaces.
type Store interface {
	// Get returns the account registered under email.
	Get(ctx context.Context, email string) (*Account, error)

	// Upsert writes the whole account, replacing any earlier one: the
	// confirm step calls it on every connect and reconnect. The address is
	// stored normalized; a zero UpdatedAt means now.
	Upsert(ctx context.Context, a *Account) error

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

	// MarkRefreshed records a successful token refresh made at at: it
	// advances LastRefreshAt and, unless an error was recorded after at,
	// clears LastError and moves reauth_required back to connected. A
	// disconnected account is left untouched.
	MarkRefreshed(ctx context.Context, email string, at time.Time) error
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
	c := a.clone()
	c.Email = account.Normalize(a.Email)
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	c.ConnectedAt = norm(c.ConnectedAt)
	c.TokenIssuedAt = norm(c.TokenIssuedAt)
	c.LastRefreshAt = norm(c.LastRefreshAt)
	c.LastErrorAt = norm(c.LastErrorAt)
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
