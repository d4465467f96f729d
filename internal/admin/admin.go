// Package admin is the operator's API: list accounts with their health,
// test a connection with a real refresh (and optionally a real send),
// disconnect a mailbox (revoke at Google, destroy the secret, mark it), and
// look up a message's send status by idempotency key. It answers JSON for
// tools, and for browsers an HTML table whose buttons are plain forms. When
// deployed it sits behind Cloud Run's IAM invoker check; it also verifies
// the caller's identity token itself, in case ingress is ever opened by
// mistake, refuses requests for another Host, and refuses state changes
// sent from another site (see guard.go).
package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/respond"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// Tokens is the token store.
type Tokens interface {
	health.Tokens
	Delete(ctx context.Context, email string) error
}

// Revoker revokes grants at Google.
type Revoker interface {
	Revoke(ctx context.Context, token string) error
}

// Ledger reads send records; id is a ledger.Scope's ID.
type Ledger interface {
	Get(ctx context.Context, id string) (*ledger.Record, error)
}

var (
	_ Tokens = (*tokenstore.Store)(nil)
	_ Ledger = (*ledger.Local)(nil)
	_ Ledger = (*ledger.Firestore)(nil)
)

// Options are the admin handler's dependencies.
type Options struct {
	Checker *health.Checker
	Tokens  Tokens
	Revoker Revoker
	Ledger  Ledger
	Gmail   *gmail.Client
	// Settings stores what an operator sets on an account (send-as
	// aliases, the daily limit); nil means Checker.Accounts, when it can
	// (both registry stores do, and every wiring passes the registry).
	Settings Settings
	// URL is the function's public URL (ADMIN_URL): requests for another
	// Host are refused, and identity tokens must name it as audience.
	// Empty skips the Host check.
	URL string
	// RequireAuth refuses requests without a bearer identity token that
	// Verifier accepts for URL.
	RequireAuth bool
	// Verifier checks identity tokens; nil means idtoken's validator on
	// Google's certificates.
	Verifier Verifier
	Now      func() time.Time
}

// Handler serves the admin API.
type Handler struct {
	opts    Options
	mux     *http.ServeMux
	guarded http.Handler
}

// New returns the admin handler.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{opts: o, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// Relative, by hand: http.Redirect would resolve it against the
		// path this handler sees, which lacks make dev's /admin prefix.
		w.Header().Set("Location", "accounts")
		w.WriteHeader(http.StatusFound)
	})
	h.mux.HandleFunc("GET /accounts", h.list)
	h.mux.HandleFunc("GET /accounts/{email}", h.get)
	h.mux.HandleFunc("POST /accounts/{email}/test", h.test)
	h.mux.HandleFunc("DELETE /accounts/{email}", h.disconnect)
	h.mux.HandleFunc("PATCH /accounts/{email}", h.patchAccount)
	// HTML forms can only POST: the page's Disconnect button comes here.
	h.mux.HandleFunc("POST /accounts/{email}/disconnect", h.disconnectForm)
	h.mux.HandleFunc("PUT /accounts/{email}/aliases", h.setAliases)
	// and the page's Save aliases form.
	h.mux.HandleFunc("POST /accounts/{email}/aliases", h.aliasesForm)
	// and the page's Set limit form (PATCH's daily_limit).
	h.mux.HandleFunc("POST /accounts/{email}/daily-limit", h.dailyLimitForm)
	h.mux.HandleFunc("GET /messages/{key...}", h.messageStatus)
	h.guarded = newGuard(o).wrap(http.HandlerFunc(h.route))
	return h
}

// ServeHTTP routes a request after the Host, identity and origin checks.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.guarded.ServeHTTP(w, r)
}

func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	if fallback, pattern := h.mux.Handler(r); pattern == "" {
		noRoute(w, r, fallback)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// noRoute answers a request no route serves. ServeMux's own 404 and 405 are
// plain text; the API answers them in its one error shape instead, and lets
// the mux's path-cleaning redirects through.
func noRoute(w http.ResponseWriter, r *http.Request, fallback http.Handler) {
	rec := &statusRecorder{header: http.Header{}}
	fallback.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusNotFound:
		respond.Error(w, r, http.StatusNotFound, respond.APIError{Code: "not_found",
			Message: r.URL.Path + " is not an admin API path.",
			Fix:     "Use /accounts, /accounts/{email}, /accounts/{email}/test, /accounts/{email}/aliases, /accounts/{email}/daily-limit or /messages/{idempotency_key}."})
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", rec.header.Get("Allow"))
		respond.Error(w, r, http.StatusMethodNotAllowed, respond.APIError{Code: "method_not_allowed",
			Message: r.Method + " is not allowed on " + r.URL.Path + ".",
			Fix:     "Use one of the methods in the Allow header: " + rec.header.Get("Allow") + "."})
	default:
		fallback.ServeHTTP(w, r)
	}
}

