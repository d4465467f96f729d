// Package config reads each function's configuration from environment
// variables. Every function has one struct; Validate reports every missing or
// bad variable at once (joined with errors.Join) so an operator fixes a
// deployment in one round, and secrets print as [REDACTED] everywhere.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/sethvargo/go-envconfig"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/policy"
)

// Secret is a string that never prints: fmt, slog and JSON all see a
// placeholder. Call Reveal where the value is really needed.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String redacts the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts the value for %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue redacts the value for slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// Google's production endpoints; tests and `make dev` point these at the
// sandbox.
const (
	GoogleAuthURL   = "https://accounts.google.com/o/oauth2/v2/auth"
	GoogleTokenURL  = "https://oauth2.googleapis.com/token"
	GoogleRevokeURL = "https://oauth2.googleapis.com/revoke"
)

// Base is what every function needs.
type Base struct {
	// ProjectID is the Google Cloud project that holds the secrets, the
	// database and the topics.
	ProjectID string `env:"GOOGLE_CLOUD_PROJECT"`
	// LogLevel is debug, info, warning or error.
	LogLevel string `env:"LOG_LEVEL, default=info"`
}

// Common returns the settings every function shares; it is promoted to
// every function's configuration, so generic code can reach them.
func (b *Base) Common() *Base { return b }

