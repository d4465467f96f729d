package sender

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/gmailrelay/gmailrelay/internal/delegation"
	"github.com/gmailrelay/gmailrelay/internal/events"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// Tokens reads and writes refresh tokens.
type Tokens interface {
	Load(ctx context.Context, email string) (tokenstore.Token, error)
	Save(ctx context.Context, email string, tok tokenstore.Token) error
}

// Refresher trades a refresh token for an access token.
type Refresher interface {
	Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error)
}

// Delegation mints access tokens for users of the domains delegated to
// the relay (domain-wide delegation); each TokenSource call mints afresh,
// for the mailbox's ReuseTokenSource to cache.
type Delegation interface {
	Covers(email string) bool
	TokenSource(email string) oauth2.TokenSource
}

// Events publishes account events.
type Events interface {
	Publish(ctx context.Context, e *events.Account) error
}

var (
	_ Tokens     = (*tokenstore.Store)(nil)
	_ Delegation = (*delegation.Delegator)(nil)
	_ Events     = (*events.Publisher)(nil)
)

// EventDelegationDenied is the account event of a delegated user whose
// domain's admin has not authorised (or has withdrawn) the relay's client
// ID for gmail.send.
const EventDelegationDenied = delegation.EventDenied

// refreshTimeout bounds one refresh; oauth2.TokenSource has no context.
const refreshTimeout = 30 * time.Second

// mailboxes keeps, per account, the refresh token read once from Secret
// Manager, a cached access token, and a Gmail service. Loads go through
// singleflight, and each account's oauth2.ReuseTokenSource holds its lock
// while refreshing, so a burst of sends on an expired token makes one
// Secret Manager read and one refresh.
type mailboxes struct {
	tokens   Tokens
	oauth    Refresher
	gmail    *gmail.Client
	deleg    Delegation // nil: no delegated domains
	accounts Accounts
	mu       sync.Mutex
	entries  map[string]*mailbox
	loads    singleflight.Group
	// denied holds delegated users whose last mint Google refused for
	// want of the admin's authorisation, guarded by mu: the alert and the
	// account event go out once per refusal, not once per send.
	denied map[string]bool
}

type mailbox struct {
	email string
	box   *gmail.Mailbox
	src   *refresher
	// renewed is the mailbox that replaced this one after a 401, guarded by
	// mailboxes.mu: every delivery that saw the 401 moves to the same one.
	renewed *mailbox
}

// refresher is the token source under ReuseTokenSource. It saves a rotated
// refresh token, because Google may invalidate the old one.
type refresher struct {
	m     *mailboxes
	email string
	// delegated mints through domain-wide delegation instead of refreshing
	// tok; register then asks for the account's registration after the
	// first mint, when the registry did not know it.
	delegated bool
	register  atomic.Bool
	mu        sync.Mutex
	tok       tokenstore.Token
	// refreshes counts successful refreshes, so that a send can tell
	// whether the access token Gmail refused was minted during it.
	refreshes atomic.Uint64
}

func (r *refresher) refreshToken() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tok.RefreshToken
}

func (r *refresher) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	defer cancel()
	if r.delegated {
		return r.mint(ctx)
	}
	r.mu.Lock()
	stored := r.tok
	r.mu.Unlock()
	t, err := r.m.oauth.Refresh(ctx, stored.RefreshToken)
	if err != nil {
		return nil, err
	}
	r.refreshes.Add(1)
	if t.RefreshToken != "" && t.RefreshToken != stored.RefreshToken {
		rotated := stored
		rotated.RefreshToken = t.RefreshToken
		rotated.IssuedAt = time.Now().UTC()
		if err := r.m.tokens.Save(ctx, r.email, rotated); err != nil {
			// The old token may still work; keep using the new one in this
			// instance and say loudly that storage is behind.
			logging.FromContext(ctx).ErrorContext(ctx, "saving a rotated refresh token failed", "account", r.email, "error", err)
		}
		r.mu.Lock()
		r.tok = rotated
		r.mu.Unlock()
	}
	return t, nil
}