// statusRecorder keeps only the status and header a handler writes.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return len(b), nil
}

func (s *statusRecorder) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
}

func unavailable(w http.ResponseWriter, r *http.Request, what string, err error) {
	logging.FromContext(r.Context()).ErrorContext(r.Context(), what+" failed", "error", err)
	respond.Error(w, r, http.StatusServiceUnavailable, respond.APIError{Code: "unavailable",
		Message: what + " failed; the log has the cause.",
		Fix:     "Retry in a moment."})
}

// AccountView is one account as the API shows it.
type AccountView struct {
	Email  string `json:"email"`
	Status string `json:"status"`
	// Kind is oauth (its owner connected it) or delegated (the relay acts
	// as it through domain-wide delegation; no token is stored).
	Kind          string    `json:"kind"`
	Scopes        []string  `json:"scopes"`
	ConnectedAt   time.Time `json:"connected_at,omitzero"`
	LastRefreshAt time.Time `json:"last_refresh_at,omitzero"`
	TokenIssuedAt time.Time `json:"token_issued_at,omitzero"`
	// TokenAgeSeconds is how old the stored refresh token is.
	TokenAgeSeconds int64     `json:"token_age_seconds"`
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
	ReconnectURL    string    `json:"reconnect_url,omitempty"`
	// Aliases are the registered send-as aliases, which a request's from
	// may name besides Email.
	Aliases []string `json:"aliases"`
	// DailyLimit is the operator's message limit (PATCH daily_limit),
	// omitted while the kind's default applies.
	DailyLimit int `json:"daily_limit,omitempty"`
	// Limits are the limits in force over a rolling 24 hours.
	Limits Quota `json:"limits"`
	// UsedToday is what the mailbox sent in the rolling 24 hours.
	UsedToday Quota `json:"used_today"`
}

func (h *Handler) view(a *registry.Account) AccountView {
	v := AccountView{Email: a.Email, Status: string(a.Status), Scopes: a.Scopes, ConnectedAt: a.ConnectedAt,
		LastRefreshAt: a.LastRefreshAt, TokenIssuedAt: a.TokenIssuedAt, LastError: a.LastError, LastErrorAt: a.LastErrorAt,
		Aliases: a.Aliases, DailyLimit: a.DailyLimit}
	l := a.Limits()
	v.Limits = Quota{Messages: l.Messages, Recipients: l.Recipients}
	v.UsedToday.Messages, v.UsedToday.Recipients = a.Used(h.opts.Now())
	if v.Aliases == nil {
		v.Aliases = []string{}
	}
	v.Kind = string(registry.KindOAuth)
	if a.Delegated() {
		v.Kind = string(registry.KindDelegated)
	}
	if !a.TokenIssuedAt.IsZero() {
		v.TokenAgeSeconds = int64(h.opts.Now().Sub(a.TokenIssuedAt).Seconds())
	}
	if a.Status != registry.StatusConnected {
		v.ReconnectURL = h.opts.Checker.ReconnectURL(a.Email)
	}
	return v
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	accts, err := h.opts.Checker.Accounts.List(r.Context())
	if err != nil {
		unavailable(w, r, "listing accounts", err)
		return
	}
	views := make([]AccountView, 0, len(accts))
	for _, a := range accts {
		views = append(views, h.view(a))
	}
	if respond.WantsHTML(r) {
		respond.Render(w, http.StatusOK, "accounts.html", h.page(views))
		return
	}
	if wantsText(r) {
		writeTable(w, views)
		return
	}
	respond.JSON(w, http.StatusOK, map[string]any{"accounts": views})
}

func email(r *http.Request) string {
	e, err := url.PathUnescape(r.PathValue("email"))
	if err != nil {
		return ""
	}
	return account.Normalize(e)
}

