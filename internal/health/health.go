// Package health checks that a connected mailbox's token really works, by
// refreshing it at Google: the one check that catches a token revoked by its
// owner, killed by a password change, expired after 7 days of Testing status
// or 6 months idle. Each check moves the account to the status it deserves
// and says so on the account-events topic; checking regularly also keeps
// tokens from dying of idleness.
package health

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailrelay/gmailrelay/internal/delegation"
	"github.com/gmailrelay/gmailrelay/internal/events"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// TestingTokenLifetime is how long Google keeps refresh tokens of an OAuth
// app in Testing status.
const TestingTokenLifetime = 7 * 24 * time.Hour

// expiryWarning is how early the healthcheck warns of that expiry.
const expiryWarning = 2 * 24 * time.Hour

// Tokens reads and writes refresh tokens.
type Tokens interface {
	Load(ctx context.Context, email string) (tokenstore.Token, error)
	Save(ctx context.Context, email string, tok tokenstore.Token) error
}

// Accounts is the registry.
type Accounts interface {
	Get(ctx context.Context, email string) (*registry.Account, error)
	List(ctx context.Context) ([]*registry.Account, error)
	SetStatus(ctx context.Context, email string, s registry.Status, reason string, now time.Time) (bool, registry.Status, error)
	MarkRefreshed(ctx context.Context, email string, at time.Time) error
}

// Refresher refreshes tokens at Google.
type Refresher interface {
	Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error)
}

// Minter mints access tokens for delegated accounts.
type Minter interface {
	Token(ctx context.Context, user string) (*oauth2.Token, error)
}

// Events publishes account events.
type Events interface {
	Publish(ctx context.Context, e *events.Account) error
}

var (
	_ Tokens    = (*tokenstore.Store)(nil)
	_ Accounts  = (*registry.Local)(nil)
	_ Accounts  = (*registry.Firestore)(nil)
	_ Refresher = (*oauth.Client)(nil)
	_ Events    = (*events.Publisher)(nil)
	_ Minter    = (*delegation.Delegator)(nil)
)

// Checker checks accounts.
type Checker struct {
	Tokens   Tokens
	Accounts Accounts
	OAuth    Refresher
	// Events may be nil (the admin function reports in its answer).
	Events     Events
	ConnectURL string
	// Testing says the OAuth app is in Testing status.
	Testing bool
	Now     func() time.Time
	// Parallel bounds concurrent checks in CheckAll.
	Parallel int
	// Delegation mints for delegated accounts (nil: this deployment
	// delegates no domain).
	Delegation Minter
}

// Outcome of one check.
type Outcome string

// Outcomes.
const (
	OutcomeValid    Outcome = "valid"
	OutcomeReauth   Outcome = "reauth_required"
	OutcomeError    Outcome = "error"
	OutcomeSkipped  Outcome = "skipped"
	OutcomeExpiring Outcome = "expiring"
)