// mint is a delegated mailbox's token: one signJwt call and one token
// exchange, about once an hour per user and instance, since the mailbox's
// ReuseTokenSource caches the result.
func (r *refresher) mint(ctx context.Context) (*oauth2.Token, error) {
	t, err := r.m.deleg.TokenSource(r.email).Token()
	if err != nil {
		return nil, err
	}
	r.refreshes.Add(1)
	r.m.mu.Lock()
	delete(r.m.denied, r.email)
	r.m.mu.Unlock()
	if r.register.CompareAndSwap(true, false) {
		// First use through delegation: the registry learns the account,
		// so admin lists it and the health check mints for it. Create
		// never overwrites a connect, nor revives a disconnected account.
		now := time.Now().UTC()
		err := r.m.accounts.Create(ctx, &registry.Account{Email: r.email, Status: registry.StatusConnected,
			Kind: registry.KindDelegated, Scopes: []string{delegation.Scope}, ConnectedAt: now, LastRefreshAt: now, UpdatedAt: now})
		switch {
		case err == nil:
			logging.FromContext(ctx).InfoContext(ctx, "delegated account registered on first use",
				"event", "account_registered", "account", r.email, "kind", registry.KindDelegated)
		case !errors.Is(err, registry.ErrExists):
			// The send may go on; the next mint tries again.
			r.register.Store(true)
			logging.FromContext(ctx).WarnContext(ctx, "registering a delegated account failed", "account", r.email, "error", err)
		}
	}
	return t, nil
}

func newMailboxes(tokens Tokens, oauth Refresher, g *gmail.Client, deleg Delegation, accounts Accounts) *mailboxes {
	return &mailboxes{tokens: tokens, oauth: oauth, gmail: g, deleg: deleg, accounts: accounts,
		entries: map[string]*mailbox{}, denied: map[string]bool{}}
}

// delegates reports whether email is in a delegated domain.
func (m *mailboxes) delegates(email string) bool { return m.deleg != nil && m.deleg.Covers(email) }