func (h *Handler) account(w http.ResponseWriter, r *http.Request) (*registry.Account, bool) {
	e := email(r)
	a, err := h.opts.Checker.Accounts.Get(r.Context(), e)
	if errors.Is(err, registry.ErrNotFound) || e == "" {
		respond.Error(w, r, http.StatusNotFound, respond.APIError{Code: "unknown_account",
			Message: e + " has never been connected to this relay.",
			Fix:     "Send its owner the connect link."})
		return nil, false
	}
	if err != nil {
		unavailable(w, r, "reading the account", err)
		return nil, false
	}
	return a, true
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	if a, ok := h.account(w, r); ok {
		respond.JSON(w, http.StatusOK, h.view(a))
	}
}

// TestResult answers a connection test.
type TestResult struct {
	*health.Result
	TestMessage *SentView `json:"test_message,omitempty"`
}

// SentView is a test message Gmail accepted.
type SentView struct {
	GmailMessageID string `json:"gmail_message_id,omitempty"`
	Error          string `json:"error,omitempty"`
}

// test refreshes the account's token; with send=1 (query or form) it also
// sends a test message, to the mailbox itself or to the form's to.
func (h *Handler) test(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	send := r.FormValue("send") == "1"
	to := r.FormValue("to")
	a, ok := h.account(w, r)
	if !ok {
		return
	}
	if send && to != "" {
		if to = bareAddress(to); to == "" {
			respond.Error(w, r, http.StatusBadRequest, respond.APIError{Code: "invalid_request",
				Message: "The test message's recipient is not an email address.",
				Fix:     "Enter one bare address, such as you@example.com, or leave it empty to send to the mailbox itself."})
			return
		}
	}
	res, err := h.opts.Checker.Check(ctx, a.Email)
	if err != nil {
		unavailable(w, r, "the connection test", err)
		return
	}
	out := TestResult{Result: res}
	status := http.StatusOK
	switch res.Outcome {
	case health.OutcomeReauth:
		status = http.StatusConflict
	case health.OutcomeError:
		status = http.StatusBadGateway
	case health.OutcomeSkipped:
		status = http.StatusConflict
	}
	if send && res.AccessToken != nil {
		if to == "" {
			to = a.Email
		}
		out.TestMessage = h.sendTest(ctx, a.Email, to, res.AccessToken)
		if out.TestMessage.Error != "" {
			status = http.StatusBadGateway
		}
	}
	logging.FromContext(ctx).InfoContext(ctx, "connection tested", "account", a.Email, "outcome", res.Outcome)
	if respond.WantsHTML(r) {
		h.renderTest(w, status, out, send)
		return
	}
	respond.JSON(w, status, out)
}

// sendTest sends a short message from the mailbox to to with the token the
// check just obtained.
func (h *Handler) sendTest(ctx context.Context, account, to string, tok *oauth2.Token) *SentView {
	now := h.opts.Now()
	raw, err := message.Compose(&message.Request{
		Account: account, FromName: "gmail-relay", To: []string{to},
		Subject: "gmail-relay connection test",
		Text:    "This message confirms that gmail-relay can send from " + account + " (" + now.UTC().Format(time.RFC3339) + ").",
	}, message.ComposeOptions{Now: now})
	if err != nil {
		return &SentView{Error: "composing the test message failed: " + err.Error()}
	}
	box, err := h.opts.Gmail.Mailbox(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return &SentView{Error: err.Error()}
	}
	sent, err := gmail.Send(ctx, box, raw, "")
	if err != nil {
		return &SentView{Error: gmail.Classify(err, now).Error()}
	}
	return &SentView{GmailMessageID: sent.ID}
}

func (h *Handler) disconnect(w http.ResponseWriter, r *http.Request) {
	d, status, apiErr := h.doDisconnect(r.Context(), email(r))
	if apiErr != nil {
		respond.Error(w, r, status, *apiErr)
		return
	}
	respond.JSON(w, http.StatusOK, d)
}

// Disconnected answers a disconnection.
type Disconnected struct {
	Account         string          `json:"account"`
	Status          registry.Status `json:"status"`
	RevokedAtGoogle bool            `json:"revoked_at_google"`
	TokenDestroyed  bool            `json:"token_destroyed"`
	// Note says what the relay could not do itself: for a delegated
	// account, withdrawing the delegation is the Workspace admin's step.
	Note string `json:"note,omitempty"`
}

