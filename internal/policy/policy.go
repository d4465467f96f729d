// Package policy decides who may send as whom. Publishing to a topic is
// the right to send (DESIGN §7): each app has its own topic,
// gmail-send-<app>, whose publishers Terraform names, and its own push
// subscription, gmail-send-<app>-push, from which the sender learns the
// app. The app's policy (env APPS) then says which mailboxes it may send
// as, whether it may send raw messages, and how many recipients a message
// may have. The relay's allow-list (ALLOWED_DOMAINS / ALLOWED_EMAILS) is
// applied again at send time, so an account connected before the list
// changed stops sending.
//
// Every refusal is a *Refusal, which the sender reports as a permanent
// `forbidden` result: the request is not malformed, it is one the operator
// has not allowed, and only the operator can change that.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"

	"github.com/gmailrelay/gmailrelay/internal/account"
)

// DefaultApp is the app of a deployment that declares none: it publishes
// on DefaultTopic and may send as every connected account.
const DefaultApp = "default"

// Topic and subscription names. They are the contract with infra/pubsub.tf:
// the default app keeps today's names, so existing deployments keep
// working, and every declared app gets its own pair.
const (
	DefaultTopic        = "gmail-send"
	DefaultSubscription = "gmail-send-push"
	topicPrefix         = "gmail-send-"
	subscriptionSuffix  = "-push"
)

// MaxRecipients is Gmail's per-message limit, and the default cap.
const MaxRecipients = 100

// appNameRE is what a Pub/Sub topic suffix and a Terraform map key both
// allow, kept short so gmail-send-<app>-push stays readable.
var appNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// reserved names would make an app's topic one of the relay's own
// (gmail-send-results, gmail-send-dead-letter).
var reserved = []string{"results", "dead-letter"}

var domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

// App is one app's policy.
type App struct {
	Name string
	// Accounts are exact addresses, *@domain or *.
	Accounts []string
	// Raw allows requests carrying a complete message in raw.
	Raw bool
	// MaxRecipients caps To, Cc and Bcc together, 1..100.
	MaxRecipients int
}

// Topic is the app's send topic.
func (a *App) Topic() string { return TopicFor(a.Name) }

// Subscription is the app's push subscription to the sender.
func (a *App) Subscription() string { return SubscriptionFor(a.Name) }

// TopicFor is the send topic of app: gmail-send-<app>. The implicit
// default app's is DefaultTopic (see Apps.Topics).
func TopicFor(app string) string { return topicPrefix + app }

// SubscriptionFor is the push subscription of app: gmail-send-<app>-push.
func SubscriptionFor(app string) string { return topicPrefix + app + subscriptionSuffix }

// AppFor names the app a push subscription delivers for. It takes a full
// name (projects/P/subscriptions/S) or the ID alone: gmail-send-push is
// the default app, gmail-send-<app>-push is <app>. ok is false for any
// other name.
func AppFor(subscription string) (app string, ok bool) {
	id := subscription[strings.LastIndexByte(subscription, '/')+1:]
	if id == DefaultSubscription {
		return DefaultApp, true
	}
	rest, ok := strings.CutPrefix(id, topicPrefix)
	if !ok {
		return "", false
	}
	app, ok = strings.CutSuffix(rest, subscriptionSuffix)
	if !ok || !appNameRE.MatchString(app) {
		return "", false
	}
	return app, true
}

// Apps is the parsed APPS: the declared apps, or the implicit default.
type Apps struct {
	byName map[string]*App
	// declared is false when APPS was unset: then every push is the
	// default app's, whatever its subscription, as before apps existed.
	declared bool
}

// DefaultApps is the policy of a deployment without APPS: one app,
// default, on gmail-send, allowing every account and raw messages, which
// is what the relay did before apps existed.
func DefaultApps() *Apps {
	return &Apps{byName: map[string]*App{DefaultApp: {
		Name: DefaultApp, Accounts: []string{"*"}, Raw: true, MaxRecipients: MaxRecipients,
	}}}
}

// wireApp is one app in APPS. Pointers tell a missing or null field (as
// Terraform's jsonencode writes an unset optional) from a zero one.
type wireApp struct {
	Accounts      []string `json:"accounts"`
	Raw           *bool    `json:"raw"`
	MaxRecipients *int     `json:"max_recipients"`
}

