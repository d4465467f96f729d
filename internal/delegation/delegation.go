// Package delegation lets the relay act as the users of Workspace domains
// whose admin authorised the relay's delegate service account for
// gmail.send (domain-wide delegation), without a key file: the IAM
// Credentials API's signJwt signs the assertion with a Google-managed key,
// through google.golang.org/api/impersonate (CredentialsConfig.Subject),
// and Google's token endpoint trades it for the user's access token.
//
// A Delegator mints one access token per call. Callers cache it for its
// hour (the sender's per-account oauth2.ReuseTokenSource, package sender),
// so steady state makes no signJwt call per send. Every failure comes back
// as an *Error saying whose step the fix is.
package delegation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/impersonate"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/account"
)

// Scope is the one scope the relay asks for, and the one the Workspace
// admin authorises for the delegate's client ID.
const Scope = "https://www.googleapis.com/auth/gmail.send"

// EventDenied is the account event of a delegated user whose domain's
// admin has not authorised (or has withdrawn) the delegate's client ID for
// gmail.send.
const EventDenied = "delegation_denied"

// cloudPlatform is the scope of the relay's own identity (ADC) calling
// signJwt, as impersonate asks for by default.
const cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

// mintTimeout bounds one mint (signJwt plus the token exchange):
// impersonate builds its requests without a context, so only the HTTP
// client's timeout can stop a hung call.
const mintTimeout = 30 * time.Second

// Config configures a Delegator.
type Config struct {
	// ServiceAccount is the delegate service account's email, the
	// TargetPrincipal whose signJwt the relay calls.
	ServiceAccount string
	// ClientID is the delegate's unique ID, the OAuth client ID the
	// Workspace admin authorises; it is only quoted in fixes.
	ClientID string
	// Domains are the delegated domains, lower case.
	Domains []string
	// Endpoint, when set, replaces both Google hosts impersonate calls
	// (iamcredentials.googleapis.com and oauth2.googleapis.com) with this
	// base URL, and the relay's identity with EmulatorBearer: tests and
	// make dev point it at the sandbox.
	Endpoint string
	// HTTPClient overrides the client that calls signJwt and the token
	// endpoint; it must authorise signJwt itself. Nil is Application
	// Default Credentials (or, with Endpoint, the emulator transport).
	HTTPClient *http.Client
}

// EmulatorBearer is the credential the relay presents to an emulator of
// signJwt (Config.Endpoint), which has no Application Default Credentials
// to verify; the sandbox accepts it.
const EmulatorBearer = "sandbox-iam-credential"

// Delegator mints access tokens for users of the delegated domains.
type Delegator struct {
	cfg    Config
	client *http.Client
}

// New returns a Delegator. Without Endpoint or HTTPClient it finds
// Application Default Credentials once, here, rather than on every mint.
func New(ctx context.Context, c Config) (*Delegator, error) {
	if c.ServiceAccount == "" {
		return nil, errors.New("delegation.New: no delegate service account")
	}
	c.Domains = slices.Clone(c.Domains)
	for i, d := range c.Domains {
		c.Domains[i] = strings.ToLower(strings.TrimSpace(d))
	}
	client := c.HTTPClient
	switch {
	case client != nil:
	case c.Endpoint != "":
		u, err := url.Parse(c.Endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("delegation.New: endpoint %q is not an absolute URL", c.Endpoint)
		}
		client = &http.Client{Transport: &redirect{to: u, base: http.DefaultTransport}}
	default:
		hc, err := google.DefaultClient(ctx, cloudPlatform)
		if err != nil {
			return nil, fmt.Errorf("delegation.New: Application Default Credentials: %w", err)
		}
		client = hc
	}
	// A copy, so that the timeout never changes the caller's client.
	bounded := *client
	if bounded.Timeout == 0 || bounded.Timeout > mintTimeout {
		bounded.Timeout = mintTimeout
	}
	return &Delegator{cfg: c, client: &bounded}, nil
}

// ServiceAccount is the delegate's email.
func (d *Delegator) ServiceAccount() string { return d.cfg.ServiceAccount }

// Covers reports whether email belongs to a delegated domain.
func (d *Delegator) Covers(email string) bool {
	if d == nil {
		return false
	}
	_, domain, ok := strings.Cut(account.Normalize(email), "@")
	return ok && slices.Contains(d.cfg.Domains, domain)
}

// Token mints a fresh access token for user (one signJwt call and one
// token exchange). Failures are *Error.
func (d *Delegator) Token(ctx context.Context, user string) (*oauth2.Token, error) {
	user = account.Normalize(user)
	// A new token source per mint: impersonate wraps its own in a
	// ReuseTokenSource, which would hand back the token Gmail just
	// refused; the caller caches instead.
	ts, err := impersonate.CredentialsTokenSource(ctx, impersonate.CredentialsConfig{
		TargetPrincipal: d.cfg.ServiceAccount,
		Scopes:          []string{Scope},
		Subject:         user,
	}, option.WithHTTPClient(d.client))
	if err != nil {
		return nil, &Error{Kind: KindInternal, User: user, Detail: err.Error(), d: d}
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Kind: KindTransient, User: user, Detail: err.Error(), d: d}
	}
	tok, err := ts.Token()
	if err != nil {
		return nil, d.translate(user, err)
	}
	return tok, nil
}

// TokenSource is a source minting a fresh token on every call, for an
// oauth2.ReuseTokenSource to cache.
func (d *Delegator) TokenSource(user string) oauth2.TokenSource {
	return sourceFunc(func() (*oauth2.Token, error) { return d.Token(context.Background(), user) })
}

type sourceFunc func() (*oauth2.Token, error)

func (f sourceFunc) Token() (*oauth2.Token, error) { return f() }

// redirect sends impersonate's calls to Google's two hosts to an emulator
// instead, with the emulator credential: the impersonate package hard-codes
// both URLs, and option.WithHTTPClient is its only hook.
type redirect struct {
	to   *url.URL
	base http.RoundTripper
}

// googleHosts are the hosts impersonate calls for domain-wide delegation.
var googleHosts = []string{"iamcredentials.googleapis.com", "oauth2.googleapis.com"}

func (r *redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	if !slices.Contains(googleHosts, req.URL.Host) {
		return nil, fmt.Errorf("delegation: refusing to send a request for %s to the emulator", req.URL.Host)
	}
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = r.to.Scheme, r.to.Host
	out.URL.Path = strings.TrimSuffix(r.to.Path, "/") + req.URL.Path
	out.Host = ""
	out.Header.Set("Authorization", "Bearer "+EmulatorBearer)
	return r.base.RoundTrip(out)
}