// delegatedNote is the disconnect's word on a delegated account.
const delegatedNote = "The relay no longer sends as this delegated user. It stored no token, so nothing was revoked at Google: " +
	"withdrawing the domain-wide delegation is the Workspace admin's step (Admin console → Security → Access and data control → API controls → Domain-wide delegation), " +
	"and it covers every user of the domain."

// doDisconnect revokes e's grant at Google, destroys its secret and marks
// it disconnected. It decides; callers write the answer as JSON or a page.
func (h *Handler) doDisconnect(ctx context.Context, e string) (*Disconnected, int, *respond.APIError) {
	log := logging.FromContext(ctx).With("account", e)
	fail := func(what string, err error) (*Disconnected, int, *respond.APIError) {
		log.ErrorContext(ctx, what+" failed", "error", err)
		return nil, http.StatusServiceUnavailable, &respond.APIError{Code: "unavailable",
			Message: what + " failed; the log has the cause.", Fix: "Retry in a moment."}
	}
	acct, err := h.opts.Checker.Accounts.Get(ctx, e)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return fail("reading the account", err)
	}
	tok, terr := h.opts.Tokens.Load(ctx, e)
	if terr != nil && !errors.Is(terr, tokenstore.ErrNotFound) && !errors.Is(terr, tokenstore.ErrCorrupt) {
		return fail("reading the token", terr)
	}
	if acct == nil && terr != nil {
		return nil, http.StatusNotFound, &respond.APIError{Code: "unknown_account",
			Message: e + " has never been connected to this relay.",
			Fix:     "Nothing to disconnect: check the address."}
	}
	revoked := false
	if terr == nil {
		// Revoke first: with the secret gone the grant could no longer be
		// withdrawn by the relay.
		if err := h.opts.Revoker.Revoke(ctx, tok.RefreshToken); err != nil {
			log.ErrorContext(ctx, "revoking at Google failed; deleting the token anyway", "error", err)
		} else {
			revoked = true
		}
		if err := h.opts.Tokens.Delete(ctx, e); err != nil {
			return fail("destroying the token secret", err)
		}
	}
	if acct != nil {
		changed, prev, err := h.opts.Checker.Accounts.SetStatus(ctx, e, registry.StatusDisconnected, "disconnected by the operator", h.opts.Now().UTC())
		if err != nil {
			return fail("recording the disconnection", err)
		}
		if changed {
			log.WarnContext(ctx, "account disconnected", "event", "account_status_changed", "status", registry.StatusDisconnected, "previous_status", prev)
		}
	}
	d := &Disconnected{Account: e, Status: registry.StatusDisconnected, RevokedAtGoogle: revoked, TokenDestroyed: terr == nil}
	if acct != nil && acct.Delegated() {
		d.Note = delegatedNote
	}
	return d, http.StatusOK, nil
}

func (h *Handler) messageStatus(w http.ResponseWriter, r *http.Request) {
	key, err := url.PathUnescape(r.PathValue("key"))
	if err != nil || key == "" {
		respond.Error(w, r, http.StatusBadRequest, respond.APIError{Code: "invalid_request",
			Message: "The idempotency key in the path is not valid.",
			Fix:     "URL-encode the key."})
		return
	}
	// Idempotency is per (app, account, key), so the key alone names no
	// record: the same key may be two sends from two mailboxes.
	q := r.URL.Query()
	acct := account.Normalize(q.Get("account"))
	if acct == "" {
		respond.Error(w, r, http.StatusBadRequest, respond.APIError{Code: "invalid_request",
			Message: "The account is missing: an idempotency key is unique only per sending account and app.",
			Fix:     "Add ?account=<sending address>, and &app=<app> for an app other than default: /messages/" + url.PathEscape(key) + "?account=alice@example.com"})
		return
	}
	scope := ledger.Scope{App: q.Get("app"), Account: acct, Key: key}
	rec, err := h.opts.Ledger.Get(r.Context(), scope.ID())
	if errors.Is(err, ledger.ErrNotFound) {
		respond.Error(w, r, http.StatusNotFound, respond.APIError{Code: "not_found",
			Message: "No send with this idempotency key from this account and app in the last 7 days.",
			Fix:     "Check the key, the account and the app (app defaults to \"default\"); records expire after 7 days."})
		return
	}
	if err != nil {
		unavailable(w, r, "reading the ledger", err)
		return
	}
	respond.JSON(w, http.StatusOK, rec)
}