// getFor returns the mailbox that sends as email the way its registration
// says: through delegation, or through the stored refresh token. register
// asks a delegated mailbox to register the account after its first mint.
func (m *mailboxes) getFor(ctx context.Context, email string, delegated, register bool) (*mailbox, error) {
	if !delegated {
		return m.get(ctx, email)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mb := m.entries[email]; mb != nil && mb.src.delegated {
		if register {
			mb.src.register.Store(true)
		}
		return mb, nil
	}
	mb, err := m.build(ctx, email, tokenstore.Token{}, true)
	if err != nil {
		return nil, err
	}
	mb.src.register.Store(register)
	m.entries[email] = mb
	return mb, nil
}

// get returns the account's mailbox, reading its refresh token from Secret
// Manager on first use only.
func (m *mailboxes) get(ctx context.Context, email string) (*mailbox, error) {
	m.mu.Lock()
	mb := m.entries[email]
	m.mu.Unlock()
	if mb != nil && !mb.src.delegated {
		return mb, nil
	}
	v, err, _ := m.loads.Do(email, func() (any, error) {
		m.mu.Lock()
		if mb := m.entries[email]; mb != nil && !mb.src.delegated {
			m.mu.Unlock()
			return mb, nil
		}
		m.mu.Unlock()
		// Detached from one caller's cancellation: others share this load.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
		defer cancel()
		tok, err := m.tokens.Load(lctx, email)
		if err != nil {
			return nil, err
		}
		mb, err := m.build(lctx, email, tok, false)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.entries[email] = mb
		m.mu.Unlock()
		return mb, nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading the refresh token of %s: %w", email, err)
	}
	return v.(*mailbox), nil
}

func (m *mailboxes) build(ctx context.Context, email string, tok tokenstore.Token, delegated bool) (*mailbox, error) {
	src := &refresher{m: m, email: email, tok: tok, delegated: delegated}
	box, err := m.gmail.Mailbox(ctx, oauth2.ReuseTokenSource(nil, src))
	if err != nil {
		return nil, err
	}
	return &mailbox{email: email, box: box, src: src}, nil
}

// renew drops a cached access token that Gmail refused (a 401), keeping the
// refresh token, so the next send refreshes once. Concurrent deliveries that
// all saw the 401 on the same mailbox share one replacement, and so one
// refresh; each building its own would refresh once per delivery.
func (m *mailboxes) renew(ctx context.Context, old *mailbox) (*mailbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old.renewed != nil {
		return old.renewed, nil
	}
	old.src.mu.Lock()
	tok := old.src.tok
	old.src.mu.Unlock()
	mb, err := m.build(ctx, old.email, tok, old.src.delegated)
	if err != nil {
		return nil, err
	}
	mb.src.register.Store(old.src.register.Load())
	old.renewed = mb
	if m.entries[old.email] == old {
		m.entries[old.email] = mb
	}
	return mb, nil
}

// forget drops the account entirely, so the next use re-reads Secret
// Manager: after an invalid_grant a reconnect may have stored a new token.
func (m *mailboxes) forget(old *mailbox) {
	m.mu.Lock()
	if m.entries[old.email] == old {
		delete(m.entries, old.email)
	}
	m.mu.Unlock()
}

// route decides, from the registry's answer, whether the relay may send as
// email and how: through the stored refresh token, or through domain-wide
// delegation (an account of a delegated domain that no one connected, or
// one registered as delegated). A Failure ends the delivery.
func (s *Sender) route(email string, acct *registry.Account, err error) (delegated bool, f *gmail.Failure, cause error) {
	switch {
	case errors.Is(err, registry.ErrNotFound) && s.boxes.delegates(email):
		return true, nil, nil
	case errors.Is(err, registry.ErrNotFound):
		return false, &gmail.Failure{Code: gmail.CodeUnknownAccount,
			Message: email + " is not connected to this relay; its owner must connect it first"}, nil
	case err != nil:
		return false, &gmail.Failure{Code: gmail.CodeInternal, Retryable: true, Message: "account registry unavailable"}, err
	case acct.Status == registry.StatusDisconnected && acct.Delegated():
		return false, &gmail.Failure{Code: gmail.CodeUnknownAccount,
			Message: email + " was disconnected by the operator, so the relay no longer sends as this delegated user; " +
				"withdrawing the domain-wide delegation itself is the Workspace admin's step (Admin console → Security → Access and data control → API controls → Domain-wide delegation)"}, nil
	case acct.Status == registry.StatusDisconnected:
		return false, &gmail.Failure{Code: gmail.CodeUnknownAccount,
			Message: email + " was disconnected; its owner must connect it again"}, nil
	case acct.Delegated() && !s.boxes.delegates(email):
		return false, &gmail.Failure{Code: gmail.CodeUnknownAccount,
			Message: email + " was used through domain-wide delegation, but its domain is no longer in DELEGATED_DOMAINS; its owner can connect it instead"}, nil
	case acct.Delegated():
		return true, nil, nil
	case acct.Status == registry.StatusReauthRequired:
		return false, &gmail.Failure{Code: gmail.CodeReauthRequired,
			Message: email + " needs to be reconnected: " + acct.LastError}, nil
	}
	return false, nil, nil
}

// classify is gmail.Classify, plus what a delegated mint's failure means:
// the admin's missing authorisation is permanent, raises an alert and an
// account event (once until a mint succeeds again); an unknown or
// suspended user is unknown_account.
func (s *Sender) classify(ctx context.Context, email string, err error) *gmail.Failure {
	var de *delegation.Error
	if !errors.As(err, &de) {
		return gmail.Classify(err, s.opts.Now())
	}
	f := &gmail.Failure{Message: de.Message(), Retryable: de.Retryable()}
	log := logging.FromContext(ctx)
	switch de.Kind {
	case delegation.KindNotAuthorized:
		f.Code = gmail.CodeDomainPolicy
		s.boxes.mu.Lock()
		first := !s.boxes.denied[email]
		s.boxes.denied[email] = true
		s.boxes.mu.Unlock()
		if first {
			log.ErrorContext(ctx, "domain-wide delegation refused: the Workspace admin must authorise the relay's client ID",
				"alert", EventDelegationDenied, "event", EventDelegationDenied, "google_error", de.Code, "fix", de.Fix())
			s.publishAccountEvent(ctx, &events.Account{Type: EventDelegationDenied, Account: email,
				Status: string(registry.StatusConnected), Reason: f.Message, At: s.opts.Now().UTC()})
		}
	case delegation.KindUnknownUser:
		f.Code = gmail.CodeUnknownAccount
	case delegation.KindSignerDenied:
		f.Code = gmail.CodeInternal
		log.ErrorContext(ctx, "the relay may not sign as the delegate service account", "alert", "delegation_signer_denied", "fix", de.Fix())
	case delegation.KindTransient:
		f.Code = gmail.CodeGmailError
	default:
		f.Code = gmail.CodeInternal
		log.ErrorContext(ctx, "domain-wide delegation failed", "google_error", de.Code, "status", de.Status, "detail", de.Description)
	}
	return f
}

func (s *Sender) publishAccountEvent(ctx context.Context, e *events.Account) {
	if s.opts.Events == nil {
		return
	}
	if err := s.opts.Events.Publish(ctx, e); err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "publishing an account event failed", "type", e.Type, "error", err)
	}
}
