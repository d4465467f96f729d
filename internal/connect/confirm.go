package connect

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/respond"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// Confirm is the OAuth redirect URI's handler.
type Confirm struct {
	opts    Options
	cookies cookies
}

// NewConfirm returns the confirm handler.
func NewConfirm(opts Options) *Confirm {
	opts.defaults()
	return &Confirm{opts: opts, cookies: cookieNames(opts.OAuth.RedirectURL())}
}

// outcome is what confirm decided; write turns it into a response.
type outcome struct {
	problem *oauth.Problem
	account string
	scopes  []string
	// hint is the address to prefill when starting again.
	hint string
	// usedFingerprint, when set, marks the state as used in the browser.
	usedFingerprint string
	clearState      bool
}

// ServeHTTP finishes the consent flow.
func (c *Confirm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r)
		return
	}
	c.write(w, r, c.decide(r))
}

func (c *Confirm) write(w http.ResponseWriter, r *http.Request, o outcome) {
	if o.clearState {
		c.cookies.set(w, c.cookies.state, "", -1)
	}
	if o.usedFingerprint != "" {
		c.cookies.set(w, c.cookies.used, o.usedFingerprint, int(oauth.StateTTL.Seconds()))
	}
	if o.problem != nil {
		writeProblem(w, r, o.problem, c.opts.startAgain(o.hint))
		return
	}
	if respond.WantsJSON(r) {
		respond.JSON(w, http.StatusOK, map[string]any{"account": o.account, "status": "connected", "scopes": o.scopes})
		return
	}
	respond.Render(w, http.StatusOK, "result.html", resultPage{
		Connected: true, Title: "Connected " + o.account, Account: o.account, Scopes: o.scopes,
	})
}

func (c *Confirm) cookie(r *http.Request, name string) string {
	if ck, err := r.Cookie(name); err == nil {
		return ck.Value
	}
	return ""
}

