package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/respond"
)

// Verifier checks an ID token's Google signature, expiry and audience.
// idtoken's Validator is the one implementation; tests point its HTTP
// client at the sandbox's JWKS.
type Verifier interface {
	Validate(ctx context.Context, token, audience string) (*idtoken.Payload, error)
}

var _ Verifier = (*idtoken.Validator)(nil)

// googleIssuers are the iss values of Google-signed ID tokens; idtoken
// checks the signature and audience but leaves the issuer to the caller.
var googleIssuers = []string{"https://accounts.google.com", "accounts.google.com"}

// newGoogleVerifier is idtoken's validator on Google's certificates. With
// its own HTTP client idtoken needs no credentials, so it cannot fail here.
func newGoogleVerifier() Verifier {
	v, err := idtoken.NewValidator(context.Background(), option.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		return failingVerifier{err}
	}
	return v
}

type failingVerifier struct{ err error }

func (f failingVerifier) Validate(context.Context, string, string) (*idtoken.Payload, error) {
	return nil, fmt.Errorf("admin: no ID token validator: %w", f.err)
}

// guard is what every request passes before routing, in order: the Host,
// the caller's identity, and for state changes the origin.
type guard struct {
	host     string // ADMIN_URL's host, lowercased; "" skips the check
	audience string // ADMIN_URL as configured
	verifier Verifier
	require  bool
	origin   *http.CrossOriginProtection
}

func newGuard(o Options) *guard {
	g := &guard{audience: o.URL, verifier: o.Verifier, require: o.RequireAuth, origin: http.NewCrossOriginProtection()}
	if u, err := url.Parse(o.URL); err == nil {
		g.host = strings.ToLower(u.Host)
	}
	if g.require && g.verifier == nil {
		g.verifier = newGoogleVerifier()
	}
	g.origin.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logging.FromContext(r.Context()).WarnContext(r.Context(), "cross-origin request refused",
			"method", r.Method, "origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		respond.Error(w, r, http.StatusForbidden, respond.APIError{Code: "cross_origin",
			Message: "This change was requested from another site, so it was refused.",
			Fix:     "Use the buttons on the admin page itself, or call the API from a tool (curl, scripts/admin.sh) rather than from a web page."})
	}))
	return g
}

// cloudRunHost reports a Cloud Run service's own address. A Cloud Run
// function answers at its cloudfunctions.net URL (ADMIN_URL) and at its
// run.app URL, and which of the two names a proxied request carries is not
// documented; both are Google's, so neither can be a rebinding target.
func cloudRunHost(h string) bool {
	h = strings.ToLower(h)
	if i := strings.LastIndexByte(h, ':'); i > strings.LastIndexByte(h, ']') {
		h = h[:i]
	}
	return strings.HasSuffix(h, ".run.app")
}

// wrap runs next behind the checks.
func (g *guard) wrap(next http.Handler) http.Handler {
	protected := g.origin.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.host != "" && !strings.EqualFold(r.Host, g.host) && !cloudRunHost(r.Host) {
			// A request for another name reached this function: a
			// misrouted proxy, or DNS rebinding aimed at the page.
			respond.Error(w, r, http.StatusMisdirectedRequest, respond.APIError{Code: "wrong_host",
				Message: "This admin function answers only at " + g.host + ".",
				Fix:     "Use the admin URL (the Terraform output admin_url, as ADMIN_URL is set)."})
			return
		}
		if g.require {
			caller, err := g.identify(r)
			if err != nil {
				logging.FromContext(r.Context()).WarnContext(r.Context(), "caller refused", "error", err)
				w.Header().Set("WWW-Authenticate", `Bearer realm="gmail-relay admin"`)
				respond.Error(w, r, http.StatusUnauthorized, respond.APIError{Code: "unauthenticated",
					Message: "This endpoint needs a Google-signed identity token for " + orUnset(g.audience) + ".",
					Fix:     "Call it with `Authorization: Bearer $(gcloud auth print-identity-token --audiences=ADMIN_URL)` as a principal holding roles/run.invoker on the admin function, as scripts/admin.sh does."})
				return
			}
			r = r.WithContext(logging.WithLogger(r.Context(), logging.FromContext(r.Context()).With("caller", caller)))
		}
		protected.ServeHTTP(w, r)
	})
}

func orUnset(s string) string {
	if s == "" {
		return "this function (ADMIN_URL is not set)"
	}
	return s
}

// identify verifies the bearer token and returns the caller it names. A
// token is either verified as Google-signed for this function or refused:
// its claims are never read on trust. Cloud Run strips the signature from
// the Authorization header it checked itself, so callers send that token
// in X-Serverless-Authorization and this one, whole, in Authorization.
func (g *guard) identify(r *http.Request) (string, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return "", errors.New("no bearer token")
	}
	if g.audience == "" {
		return "", errors.New("ADMIN_URL is not set, so no audience can be checked")
	}
	p, err := g.verifier.Validate(r.Context(), tok, g.audience)
	if err != nil {
		return "", fmt.Errorf("identity token: %w", err)
	}
	if !slices.Contains(googleIssuers, p.Issuer) {
		return "", fmt.Errorf("identity token: issuer %q is not Google", p.Issuer)
	}
	if email, _ := p.Claims["email"].(string); email != "" {
		return email, nil
	}
	if p.Subject == "" {
		return "", errors.New("identity token: no subject")
	}
	return p.Subject, nil
}