// ParseApps reads APPS. Empty (or blank) means unset: DefaultApps. Every
// problem is returned, each naming the app it is about.
func ParseApps(s string) (*Apps, []error) {
	if strings.TrimSpace(s) == "" {
		return DefaultApps(), nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, []error{fmt.Errorf("is not a JSON object of apps such as {\"billing\":{\"accounts\":[\"alice@example.com\"]}}: %v", err)}
	}
	if len(raw) == 0 {
		return nil, []error{errors.New("declares no app: declare at least one, or leave APPS unset for the default app, which may send as every account")}
	}
	a := &Apps{byName: map[string]*App{}, declared: true}
	var errs []error
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		app, problems := parseApp(name, raw[name])
		errs = append(errs, problems...)
		if len(problems) == 0 {
			a.byName[name] = app
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return a, nil
}

func parseApp(name string, data json.RawMessage) (*App, []error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("app %q: "+format, append([]any{name}, args...)...))
	}
	switch {
	case !appNameRE.MatchString(name):
		bad("the name must be a lower-case letter followed by at most 30 lower-case letters, digits or hyphens, because it becomes the topic gmail-send-<app>")
	case slices.Contains(reserved, name):
		bad("the name is reserved: its topic would be the relay's own %s", TopicFor(name))
	}
	var w wireApp
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		bad("is not an object of accounts, raw and max_recipients: %v", err)
		return nil, errs
	}
	app := &App{Name: name, MaxRecipients: MaxRecipients, Raw: w.Raw != nil && *w.Raw}
	if len(w.Accounts) == 0 {
		bad(`accounts is empty: list the addresses it may send as (alice@example.com), whole domains (*@example.com) or "*"`)
	}
	for _, p := range w.Accounts {
		norm, err := normalizePattern(p)
		if err != nil {
			bad("accounts: %v", err)
			continue
		}
		app.Accounts = append(app.Accounts, norm)
	}
	if n := w.MaxRecipients; n != nil {
		if *n < 1 || *n > MaxRecipients {
			bad("max_recipients %d is outside 1..%d (Gmail's per-message limit)", *n, MaxRecipients)
		}
		app.MaxRecipients = *n
	}
	return app, errs
}

// normalizePattern checks one accounts entry and returns it lower-cased.
func normalizePattern(p string) (string, error) {
	norm := account.Normalize(p)
	switch {
	case norm == "*":
		return norm, nil
	case strings.HasPrefix(norm, "*@"):
		if !domainRE.MatchString(norm[2:]) {
			return "", fmt.Errorf("%q: %q is not a domain name", p, norm[2:])
		}
		return norm, nil
	case strings.Contains(norm, "*"):
		return "", fmt.Errorf("%q: a wildcard may only be all of it (*) or the local part (*@example.com)", p)
	}
	if addr, err := mail.ParseAddress(norm); err != nil || addr.Address != norm {
		return "", fmt.Errorf("%q is not a bare email address, *@domain or *", p)
	}
	return norm, nil
}

// Declared reports whether APPS declared the apps.
func (a *Apps) Declared() bool { return a.declared }

// Get returns the named app, or nil.
func (a *Apps) Get(name string) *App { return a.byName[name] }