func (c *Confirm) decide(r *http.Request) outcome {
	ctx := r.Context()
	log := logging.FromContext(ctx)
	q := r.URL.Query()
	state := q.Get("state")

	if e := q.Get("error"); e != "" {
		p := oauth.ExplainAuthError(e)
		// Only a state this browser really started may end its flow: a
		// forged link carrying error= must not cancel a sign-in in progress.
		// Nor may it put words on the page: without that state the
		// description is anyone's text, and the page shows only the relay's.
		_, serr := c.opts.OAuth.Keys().Verify(state, c.cookie(r, c.cookies.state))
		if serr == nil {
			p.GoogleSays = googleText(q.Get("error_description"))
		}
		log.WarnContext(ctx, "consent refused by Google", "google_error", p.Code, "state_valid", serr == nil)
		return outcome{problem: p, clearState: serr == nil}
	}

	v, err := c.opts.OAuth.Keys().Verify(state, c.cookie(r, c.cookies.state))
	if err != nil {
		p := c.stateProblem(err, r, state)
		log.WarnContext(ctx, "state rejected", "reason", p.Code)
		return outcome{problem: p}
	}
	done := func(o outcome) outcome {
		o.clearState = true
		o.usedFingerprint = v.Fingerprint
		return o
	}
	code := q.Get("code")
	if code == "" {
		return done(outcome{problem: &oauth.Problem{Code: "invalid_request", Status: http.StatusBadRequest,
			Title:   "Google's answer is incomplete",
			Message: "The address has a state but no authorization code.",
			Fix:     "Start again from the connect link.",
		}})
	}

	grant, err := c.opts.OAuth.Exchange(ctx, code, v.Verifier)
	if err != nil {
		if errors.Is(err, oauth.ErrIdentity) && grant != nil {
			c.revoke(ctx, grant)
			log.WarnContext(ctx, "identity rejected", "error", err)
			return done(outcome{problem: &oauth.Problem{Code: "identity_invalid", Status: http.StatusBadRequest,
				Title:   "Google did not confirm who you are",
				Message: "Google's answer did not identify a verified account for this app, so nothing was saved and the access was withdrawn.",
				Fix:     "Start again and leave \"See your primary Google Account email address\" ticked.",
			}})
		}
		p := oauth.ExplainExchangeError(err)
		log.WarnContext(ctx, "code exchange failed", "reason", p.Code, "error", err)
		return done(outcome{problem: p})
	}
	hint := grant.Email
	log = log.With("account", grant.Email)

	refuse := func(p *oauth.Problem, why string) outcome {
		c.revoke(ctx, grant)
		log.WarnContext(ctx, "connection refused", "reason", p.Code, "detail", why)
		return done(outcome{problem: p, hint: hint})
	}
	if !grant.EmailVerified {
		return refuse(&oauth.Problem{Code: "email_unverified", Status: http.StatusForbidden,
			Title:   "This Google account's address is not verified",
			Message: grant.Email + " is not verified with Google, so the relay cannot be sure whose mailbox it is.",
			Fix:     "Verify the address in your Google Account, then connect again.",
		}, "email_verified is false")
	}
	if !c.opts.allowed(grant.Identity) {
		return refuse(notAllowed(grant.Email), "allow-list")
	}
	if extra := grant.ExtraScopes(); len(extra) > 0 {
		return refuse(&oauth.Problem{Code: "scope_excess", Status: http.StatusForbidden,
			Title:   "Google granted more access than the relay may hold",
			Message: "The relay asks only to send email and to know your address, but Google granted it more for " + grant.Email + " (the consent link was changed, or access granted earlier was added). Nothing was saved and the access was withdrawn.",
			Fix:     "Start again from the connect link itself, without changing it, and allow only what it asks for.",
		}, "extra scopes: "+strings.Join(extra, " "))
	}
	if !grant.HasScope(oauth.ScopeGmailSend) {
		return refuse(&oauth.Problem{Code: "scope_missing", Status: http.StatusForbidden,
			Title:   "Sending permission was not granted",
			Message: "The box \"Send email on your behalf\" was not ticked on Google's consent screen, so the relay could not send from " + grant.Email + ". Nothing was saved and the partial access was withdrawn.",
			Fix:     "Start again and leave \"Send email on your behalf\" ticked.",
		}, "gmail.send not granted")
	}
	if grant.RefreshToken == "" {
		return refuse(&oauth.Problem{Code: "no_refresh_token", Status: http.StatusBadGateway,
			Title:   "Google did not grant lasting access",
			Message: "Google returned no refresh token, so the relay could only send for an hour. Nothing was saved and the access was withdrawn.",
			Fix:     "Start again from the connect link; the relay asks Google for a fresh consent each time, which returns a refresh token.",
		}, "no refresh_token")
	}

	// Prove the token works before calling it valid: one real refresh.
	refreshToken := grant.RefreshToken
	tok, err := c.opts.OAuth.Refresh(ctx, refreshToken)
	if err != nil {
		return refuse(&oauth.Problem{Code: "token_check_failed", Status: http.StatusBadGateway,
			Title:   "The new access could not be verified",
			Message: "Google issued a token but refused to refresh it just after, so nothing was saved.",
			Fix:     "Connect again. If it keeps happening, check that the OAuth client is of type Web application and its secret is current.",
		}, err.Error())
	}
	if tok.RefreshToken != "" {
		// Google rotated the token: the one from the exchange is dead, so
		// a later revoke must use the new one or the grant stays live.
		refreshToken = tok.RefreshToken
		grant.RefreshToken = refreshToken
	}

	now := c.opts.Now().UTC()
	if p := c.save(ctx, grant, refreshToken, now); p != nil {
		c.revoke(ctx, grant)
		return done(outcome{problem: p, hint: hint})
	}
	log.InfoContext(ctx, "account connected", "event", "account_status_changed", "status", registry.StatusConnected, "scopes", grant.Scopes)
	return done(outcome{account: grant.Email, scopes: grant.Scopes})
}

