package sender

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/logging"
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

var _ Tokens = (*tokenstore.Store)(nil)

// refreshTimeout bounds one refresh; oauth2.TokenSource has no context.
const refreshTimeout = 30 * time.Second

// mailboxes keeps, per account, the refresh token read once from Secret
// Manager, a cached access token, and a Gmail service. Loads go through
// singleflight, and each account's oauth2.ReuseTokenSource holds its lock
// while refreshing, so a burst of sends on an expired token makes one
// Secret Manager read and one refresh.
type mailboxes struct {
	tokens  Tokens
	oauth   Refresher
	gmail   *gmail.Client
	mu      sync.Mutex
	entries map[string]*mailbox
	loads   singleflight.Group
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
	mu    sync.Mutex
	tok   tokenstore.Token
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

func newMailboxes(tokens Tokens, oauth Refresher, g *gmail.Client) *mailboxes {
	return &mailboxes{tokens: tokens, oauth: oauth, gmail: g, entries: map[string]*mailbox{}}
}

// get returns the account's mailbox, reading its refresh token from Secret
// Manager on first use only.
func (m *mailboxes) get(ctx context.Context, email string) (*mailbox, error) {
	m.mu.Lock()
	mb := m.entries[email]
	m.mu.Unlock()
	if mb != nil {
		return mb, nil
	}
	v, err, _ := m.loads.Do(email, func() (any, error) {
		m.mu.Lock()
		if mb := m.entries[email]; mb != nil {
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
		mb, err := m.build(lctx, email, tok)
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

func (m *mailboxes) build(ctx context.Context, email string, tok tokenstore.Token) (*mailbox, error) {
	src := &refresher{m: m, email: email, tok: tok}
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
	mb, err := m.build(ctx, old.email, tok)
	if err != nil {
		return nil, err
	}
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