// Names lists the apps in order.
func (a *Apps) Names() []string {
	names := make([]string, 0, len(a.byName))
	for n := range a.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Topics maps each app's send topic to the app, as `make dev` creates them
// and scripts/publish lists them: gmail-send for the implicit default app,
// gmail-send-<app> for a declared one.
func (a *Apps) Topics() map[string]*App {
	out := map[string]*App{}
	for _, app := range a.byName {
		if !a.declared {
			out[DefaultTopic] = app
			continue
		}
		out[app.Topic()] = app
	}
	return out
}

// SubscriptionOf is the push subscription of the app on topic (see Topics).
func (a *Apps) SubscriptionOf(topic string) string {
	if topic == DefaultTopic {
		return DefaultSubscription
	}
	return topic + subscriptionSuffix
}

// AllowList is ALLOWED_DOMAINS and ALLOWED_EMAILS, normalised (config does
// that); both empty allows every account.
type AllowList struct {
	Domains []string
	Emails  []string
}

// Allows reports whether email is on the list. At connect the relay also
// checks Google's hd claim for a domain entry; at send time the address is
// what is known, and it was proven at connect.
func (l AllowList) Allows(email string) bool {
	if len(l.Domains) == 0 && len(l.Emails) == 0 {
		return true
	}
	_, domain, _ := strings.Cut(email, "@")
	return slices.Contains(l.Emails, email) || slices.Contains(l.Domains, domain)
}

// Policy is everything the sender checks before it sends.
type Policy struct {
	Apps  *Apps
	Allow AllowList
}

// Request is what the policy needs to know of a send request.
type Request struct {
	// Account is the normalised mailbox; empty when the request did not
	// say (it is then refused as invalid elsewhere).
	Account string
	// Raw is set for a request that carries a complete message.
	Raw bool
	// Recipients counts To, Cc and Bcc; negative when unknown.
	Recipients int
}

// Refusal is a request the policy does not allow.
type Refusal struct {
	// App is the app the delivery came from ("" when it is not known).
	App string
	// Rule names what refused it: subscription, app, accounts, raw,
	// max_recipients or allow_list.
	Rule string
	// Message says what was refused and why, and how the operator can
	// allow it; it names no secret and no message content.
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// App resolves the app of a delivery: from the push subscription when
// there is one, else from preset (callers that know it, such as tests).
// Without declared apps, every delivery is the default app's.
func (p *Policy) App(subscription, preset string) (*App, *Refusal) {
	apps := p.apps()
	if !apps.declared {
		return apps.byName[DefaultApp], nil
	}
	name := preset
	if subscription != "" {
		var ok bool
		if name, ok = AppFor(subscription); !ok {
			return nil, &Refusal{Rule: "subscription", Message: fmt.Sprintf(
				"the push subscription %q is not an app's: this relay delivers only from gmail-send-<app>-push for an app in APPS (%s); "+
					"the operator creates subscriptions through Terraform's apps variable", subscription, strings.Join(apps.Names(), ", "))}
		}
	}
	if name == "" {
		return nil, &Refusal{Rule: "subscription", Message: "the push names no subscription, so the app it came from is unknown; " +
			"only Pub/Sub push subscriptions created by Terraform may deliver to the sender"}
	}
	app := apps.byName[name]
	if app == nil {
		return nil, &Refusal{App: name, Rule: "app", Message: fmt.Sprintf(
			"app %q (subscription %q) is not declared in this relay's APPS (%s); the operator adds it to Terraform's apps variable and applies",
			name, subscription, strings.Join(apps.Names(), ", "))}
	}
	return app, nil
}

func (p *Policy) apps() *Apps {
	if p == nil || p.Apps == nil {
		return DefaultApps()
	}
	return p.Apps
}

// Check applies app's policy and the allow-list to r.
func (p *Policy) Check(app *App, r Request) *Refusal {
	if r.Account != "" {
		if !app.allows(r.Account) {
			return &Refusal{App: app.Name, Rule: "accounts", Message: fmt.Sprintf(
				"app %q may send only as %s, not as %s; to allow it, the operator adds %s (or *@%s) to the app's accounts in Terraform's apps variable",
				app.Name, listPatterns(app.Accounts), r.Account, r.Account, domainOf(r.Account))}
		}
		if p != nil && !p.Allow.Allows(r.Account) {
			return &Refusal{App: app.Name, Rule: "allow_list", Message: fmt.Sprintf(
				"%s is not on this relay's allow-list (ALLOWED_DOMAINS / ALLOWED_EMAILS), which changed after it was connected, so it may no longer send; "+
					"the operator adds it to the list, or disconnects the account", r.Account)}
		}
	}
	if r.Raw && !app.Raw {
		return &Refusal{App: app.Name, Rule: "raw", Message: fmt.Sprintf(
			"app %q may not send raw messages; send the request's fields (to, subject, text…) instead, or the operator sets raw = true for the app in Terraform's apps variable",
			app.Name)}
	}
	if r.Recipients > app.MaxRecipients {
		return &Refusal{App: app.Name, Rule: "max_recipients", Message: fmt.Sprintf(
			"app %q may send to at most %d recipients per message (To, Cc and Bcc together), and this request has %d; split it, or the operator raises the app's max_recipients",
			app.Name, app.MaxRecipients, r.Recipients)}
	}
	return nil
}

// allows matches email against the app's accounts.
func (a *App) allows(email string) bool {
	for _, p := range a.Accounts {
		switch {
		case p == "*", p == email:
			return true
		case strings.HasPrefix(p, "*@") && domainOf(email) == p[2:]:
			return true
		}
	}
	return false
}

func domainOf(email string) string {
	_, d, _ := strings.Cut(email, "@")
	return d
}

// listPatterns names an app's accounts for a message, at most five.
func listPatterns(ps []string) string {
	const shown = 5
	if len(ps) <= shown {
		return strings.Join(ps, ", ")
	}
	return strings.Join(ps[:shown], ", ") + fmt.Sprintf(" and %d more", len(ps)-shown)
}