// Result is one account's check.
type Result struct {
	Account      string    `json:"account"`
	Outcome      Outcome   `json:"outcome"`
	Status       string    `json:"status"`
	Message      string    `json:"message,omitempty"`
	ReconnectURL string    `json:"reconnect_url,omitempty"`
	CheckedAt    time.Time `json:"checked_at"`
	// AccessToken is the fresh token, for a test send; never serialised.
	AccessToken *oauth2.Token `json:"-"`
	// ExpiresAt is when Google will expire the token (Testing status).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// ReconnectURL is the connect link pre-filled with the account.
func (c *Checker) ReconnectURL(email string) string {
	if c.ConnectURL == "" {
		return ""
	}
	return c.ConnectURL + "?" + url.Values{"login_hint": {email}}.Encode()
}

// Check refreshes email's token once and records what it learns.
func (c *Checker) Check(ctx context.Context, email string) (*Result, error) {
	log := logging.FromContext(ctx).With("account", email)
	acct, err := c.Accounts.Get(ctx, email)
	if err != nil {
		return nil, fmt.Errorf("health.Check: %w", err)
	}
	now := c.now().UTC()
	res := &Result{Account: acct.Email, Status: string(acct.Status), CheckedAt: now}
	if acct.Status == registry.StatusDisconnected {
		res.Outcome, res.Message = OutcomeSkipped, "disconnected: the operator removed this mailbox"
		return res, nil
	}
	if acct.Delegated() {
		return c.checkDelegated(ctx, acct, res), nil
	}
	tok, err := c.Tokens.Load(ctx, acct.Email)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return c.reauth(ctx, acct, res, "no refresh token is stored for this account"), nil
	}
	if err != nil {
		res.Outcome, res.Message = OutcomeError, "reading the token failed: "+err.Error()
		log.ErrorContext(ctx, "health check could not read the token", "error", err)
		return res, nil
	}
	fresh, err := c.OAuth.Refresh(ctx, tok.RefreshToken)
	if oauth.IsInvalidGrant(err) {
		var re *oauth2.RetrieveError
		errors.As(err, &re)
		reason := "Google refused the refresh token: " + re.ErrorDescription
		if c.Testing {
			reason += " (the OAuth app is in Testing status, where Google expires tokens after 7 days)"
		}
		return c.reauth(ctx, acct, res, reason), nil
	}
	if err != nil {
		res.Outcome, res.Message = OutcomeError, "refreshing at Google failed: "+err.Error()
		log.WarnContext(ctx, "health check could not refresh; will retry next run", "error", err)
		return res, nil
	}
	if fresh.RefreshToken != "" && fresh.RefreshToken != tok.RefreshToken {
		rotated := tok
		rotated.RefreshToken = fresh.RefreshToken
		rotated.IssuedAt = now
		if err := c.Tokens.Save(ctx, acct.Email, rotated); err != nil {
			log.ErrorContext(ctx, "saving a rotated refresh token failed", "error", err)
		}
	}
	if acct.Status == registry.StatusReauthRequired {
		// A token that works again (a reconnect stored a new one while the
		// registry still said otherwise) makes the account usable again.
		// This runs before MarkRefreshed, which would make the same change
		// silently.
		c.transition(ctx, acct, registry.StatusConnected, "", res)
	}
	if err := c.Accounts.MarkRefreshed(ctx, acct.Email, now); err != nil {
		log.WarnContext(ctx, "recording the refresh failed", "error", err)
	}
	res.Outcome, res.Status, res.AccessToken = OutcomeValid, string(registry.StatusConnected), fresh
	if c.Testing && !tok.IssuedAt.IsZero() {
		res.ExpiresAt = tok.IssuedAt.Add(TestingTokenLifetime)
		if res.ExpiresAt.Sub(now) < expiryWarning {
			res.Outcome = OutcomeExpiring
			res.ReconnectURL = c.ReconnectURL(acct.Email)
			res.Message = fmt.Sprintf("the OAuth app is in Testing status: Google will expire this token at %s; reconnect before then, or publish the app", res.ExpiresAt.Format(time.RFC3339))
			log.WarnContext(ctx, "token expires soon", "event", "token_expiring", "expires_at", res.ExpiresAt)
			c.publish(ctx, &events.Account{Type: events.TypeTokenExpiring, Account: acct.Email, Status: string(registry.StatusConnected),
				Reason: res.Message, ReconnectURL: res.ReconnectURL, ExpiresAt: res.ExpiresAt, At: now})
		}
	}
	return res, nil
}

func (c *Checker) reauth(ctx context.Context, acct *registry.Account, res *Result, reason string) *Result {
	c.transition(ctx, acct, registry.StatusReauthRequired, reason, res)
	res.Outcome, res.Status, res.Message = OutcomeReauth, string(registry.StatusReauthRequired), reason
	res.ReconnectURL = c.ReconnectURL(acct.Email)
	return res
}

// transition sets the status and, when it changed, logs the event the
// alert policy counts and publishes it.
func (c *Checker) transition(ctx context.Context, acct *registry.Account, to registry.Status, reason string, res *Result) {
	log := logging.FromContext(ctx).With("account", acct.Email)
	changed, prev, err := c.Accounts.SetStatus(ctx, acct.Email, to, reason, c.now().UTC())
	if err != nil {
		log.ErrorContext(ctx, "recording the account status failed", "status", to, "error", err)
		return
	}
	if !changed {
		return
	}
	log.WarnContext(ctx, "account status changed", "event", "account_status_changed", "status", to, "previous_status", prev, "reason", reason)
	c.publish(ctx, &events.Account{Type: events.TypeStatusChanged, Account: acct.Email, Status: string(to),
		PreviousStatus: string(prev), Reason: reason, ReconnectURL: c.ReconnectURL(acct.Email), At: c.now().UTC()})
}

func (c *Checker) publish(ctx context.Context, e *events.Account) {
	if c.Events == nil {
		return
	}
	if err := c.Events.Publish(ctx, e); err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "publishing an account event failed", "type", e.Type, "account", e.Account, "error", err)
	}
}