func (b *Base) problems() []error {
	var errs []error
	if b.ProjectID == "" {
		errs = append(errs, missing("GOOGLE_CLOUD_PROJECT", "the Google Cloud project ID"))
	}
	if _, err := logging.ParseLevel(b.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	return errs
}

// OAuth is the OAuth client the relay acts as.
type OAuth struct {
	ClientID     string `env:"OAUTH_CLIENT_ID"`
	ClientSecret Secret `env:"OAUTH_CLIENT_SECRET"`
	AuthURL      string `env:"OAUTH_AUTH_URL, default=https://accounts.google.com/o/oauth2/v2/auth"`
	TokenURL     string `env:"OAUTH_TOKEN_URL, default=https://oauth2.googleapis.com/token"`
	RevokeURL    string `env:"OAUTH_REVOKE_URL, default=https://oauth2.googleapis.com/revoke"`
}

func (o *OAuth) problems() []error {
	var errs []error
	if o.ClientID == "" {
		errs = append(errs, missing("OAUTH_CLIENT_ID", "the OAuth client ID of type Web application"))
	}
	if o.ClientSecret == "" {
		errs = append(errs, missing("OAUTH_CLIENT_SECRET", "the OAuth client secret"))
	}
	errs = appendURL(errs, "OAUTH_AUTH_URL", o.AuthURL)
	errs = appendURL(errs, "OAUTH_TOKEN_URL", o.TokenURL)
	errs = appendURL(errs, "OAUTH_REVOKE_URL", o.RevokeURL)
	return errs
}

// Stores selects where accounts, the send ledger and tokens live.
type Stores struct {
	// Backend is "firestore" in production and "local" for `make dev`, where
	// the registry and ledger are files under StateDir.
	Backend           string `env:"STORE_BACKEND, default=firestore"`
	StateDir          string `env:"DEV_STATE_DIR, default=.dev"`
	FirestoreDatabase string `env:"FIRESTORE_DATABASE, default=(default)"`
	// SecretManagerEmulatorHost points the Secret Manager client at an
	// insecure gRPC fake (host:port), as PUBSUB_EMULATOR_HOST does for Pub/Sub.
	SecretManagerEmulatorHost string `env:"SECRET_MANAGER_EMULATOR_HOST"`
}

// Local reports whether the embedded stores are in use.
func (s *Stores) Local() bool { return s.Backend == "local" }

func (s *Stores) problems() []error {
	var errs []error
	switch s.Backend {
	case "firestore":
	case "local":
		if s.StateDir == "" {
			errs = append(errs, missing("DEV_STATE_DIR", "the directory for local state"))
		}
	default:
		errs = append(errs, fmt.Errorf("STORE_BACKEND: %q is not one of firestore, local", s.Backend))
	}
	return errs
}

// Gmail configures the Gmail API client.
type Gmail struct {
	// Endpoint overrides Google's Gmail endpoint (tests and the sandbox).
	Endpoint string `env:"GMAIL_ENDPOINT"`
}

func (g *Gmail) problems() []error {
	if g.Endpoint == "" {
		return nil
	}
	return appendURL(nil, "GMAIL_ENDPOINT", g.Endpoint)
}

// Access restricts which mailboxes may connect.
type Access struct {
	AllowedDomains []string `env:"ALLOWED_DOMAINS"`
	AllowedEmails  []string `env:"ALLOWED_EMAILS"`
}

var domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

func (a *Access) problems() []error {
	var errs []error
	for i, d := range a.AllowedDomains {
		d = strings.ToLower(strings.TrimSpace(d))
		a.AllowedDomains[i] = d
		if !domainRE.MatchString(d) {
			errs = append(errs, fmt.Errorf("ALLOWED_DOMAINS: %q is not a domain name (use a comma-separated list such as example.com,example.org)", d))
		}
	}
	for i, e := range a.AllowedEmails {
		e = account.Normalize(e)
		a.AllowedEmails[i] = e
		if addr, err := mail.ParseAddress(e); err != nil || addr.Address != e {
			errs = append(errs, fmt.Errorf("ALLOWED_EMAILS: %q is not a bare email address", e))
		}
	}
	return errs
}

// Delegation is domain-wide delegation (package delegation): the relay
// sends as any user of DELEGATED_DOMAINS, with no connect, by signing as
// DELEGATE_SERVICE_ACCOUNT, which the domain's admin authorised for
// gmail.send. Terraform sets all three when delegated_domains is set.
type Delegation struct {
	DelegatedDomains       []string `env:"DELEGATED_DOMAINS"`
	DelegateServiceAccount string   `env:"DELEGATE_SERVICE_ACCOUNT"`
	// DelegateClientID is the delegate's unique ID, quoted in the admin's
	// fix.
	DelegateClientID string `env:"DELEGATE_CLIENT_ID"`
	// DelegationEndpoint replaces the IAM Credentials and OAuth token hosts
	// (tests and make dev: the sandbox).
	DelegationEndpoint string `env:"DELEGATION_ENDPOINT"`
}

// Enabled reports whether any domain is delegated.
func (d *Delegation) Enabled() bool { return len(d.DelegatedDomains) > 0 }

// Attachments is the sender's access to attachments by Cloud Storage
// reference (attachments[].gcs_uri). Terraform sets ATTACHMENTS_BUCKET to
// the bucket it creates; without it the sender refuses every such
// attachment, naming the setting. The client honours STORAGE_EMULATOR_HOST
// by itself.
type Attachments struct {
	// AttachmentsBucket is the relay's own bucket, where an object must be
	// under the prefix "<app>/" of the app that sends it.
	AttachmentsBucket string `env:"ATTACHMENTS_BUCKET, default="`
	// AttachmentsExtraBuckets are the operator's other buckets the sender
	// may read (comma-separated), without a prefix rule.
	AttachmentsExtraBuckets []string `env:"ATTACHMENTS_EXTRA_BUCKETS, default="`
	// AttachmentsDeleteAfterSend deletes each object of the relay's bucket
	// a message attached once it is sent; never those of the extra buckets.
	AttachmentsDeleteAfterSend bool `env:"ATTACHMENTS_DELETE_AFTER_SEND, default=false"`
}

func (a *Attachments) problems() []error {
	var errs []error
	if a.AttachmentsBucket = strings.TrimSpace(a.AttachmentsBucket); a.AttachmentsBucket != "" {
		if err := message.CheckBucketName(a.AttachmentsBucket); err != nil {
			errs = append(errs, fmt.Errorf("ATTACHMENTS_BUCKET: %w", err))
		}
	}
	for i, b := range a.AttachmentsExtraBuckets {
		b = strings.TrimSpace(b)
		a.AttachmentsExtraBuckets[i] = b
		if err := message.CheckBucketName(b); err != nil {
			errs = append(errs, fmt.Errorf("ATTACHMENTS_EXTRA_BUCKETS: %w (use a comma-separated list of bucket names, without gs://)", err))
		}
	}
	if len(a.AttachmentsExtraBuckets) > 0 && a.AttachmentsBucket == "" {
		errs = append(errs, errors.New("ATTACHMENTS_EXTRA_BUCKETS is set but ATTACHMENTS_BUCKET is empty: attachments by reference are off without the relay's own bucket; set it, or unset ATTACHMENTS_EXTRA_BUCKETS"))
	}
	return errs
}

func (d *Delegation) problems() []error {
	var errs []error
	for i, dom := range d.DelegatedDomains {
		dom = strings.ToLower(strings.TrimSpace(dom))
		d.DelegatedDomains[i] = dom
		if !domainRE.MatchString(dom) {
			errs = append(errs, fmt.Errorf("DELEGATED_DOMAINS: %q is not a domain name (use a comma-separated list such as example.com,example.org)", dom))
		}
	}
	sa := strings.TrimSpace(d.DelegateServiceAccount)
	switch {
	case d.Enabled() && sa == "":
		errs = append(errs, missing("DELEGATE_SERVICE_ACCOUNT", "the email of the service account the Workspace admin authorised for domain-wide delegation (Terraform output delegate_service_account)"))
	case !d.Enabled() && sa != "":
		errs = append(errs, errors.New("DELEGATE_SERVICE_ACCOUNT is set but DELEGATED_DOMAINS is empty: list the domains whose admin authorised it, or unset it"))
	case sa != "":
		if a, err := mail.ParseAddress(sa); err != nil || a.Address != sa {
			errs = append(errs, fmt.Errorf("DELEGATE_SERVICE_ACCOUNT: %q is not a service account email", sa))
		}
	}
	return appendOptionalURL(errs, "DELEGATION_ENDPOINT", d.DelegationEndpoint)
}

// Authorize is the authorize function's configuration.
type Authorize struct {
	Base
	OAuth
	Access
	// RedirectURL is confirm's public URL, registered in the Google console.
	RedirectURL string `env:"OAUTH_REDIRECT_URL"`
}

// Validate reports every problem at once.
func (c *Authorize) Validate() error {
	errs := append(c.Base.problems(), c.OAuth.problems()...)
	errs = append(errs, c.Access.problems()...)
	errs = append(errs, redirectProblems(c.RedirectURL)...)
	return errors.Join(errs...)
}

// Confirm is the confirm function's configuration.
type Confirm struct {
	Base
	OAuth
	Access
	Stores
	RedirectURL string `env:"OAUTH_REDIRECT_URL"`
	// ConnectURL is authorize's public URL, linked from error pages.
	ConnectURL string `env:"CONNECT_URL"`
}

// Validate reports every problem at once.
func (c *Confirm) Validate() error {
	errs := append(c.Base.problems(), c.OAuth.problems()...)
	errs = append(errs, c.Access.problems()...)
	errs = append(errs, c.Stores.problems()...)
	errs = append(errs, redirectProblems(c.RedirectURL)...)
	errs = appendOptionalURL(errs, "CONNECT_URL", c.ConnectURL)
	return errors.Join(errs...)
}

// Sender is the sender function's configuration.
type Sender struct {
	Base
	OAuth
	Stores
	Gmail
	// Access is applied again at send time: an account connected before
	// the allow-list changed no longer sends.
	Access
	// AppsJSON is APPS, each app's policy (see internal/policy); Validate
	// parses it. Unset, there is one app, default, allowing every account.
	AppsJSON     string `env:"APPS"`
	apps         *policy.Apps
	ResultsTopic string `env:"RESULTS_TOPIC, default=gmail-send-results"`
	// ConnectURL is authorize's public URL; failure results carry it, with
	// login_hint, as the reconnect link.
	ConnectURL string `env:"CONNECT_URL"`
	// SendLease bounds how long a delivery owns a message before a
	// redelivery may take over (the ambiguous case of DESIGN §5).
	SendLease time.Duration `env:"SEND_LEASE, default=3m"`
	// SendTimeout bounds one Gmail call. It must end before the function's
	// own timeout (60 s in infra/), so the sender, not Cloud Run, decides
	// what an unanswered send means.
	SendTimeout time.Duration `env:"SEND_TIMEOUT, default=50s"`
	// MaxDeliveryAttempts is the push subscription's max_delivery_attempts.
	// On that attempt a delivery that would be nacked publishes a failed
	// result first, because Pub/Sub then moves the request to the
	// dead-letter topic and nothing else would report it. 0 means unknown:
	// no such result.
	MaxDeliveryAttempts int `env:"SEND_MAX_DELIVERY_ATTEMPTS, default=0"`
	Delegation
	// AccountEventsTopic receives the sender's account events (a delegated
	// domain whose admin withdrew the authorisation).
	AccountEventsTopic string `env:"ACCOUNT_EVENTS_TOPIC, default=gmail-account-events"`
	// MaxSendAttempts bounds the deliveries of one request that try Gmail:
	// a transient failure on that one ends in a failed result. Deliveries
	// held for a daily cap or the project's quota do not count, so
	// max_delivery_attempts (100 deployed) can outlast a long hold while
	// ordinary failures still end after a few tries. 0 (a struct built
	// without the environment) is the sender's default, 10.
	MaxSendAttempts int `env:"SEND_MAX_ATTEMPTS, default=10"`
	Attachments
}

// Validate reports every problem at once.
func (c *Sender) Validate() error {
	errs := append(c.Base.problems(), c.OAuth.problems()...)
	errs = append(errs, c.Stores.problems()...)
	errs = append(errs, c.Gmail.problems()...)
	errs = append(errs, c.Access.problems()...)
	errs = append(errs, c.Delegation.problems()...)
	errs = append(errs, c.Attachments.problems()...)
	apps, appErrs := policy.ParseApps(c.AppsJSON)
	for _, e := range appErrs {
		errs = append(errs, fmt.Errorf("APPS: %w", e))
	}
	c.apps = apps
	if c.ResultsTopic == "" {
		errs = append(errs, missing("RESULTS_TOPIC", "the topic for result events"))
	}
	errs = appendOptionalURL(errs, "CONNECT_URL", c.ConnectURL)
	if c.SendLease < time.Minute || c.SendLease > time.Hour {
		errs = append(errs, fmt.Errorf("SEND_LEASE: %s is outside 1m..1h", c.SendLease))
	}
	if c.SendTimeout < 5*time.Second || c.SendTimeout >= c.SendLease {
		errs = append(errs, fmt.Errorf("SEND_TIMEOUT: %s must be at least 5s and shorter than SEND_LEASE (%s)", c.SendTimeout, c.SendLease))
	}
	if n := c.MaxDeliveryAttempts; n != 0 && (n < 5 || n > 100) {
		errs = append(errs, fmt.Errorf("SEND_MAX_DELIVERY_ATTEMPTS: %d is outside 5..100, Pub/Sub's range for max_delivery_attempts (0: unknown)", n))
	}
	if n := c.MaxSendAttempts; n < 0 || n > 100 {
		errs = append(errs, fmt.Errorf("SEND_MAX_ATTEMPTS: %d is outside 1..100", n))
	}
	return errors.Join(errs...)
}

// Policy is what the sender checks before it sends: the apps of APPS and
// the allow-list.
func (c *Sender) Policy() *policy.Policy {
	apps := c.apps
	if apps == nil {
		// Validate was not called (a test built the struct): read APPS
		// now; a bad value leaves the default, as Validate would refuse it.
		if apps, _ = policy.ParseApps(c.AppsJSON); apps == nil {
			apps = policy.DefaultApps()
		}
	}
	return &policy.Policy{Apps: apps, Allow: policy.AllowList{Domains: c.AllowedDomains, Emails: c.AllowedEmails}}
}

// Load reads cfg from the process environment and validates it.
func Load[T any, PT interface {
	*T
	Validate() error
}](ctx context.Context) (*T, error) {
	return LoadFrom[T, PT](ctx, envconfig.OsLookuper())
}

// LoadFrom reads cfg from l and validates it, reporting every problem at
// once. Nothing else is read: tests and the dev server pass a map (see
// MapLookuper), deployed functions the process environment (Load).
func LoadFrom[T any, PT interface {
	*T
	Validate() error
}](ctx context.Context, l envconfig.Lookuper) (*T, error) {
	// envconfig stops at the first value it cannot parse and names the Go
	// field, not the variable; so each failure is recorded under the
	// variable last looked up, which is then treated as unset (its default
	// applies) and the load repeated, to report every problem at once.
	rec := &recordingLookuper{l: l, dropped: map[string]bool{}}
	var errs []error
	for {
		cfg := new(T)
		rec.last = ""
		err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: cfg, Lookuper: rec})
		if err == nil {
			if err := PT(cfg).Validate(); err != nil {
				errs = append(errs, err)
			}
			if len(errs) > 0 {
				return nil, fmt.Errorf("config: %w", errors.Join(errs...))
			}
			return cfg, nil
		}
		if rec.last == "" || rec.dropped[rec.last] {
			return nil, fmt.Errorf("config: %w", errors.Join(append(errs, err)...))
		}
		errs = append(errs, fmt.Errorf("%s: %s", rec.last, withoutFieldPath(err.Error())))
		rec.dropped[rec.last] = true
	}
}

