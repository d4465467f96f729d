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
	LoginHint  string
	Operator   string
	Action     string
	Restricted string
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
			a.problem(w, r, notAllowed(hint, a.opts.restrictedText()), "")
			return
		}
	}
	if q.Get("start") == "" {
		respond.Render(w, http.StatusOK, "connect.html", connectPage{
			LoginHint:  hint,
			Operator:   a.opts.Operator,
			Action:     r.URL.Path,
			Restricted: a.opts.restrictedText(),
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

func notAllowed(email, restricted string) *oauth.Problem {
	return &oauth.Problem{Code: "account_not_allowed", Status: http.StatusForbidden,
		Title:   "This account may not be connected here",
		Message: email + " is not allowed by this relay's configuration. Only " + restricted + " can be connected.",
		Fix:     "Connect an allowed account, or ask the operator to add this address to ALLOWED_EMAILS (or its Workspace domain to ALLOWED_DOMAINS).",
	}
}

type resultPage struct {
	Connected  bool
	Title      string
	Account    string
	Scopes     []string
	Code       string
	Message    string
	Fix        string
	ConnectURL string
}

// writeProblem answers with p: as JSON to callers that ask for it, and
// otherwise as the result page, which also offers to start again.
func writeProblem(w http.ResponseWriter, r *http.Request, p *oauth.Problem, connectURL string) {
	if respond.WantsJSON(r) {
		respond.Error(w, r, p.Status, respond.APIError{Code: p.Code, Message: p.Message, Fix: p.Fix})
		return
	}
	respond.Render(w, p.Status, "result.html", resultPage{
		Title: p.Title, Code: p.Code, Message: p.Message, Fix: p.Fix, ConnectURL: connectURL,
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