// Summary counts a CheckAll run.
type Summary struct {
	Checked  int       `json:"checked"`
	Valid    int       `json:"valid"`
	Expiring int       `json:"expiring"`
	Reauth   int       `json:"reauth_required"`
	Errors   int       `json:"errors"`
	Results  []*Result `json:"results"`
}

// CheckAll checks every account that is not disconnected. Accounts already
// in reauth_required are checked too, so one that was reconnected is
// noticed.
func (c *Checker) CheckAll(ctx context.Context) (*Summary, error) {
	accts, err := c.Accounts.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("health.CheckAll: %w", err)
	}
	par := c.Parallel
	if par <= 0 {
		par = 8
	}
	sum := &Summary{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for _, a := range accts {
		if a.Status == registry.StatusDisconnected {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(email string) {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := c.Check(ctx, email)
			if err != nil {
				r = &Result{Account: email, Outcome: OutcomeError, Message: err.Error(), CheckedAt: c.now().UTC()}
			}
			mu.Lock()
			defer mu.Unlock()
			sum.Checked++
			switch r.Outcome {
			case OutcomeValid:
				sum.Valid++
			case OutcomeExpiring:
				sum.Expiring++
			case OutcomeReauth:
				sum.Reauth++
			case OutcomeError:
				sum.Errors++
			}
			sum.Results = append(sum.Results, r)
		}(a.Email)
	}
	wg.Wait()
	return sum, nil
}

// Run is the scheduled health check: it checks every account and logs the
// summary. Only a registry that cannot be listed is an error, which asks
// Pub/Sub to redeliver the trigger. Failures of single accounts are not:
// the next scheduled run checks them again, while a redelivery would check
// every account once more.
func (c *Checker) Run(ctx context.Context) (*Summary, error) {
	sum, err := c.CheckAll(ctx)
	if err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "health check could not list the accounts; the trigger will be redelivered", "error", err)
		return nil, fmt.Errorf("health.Run: %w", err)
	}
	logging.FromContext(ctx).InfoContext(ctx, "health check finished", "checked", sum.Checked, "valid", sum.Valid,
		"expiring", sum.Expiring, "reauth_required", sum.Reauth, "errors", sum.Errors)
	return sum, nil
}

// checkDelegated mints a token for a delegated account, the one check that
// proves the Workspace admin's authorisation still holds. There is no
// refresh token: a refusal is the admin's to fix (or the user is gone),
// so the account keeps its status and the check records and reports why.
func (c *Checker) checkDelegated(ctx context.Context, acct *registry.Account, res *Result) *Result {
	log := logging.FromContext(ctx).With("account", acct.Email)
	if c.Delegation == nil {
		res.Outcome, res.Message = OutcomeError, "this account is delegated, but this function has no DELEGATED_DOMAINS and DELEGATE_SERVICE_ACCOUNT"
		return res
	}
	now := c.now().UTC()
	tok, err := c.Delegation.Token(ctx, acct.Email)
	if err == nil {
		if err := c.Accounts.MarkRefreshed(ctx, acct.Email, now); err != nil {
			log.WarnContext(ctx, "recording the mint failed", "error", err)
		}
		res.Outcome, res.Status, res.AccessToken = OutcomeValid, string(registry.StatusConnected), tok
		return res
	}
	res.Outcome, res.Message = OutcomeError, err.Error()
	var de *delegation.Error
	if !errors.As(err, &de) || de.Retryable() {
		log.WarnContext(ctx, "health check could not mint a delegated token; will retry next run", "error", err)
		return res
	}
	res.Message = de.Message()
	if de.Kind == delegation.KindNotAuthorized {
		log.ErrorContext(ctx, "domain-wide delegation refused: the Workspace admin must authorise the relay's client ID",
			"alert", delegation.EventDenied, "event", delegation.EventDenied, "google_error", de.Code)
	}
	if res.Message == acct.LastError {
		// Already recorded and announced by an earlier run.
		return res
	}
	if _, _, err := c.Accounts.SetStatus(ctx, acct.Email, acct.Status, res.Message, now); err != nil {
		log.ErrorContext(ctx, "recording the delegation failure failed", "error", err)
	}
	if de.Kind == delegation.KindNotAuthorized {
		c.publish(ctx, &events.Account{Type: delegation.EventDenied, Account: acct.Email, Status: string(acct.Status), Reason: res.Message, At: now})
	}
	return res
}