// withoutFieldPath drops the Go field names ("Sender: SendLease: ")
// envconfig puts before a parse error.
func withoutFieldPath(msg string) string {
	for {
		head, rest, ok := strings.Cut(msg, ": ")
		if !ok || head == "" || !unicode.IsUpper(rune(head[0])) || strings.IndexFunc(head, func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}) >= 0 {
			return msg
		}
		msg = rest
	}
}

// recordingLookuper remembers the last variable found, and hides those
// whose values did not parse.
type recordingLookuper struct {
	l       envconfig.Lookuper
	last    string
	dropped map[string]bool
}

func (r *recordingLookuper) Lookup(key string) (string, bool) {
	if r.dropped[key] {
		return "", false
	}
	v, ok := r.l.Lookup(key)
	if ok {
		r.last = key
	}
	return v, ok
}

// MapLookuper adapts a map for LoadFrom.
func MapLookuper(m map[string]string) envconfig.Lookuper { return envconfig.MapLookuper(m) }

func missing(name, what string) error {
	return fmt.Errorf("%s is not set: it must hold %s", name, what)
}

func appendURL(errs []error, name, raw string) []error {
	if err := checkURL(raw); err != nil {
		return append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return errs
}

func appendOptionalURL(errs []error, name, raw string) []error {
	if raw == "" {
		return errs
	}
	return appendURL(errs, name, raw)
}

func checkURL(raw string) error {
	if raw == "" {
		return errors.New("is not set")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.Scheme == "http" && !IsLoopback(u) {
		return fmt.Errorf("%q uses http: only localhost may, everything else needs https", raw)
	}
	return nil
}

// IsLoopback reports whether u points at this machine, where plain http is
// acceptable (Google allows http redirect URIs only for localhost too).
func IsLoopback(u *url.URL) bool {
	h := u.Hostname()
	return h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.")
}

func redirectProblems(raw string) []error {
	if raw == "" {
		return []error{missing("OAUTH_REDIRECT_URL", "confirm's public URL, exactly as registered under Authorized redirect URIs")}
	}
	if err := checkURL(raw); err != nil {
		return []error{fmt.Errorf("OAUTH_REDIRECT_URL: %w", err)}
	}
	u, _ := url.Parse(raw)
	if u.Fragment != "" || u.RawQuery != "" {
		return []error{fmt.Errorf("OAUTH_REDIRECT_URL: %q must not have a query or fragment (Google rejects them)", raw)}
	}
	return nil
}

// Admin is the admin function's configuration.
type Admin struct {
	Base
	OAuth
	Stores
	Gmail
	ConnectURL string `env:"CONNECT_URL"`
	// URL is the admin function's own public URL. Requests for another
	// Host are refused, and bearer identity tokens must name it as their
	// audience.
	URL string `env:"ADMIN_URL"`
	// RequireAuth refuses requests without a bearer identity token that
	// verifies as Google-signed for URL. Cloud Run's IAM check is the real
	// gate; this catches a deployment whose ingress was opened by mistake.
	// `make dev` turns it off.
	RequireAuth bool `env:"ADMIN_REQUIRE_AUTH, default=true"`
	// OAuthAppTesting: as for Healthcheck, for the token-expiry warning.
	OAuthAppTesting bool `env:"OAUTH_APP_TESTING, default=false"`
	Delegation
}

// Validate reports every problem at once.
func (c *Admin) Validate() error {
	errs := append(c.Base.problems(), c.OAuth.problems()...)
	errs = append(errs, c.Stores.problems()...)
	errs = append(errs, c.Gmail.problems()...)
	errs = append(errs, c.Delegation.problems()...)
	errs = appendOptionalURL(errs, "CONNECT_URL", c.ConnectURL)
	switch {
	case c.URL != "":
		errs = appendURL(errs, "ADMIN_URL", c.URL)
	case c.RequireAuth:
		// Without it no identity token can be checked for its audience.
		errs = append(errs, missing("ADMIN_URL", "the admin function's URL, the audience of callers' identity tokens (or set ADMIN_REQUIRE_AUTH=false)"))
	}
	return errors.Join(errs...)
}

// Healthcheck is the healthcheck function's configuration.
type Healthcheck struct {
	Base
	OAuth
	Stores
	ConnectURL         string `env:"CONNECT_URL"`
	AccountEventsTopic string `env:"ACCOUNT_EVENTS_TOPIC, default=gmail-account-events"`
	// OAuthAppTesting says the OAuth consent screen is in Testing status,
	// where Google expires refresh tokens after 7 days.
	OAuthAppTesting bool `env:"OAUTH_APP_TESTING, default=false"`
	Delegation
}

// Validate reports every problem at once.
func (c *Healthcheck) Validate() error {
	errs := append(c.Base.problems(), c.OAuth.problems()...)
	errs = append(errs, c.Stores.problems()...)
	errs = append(errs, c.Delegation.problems()...)
	errs = appendOptionalURL(errs, "CONNECT_URL", c.ConnectURL)
	if c.AccountEventsTopic == "" {
		errs = append(errs, missing("ACCOUNT_EVENTS_TOPIC", "the topic for account events"))
	}
	return errors.Join(errs...)
}
