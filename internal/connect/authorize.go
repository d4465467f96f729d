package connect

import (
	"net/http"

	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/respond"
)

// Authorize serves the connect page and starts the consent flow.
type Authorize struct {
	opts    Options
	cookies cookies
}

// NewAuthorize returns the authorize handler.
func NewAuthorize(opts Options) *Authorize {
	opts.defaults()
	return &Authorize{opts: opts, cookies: cookieNames(opts.OAuth.RedirectURL())}
}

type connectPage struct {
	LoginHint string
	Operator  string
	// Restricted says that an allow-list applies, without listing it:
	// visitors need not learn which addresses the relay accepts.
	Restricted bool
}

// ServeHTTP shows the connect page, or with ?start=1 sets the state cookie
// and redirects to Google's consent screen.
func (a *Authorize) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r)
		return
	}
	q := r.URL.Query()
	hint := ""
	if raw := q.Get("login_hint"); raw != "" {
		if hint = bareAddress(raw); hint == "" {
			a.problem(w, r, &oauth.Problem{Code: "invalid_login_hint", Status: http.StatusBadRequest,
				Title:   "This connect link is malformed",
				Message: "The login_hint in the link is not an email address.",
				Fix:     "Ask for a new connect link, or open the connect page without login_hint.",
			}, "")
			return
		}
		if !a.opts.hintAllowed(hint) {
			a.problem(w, r, notAllowed(hint), "")
			return
		}
	}
	if q.Get("start") == "" {
		// The page's form has no action: it submits to the page's own
		// address, so no request path (such as //evil.example, which a
		// browser would read as another host) can send it elsewhere.
		respond.Render(w, http.StatusOK, "connect.html", connectPage{
			LoginHint:  hint,
			Operator:   a.opts.Operator,
			Restricted: a.opts.restricted(),
		})
		return
	}
	iss, err := a.opts.OAuth.Keys().Issue()
	if err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "issuing state failed", "error", err)
		a.problem(w, r, internalProblem(), hint)
		return
	}
	a.cookies.set(w, a.cookies.state, iss.Cookie, int(oauth.StateTTL.Seconds()))
	logging.FromContext(ctx).InfoContext(ctx, "consent started", "login_hint", hint)
	http.Redirect(w, r, a.opts.OAuth.ConsentURL(iss, hint, a.opts.hostedDomain()), http.StatusFound)
}

func (a *Authorize) problem(w http.ResponseWriter, r *http.Request, p *oauth.Problem, hint string) {
	writeProblem(w, r, p, a.opts.startAgain(hint))
}

func internalProblem() *oauth.Problem {
	return &oauth.Problem{Code: "internal", Status: http.StatusInternalServerError,
		Title:   "Something went wrong on our side",
		Message: "The relay hit an internal error. Nothing was saved.",
		Fix:     "Try again in a minute. If it keeps happening, give the operator the time of this attempt.",
	}
}

// notAllowed does not list the allow-list: which addresses may connect is
// the operator's business, not every visitor's.
func notAllowed(email string) *oauth.Problem {
	return &oauth.Problem{Code: "account_not_allowed", Status: http.StatusForbidden,
		Title:   "This account may not be connected here",
		Message: email + " cannot be connected: this relay accepts only its organisation's accounts.",
		Fix:     "Connect your organisation's account. If this one should be allowed, ask the relay's operator.",
	}
}

type resultPage struct {
	Connected  bool
	Title      string
	Account    string
	Scopes     []string
	Code       string
	Message    string
	GoogleSays string
	Fix        string
	ConnectURL string
}

// writeProblem answers with p: as JSON to callers that ask for it, and
// otherwise as the result page, which also offers to start again.
func writeProblem(w http.ResponseWriter, r *http.Request, p *oauth.Problem, connectURL string) {
	if respond.WantsJSON(r) {
		msg := p.Message
		if p.GoogleSays != "" {
			msg += " Google's description: " + p.GoogleSays
		}
		respond.Error(w, r, p.Status, respond.APIError{Code: p.Code, Message: msg, Fix: p.Fix})
		return
	}
	respond.Render(w, p.Status, "result.html", resultPage{
		Title: p.Title, Code: p.Code, Message: p.Message, GoogleSays: p.GoogleSays, Fix: p.Fix, ConnectURL: connectURL,
	})
}

// methodNotAllowed refuses anything but GET and HEAD: both handlers are
// links a browser follows.
func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	respond.Error(w, r, http.StatusMethodNotAllowed, respond.APIError{Code: "method_not_allowed",
		Message: r.Method + " is not allowed here: this address is a link to open in a browser.",
		Fix:     "Open it with GET, as a browser does."})
}