// save stores the token, then the account. If either fails after brief
// retries, whatever was written is removed: a half-saved account would look
// connected and fail every send.
func (c *Confirm) save(ctx context.Context, g *oauth.Grant, refreshToken string, now time.Time) *oauth.Problem {
	log := logging.FromContext(ctx).With("account", g.Email)
	failed := &oauth.Problem{Code: "storage_failed", Status: http.StatusServiceUnavailable,
		Title:   "Nothing was saved",
		Message: "The relay could not store the connection for " + g.Email + ", so nothing was saved and the access was withdrawn.",
		Fix:     "Please connect again in a minute. If it keeps failing, tell the operator: the relay's log has the cause.",
	}
	tok := tokenstore.Token{RefreshToken: refreshToken, Scopes: g.Scopes, IssuedAt: now, ClientID: c.opts.OAuth.ClientID()}
	if err := retry(ctx, c.opts.SaveAttempts, c.opts.SaveBackoff, func() error { return c.opts.Tokens.Save(ctx, g.Email, tok) }); err != nil {
		log.ErrorContext(ctx, "saving the token failed", "error", err)
		return failed
	}
	acct := &registry.Account{
		Email: g.Email, Status: registry.StatusConnected, Scopes: g.Scopes,
		ConnectedAt: now, TokenIssuedAt: now, LastRefreshAt: now, UpdatedAt: now,
		// Google's hd claim from the exchange's ID token: it picks the
		// mailbox's daily limits (Workspace or consumer Gmail). Every
		// reconnect writes it afresh, as an account can change kind.
		HostedDomain: g.HostedDomain,
	}
	if err := retry(ctx, c.opts.SaveAttempts, c.opts.SaveBackoff, func() error { return c.opts.Accounts.Upsert(ctx, acct) }); err != nil {
		log.ErrorContext(ctx, "saving the account failed; removing the token", "error", err)
		if derr := c.opts.Tokens.Delete(ctx, g.Email); derr != nil {
			log.ErrorContext(ctx, "removing the token after a failed save failed too", "error", derr)
		}
		return failed
	}
	return nil
}

// revoke withdraws a grant the relay refuses to keep. Revoking either token
// revokes the whole grant.
func (c *Confirm) revoke(ctx context.Context, g *oauth.Grant) {
	tok := g.RefreshToken
	if tok == "" && g.Token != nil {
		tok = g.Token.AccessToken
	}
	if tok == "" {
		return
	}
	// Revoking must happen even if the browser went away mid-request.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.opts.OAuth.Revoke(ctx, tok); err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "revoking a refused grant failed", "account", g.Email, "error", err)
	}
}

func (c *Confirm) stateProblem(err error, r *http.Request, state string) *oauth.Problem {
	start := "Start again from the connect link."
	// A used state comes back without its cookie, or with the cookie of a
	// flow started since: either way it is a replay, not another browser.
	replay := errors.Is(err, oauth.ErrCookieMissing) || errors.Is(err, oauth.ErrCookieMismatch)
	if replay && state != "" && c.cookie(r, c.cookies.used) == oauth.Fingerprint(state) {
		return &oauth.Problem{Code: "state_used", Status: http.StatusBadRequest,
			Title:   "This sign-in was already completed",
			Message: "This confirmation link has been used once already; it cannot be used again.",
			Fix:     "If the mailbox shows as connected, nothing more is needed. Otherwise start again from the connect link.",
		}
	}
	switch {
	case errors.Is(err, oauth.ErrStateMissing):
		return &oauth.Problem{Code: "state_missing", Status: http.StatusBadRequest,
			Title:   "This page was opened directly",
			Message: "This address is where Google sends you back after you allow access; it was opened without the sign-in information it needs.",
			Fix:     start,
		}
	case errors.Is(err, oauth.ErrStateExpired):
		return &oauth.Problem{Code: "state_expired", Status: http.StatusBadRequest,
			Title:   "The sign-in took too long",
			Message: "More than 10 minutes passed between opening the connect link and coming back from Google.",
			Fix:     start,
		}
	case errors.Is(err, oauth.ErrCookieMissing):
		return &oauth.Problem{Code: "cookie_missing", Status: http.StatusBadRequest,
			Title:   "Your browser did not keep the sign-in cookie",
			Message: "The connection was started in another browser, or this browser blocks cookies, or the link was already used.",
			Fix:     "Open the connect link in this browser, with cookies allowed for this site, and finish the sign-in in the same browser.",
		}
	case errors.Is(err, oauth.ErrCookieMismatch):
		return &oauth.Problem{Code: "state_other_browser", Status: http.StatusBadRequest,
			Title:   "This sign-in belongs to another browser",
			Message: "The confirmation link was started in a different browser or tab session than this one. For your safety it is refused.",
			Fix:     "Open the connect link again in this browser and finish there.",
		}
	default:
		return &oauth.Problem{Code: "state_invalid", Status: http.StatusBadRequest,
			Title:   "This link has been altered",
			Message: "The sign-in information in the address is damaged or was not issued by this relay.",
			Fix:     start,
		}
	}
}

// googleText makes Google's error_description fit to show: one line of
// printable text, at most 300 characters.
func googleText(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }), " ")
	if r := []rune(s); len(r) > 300 {
		s = string(r[:300]) + "…"
	}
	return s
}
