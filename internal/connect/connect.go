// Package connect is the front door: the authorize handler that starts
// Google's consent flow and the confirm handler that finishes it, checks who
// connected and what was granted, proves the token works, and only then
// stores it. Each handler decides an outcome first and writes it second, so
// the person sees a safe message and a fix while the log gets the cause.
package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// Tokens is where refresh tokens go.
type Tokens interface {
	Save(ctx context.Context, email string, tok tokenstore.Token) error
	Delete(ctx context.Context, email string) error
}

// Accounts is the account registry.
type Accounts interface {
	Upsert(ctx context.Context, a *registry.Account) error
}

var (
	_ Tokens   = (*tokenstore.Store)(nil)
	_ Accounts = (*registry.Firestore)(nil)
	_ Accounts = (*registry.Local)(nil)
)

// Options configures both handlers.
type Options struct {
	OAuth          *oauth.Client
	Tokens         Tokens
	Accounts       Accounts
	AllowedDomains []string
	AllowedEmails  []string
	// ConnectURL is authorize's public URL, for "start again" links.
	ConnectURL string
	// Operator names who runs this relay on the connect page.
	Operator string
	Now      func() time.Time
	// SaveAttempts and SaveBackoff bound the brief retry of storage writes.
	SaveAttempts int
	SaveBackoff  time.Duration
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Operator == "" {
		o.Operator = "this organisation"
	}
	if o.SaveAttempts <= 0 {
		o.SaveAttempts = 3
	}
	if o.SaveBackoff <= 0 {
		o.SaveBackoff = 250 * time.Millisecond
	}
}

// cookies names the state cookie and the used-state marker. On https they
// carry the __Host- prefix (Secure, Path=/, no Domain: the browser refuses
// them otherwise); on http://localhost a Secure cookie would not come back
// to plain-HTTP clients, so the prefix and the flag are dropped there.
type cookies struct {
	state, used string
	secure      bool
}

func cookieNames(redirectURL string) cookies {
	u, err := url.Parse(redirectURL)
	if err == nil && u.Scheme == "http" && config.IsLoopback(u) {
		return cookies{state: "gmail-relay-state", used: "gmail-relay-used"}
	}
	return cookies{state: "__Host-gmail-relay-state", used: "__Host-gmail-relay-used", secure: true}
}

func (c cookies) set(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   c.secure,
		SameSite: http.SameSiteLaxMode,
	})
}

// bareAddress returns s normalised, or "" if s is not a bare address such
// as alice@example.com (a display name or angle brackets do not count).
func bareAddress(s string) string {
	s = account.Normalize(s)
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return ""
	}
	return s
}

func domainOf(email string) string {
	_, d, _ := strings.Cut(email, "@")
	return d
}

var consumerDomains = []string{"gmail.com", "googlemail.com"}

// allowed applies ALLOWED_EMAILS and ALLOWED_DOMAINS. A domain match needs
// Google's hd claim to equal the domain: that proves a Workspace account of
// the domain rather than a Google account that merely uses such an address.
func (o *Options) allowed(id oauth.Identity) bool {
	if len(o.AllowedDomains) == 0 && len(o.AllowedEmails) == 0 {
		return true
	}
	if slices.Contains(o.AllowedEmails, id.Email) {
		return true
	}
	d := domainOf(id.Email)
	if !slices.Contains(o.AllowedDomains, d) {
		return false
	}
	return id.HostedDomain == d || (id.HostedDomain == "" && slices.Contains(consumerDomains, d))
}

// hintAllowed is allowed() before sign-in, from the address alone.
func (o *Options) hintAllowed(email string) bool {
	if len(o.AllowedDomains) == 0 && len(o.AllowedEmails) == 0 {
		return true
	}
	return slices.Contains(o.AllowedEmails, email) || slices.Contains(o.AllowedDomains, domainOf(email))
}

// restricted reports whether an allow-list applies.
func (o *Options) restricted() bool {
	return len(o.AllowedDomains) > 0 || len(o.AllowedEmails) > 0
}

// hostedDomain is the hd parameter: set only when exactly one domain may
// connect, so Google's account chooser shows only that domain's accounts.
func (o *Options) hostedDomain() string {
	if len(o.AllowedDomains) == 1 && len(o.AllowedEmails) == 0 && !slices.Contains(consumerDomains, o.AllowedDomains[0]) {
		return o.AllowedDomains[0]
	}
	return ""
}

func (o *Options) startAgain(loginHint string) string {
	if o.ConnectURL == "" {
		return ""
	}
	if loginHint == "" {
		return o.ConnectURL
	}
	return o.ConnectURL + "?" + url.Values{"login_hint": {loginHint}}.Encode()
}

// retry runs f up to attempts times with a doubling backoff.
func retry(ctx context.Context, attempts int, backoff time.Duration, f func() error) error {
	var err error
	for i := 0; i < attempts; i++ {
		if err = f(); err == nil {
			return nil
		}
		if i == attempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(backoff << i):
		}
	}
	return fmt.Errorf("after %d attempts: %w", attempts, err)
}
