package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseApps(t *testing.T) {
	t.Parallel()
	apps, errs := ParseApps(`{"billing":{"accounts":["Alice@Example.com"," *@Example.org "]},"crm":{"accounts":["*"],"raw":true,"max_recipients":10},"ops":{"accounts":["bob@example.com"],"raw":null,"max_recipients":null}}`)
	if len(errs) > 0 {
		t.Fatalf("ParseApps: %v", errs)
	}
	if !apps.Declared() || strings.Join(apps.Names(), ",") != "billing,crm,ops" {
		t.Fatalf("apps = %v declared %v", apps.Names(), apps.Declared())
	}
	b := apps.Get("billing")
	if strings.Join(b.Accounts, ",") != "alice@example.com,*@example.org" || b.Raw || b.MaxRecipients != 100 {
		t.Errorf("billing = %+v, want normalised accounts, raw false, max 100", b)
	}
	if c := apps.Get("crm"); !c.Raw || c.MaxRecipients != 10 {
		t.Errorf("crm = %+v", c)
	}
	// Terraform's jsonencode writes an unset optional as null.
	if o := apps.Get("ops"); o.Raw || o.MaxRecipients != 100 {
		t.Errorf("ops = %+v, want null read as unset", o)
	}
	topics := apps.Topics()
	if len(topics) != 3 || topics["gmail-send-billing"] != b || apps.SubscriptionOf("gmail-send-billing") != "gmail-send-billing-push" {
		t.Errorf("topics = %v", topics)
	}
}

func TestParseAppsUnset(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "  \n"} {
		apps, errs := ParseApps(s)
		if len(errs) > 0 || apps.Declared() {
			t.Fatalf("ParseApps(%q) = %v, %v", s, apps, errs)
		}
		d := apps.Get(DefaultApp)
		if d == nil || !d.Raw || d.MaxRecipients != 100 || strings.Join(d.Accounts, ",") != "*" {
			t.Fatalf("default app = %+v, want * with raw", d)
		}
		if topics := apps.Topics(); len(topics) != 1 || topics["gmail-send"] != d || apps.SubscriptionOf("gmail-send") != "gmail-send-push" {
			t.Errorf("topics = %v", topics)
		}
	}
}

// TestParseAppsProblems: every problem is reported, each naming its app.
func TestParseAppsProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, apps string
		want       []string // one fragment per problem, in order
	}{
		{"not JSON", `{"billing":`, []string{"is not a JSON object"}},
		{"array", `["billing"]`, []string{"is not a JSON object"}},
		{"empty object", `{}`, []string{"declares no app"}},
		{"bad name", `{"Billing":{"accounts":["*"]}}`, []string{`app "Billing": the name must be`}},
		{"long name", `{"a234567890123456789012345678901x":{"accounts":["*"]}}`, []string{"the name must be"}},
		{"reserved", `{"results":{"accounts":["*"]}}`, []string{`app "results": the name is reserved`}},
		{"no accounts", `{"billing":{}}`, []string{`app "billing": accounts is empty`}},
		{"empty accounts", `{"billing":{"accounts":[]}}`, []string{"accounts is empty"}},
		{"bad address", `{"billing":{"accounts":["alice@"]}}`, []string{`"alice@" is not a bare email address`}},
		{"display name", `{"billing":{"accounts":["Alice <alice@example.com>"]}}`, []string{"is not a bare email address"}},
		{"bad domain", `{"billing":{"accounts":["*@example"]}}`, []string{`"example" is not a domain name`}},
		{"partial wildcard", `{"billing":{"accounts":["a*@example.com"]}}`, []string{"a wildcard may only be"}},
		{"max 0", `{"billing":{"accounts":["*"],"max_recipients":0}}`, []string{"max_recipients 0 is outside 1..100"}},
		{"max 101", `{"billing":{"accounts":["*"],"max_recipients":101}}`, []string{"max_recipients 101 is outside"}},
		{"typo", `{"billing":{"accounts":["*"],"max_recipient":5}}`, []string{`unknown field "max_recipient"`}},
		{"wrong type", `{"billing":{"accounts":"alice@example.com"}}`, []string{`app "billing": is not an object`}},
		{"several", `{"Bad":{"accounts":["*"]},"crm":{"accounts":["x@"],"max_recipients":500}}`,
			[]string{`app "Bad": the name`, `app "crm": accounts: "x@"`, `app "crm": max_recipients 500`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			apps, errs := ParseApps(tc.apps)
			if apps != nil || len(errs) != len(tc.want) {
				t.Fatalf("ParseApps(%s) = %v, %v; want %d problems", tc.apps, apps, errs, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestAppFor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sub, app string
		ok       bool
	}{
		{"projects/p/subscriptions/gmail-send-push", "default", true},
		{"gmail-send-push", "default", true},
		{"projects/p/subscriptions/gmail-send-billing-push", "billing", true},
		{"projects/p/subscriptions/gmail-send-push-push", "push", true},
		{"projects/p/subscriptions/gmail-send-default-push", "default", true},
		{"projects/p/subscriptions/gmail-send-dev", "", false},
		{"projects/p/subscriptions/gmail-send-Billing-push", "", false},
		{"projects/p/subscriptions/gmail-send--push", "", false},
		{"projects/p/subscriptions/other", "", false},
		{"", "", false},
	}
	for _, tc := range cases {
		app, ok := AppFor(tc.sub)
		if app != tc.app || ok != tc.ok {
			t.Errorf("AppFor(%q) = %q, %v; want %q, %v", tc.sub, app, ok, tc.app, tc.ok)
		}
	}
	// Every app's own subscription maps back to it.
	for _, name := range []string{"billing", "a", "crm-eu-2"} {
		if app, ok := AppFor("projects/p/subscriptions/" + SubscriptionFor(name)); !ok || app != name {
			t.Errorf("AppFor(SubscriptionFor(%q)) = %q, %v", name, app, ok)
		}
	}
}

func mustApps(t *testing.T, s string) *Apps {
	t.Helper()
	apps, errs := ParseApps(s)
	if len(errs) > 0 {
		t.Fatalf("ParseApps: %v", errs)
	}
	return apps
}

const issueApps = `{"billing":{"accounts":["alice@example.com"],"max_recipients":2},"crm":{"accounts":["*@example.org"],"raw":true}}`

func TestPolicyApp(t *testing.T) {
	t.Parallel()
	p := &Policy{Apps: mustApps(t, issueApps)}
	cases := []struct {
		name, sub, preset string
		app, rule, msg    string
	}{
		{name: "billing", sub: "projects/p/subscriptions/gmail-send-billing-push", app: "billing"},
		{name: "preset without subscription", preset: "crm", app: "crm"},
		{name: "subscription wins over preset", sub: "projects/p/subscriptions/gmail-send-crm-push", preset: "billing", app: "crm"},
		{name: "default not declared", sub: "projects/p/subscriptions/gmail-send-push", rule: "app", msg: `app "default" (subscription "projects/p/subscriptions/gmail-send-push") is not declared in this relay's APPS (billing, crm)`},
		{name: "undeclared app", sub: "projects/p/subscriptions/gmail-send-hr-push", rule: "app", msg: `app "hr"`},
		{name: "foreign subscription", sub: "projects/p/subscriptions/sneaky", rule: "subscription", msg: `the push subscription "projects/p/subscriptions/sneaky" is not an app's`},
		{name: "no subscription", rule: "subscription", msg: "names no subscription"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app, r := p.App(tc.sub, tc.preset)
			if tc.rule == "" {
				if r != nil || app == nil || app.Name != tc.app {
					t.Fatalf("App() = %+v, %v; want app %q", app, r, tc.app)
				}
				return
			}
			if app != nil || r == nil || r.Rule != tc.rule || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("App() = %+v, %+v; want rule %q with %q", app, r, tc.rule, tc.msg)
			}
		})
	}
}

// TestPolicyAppUndeclared: without APPS every delivery is the default
// app's, whatever its subscription, as before apps existed.
func TestPolicyAppUndeclared(t *testing.T) {
	t.Parallel()
	for _, p := range []*Policy{nil, {}, {Apps: mustApps(t, "")}} {
		for _, sub := range []string{"", "projects/p/subscriptions/gmail-send-push", "projects/p/subscriptions/push", "projects/p/subscriptions/gmail-send-billing-push"} {
			app, r := p.App(sub, "")
			if r != nil || app == nil || app.Name != DefaultApp {
				t.Errorf("App(%q) = %+v, %v; want the default app", sub, app, r)
			}
			if r := p.Check(app, Request{Account: "anyone@example.net", Raw: true, Recipients: 100}); r != nil {
				t.Errorf("Check() = %v, want the default app to allow it", r)
			}
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	apps := mustApps(t, issueApps)
	billing, crm := apps.Get("billing"), apps.Get("crm")
	open := &Policy{Apps: apps}
	listed := &Policy{Apps: apps, Allow: AllowList{Domains: []string{"example.org"}, Emails: []string{"alice@example.com"}}}
	cases := []struct {
		name string
		p    *Policy
		app  *App
		req  Request
		rule string
		msg  string
	}{
		{name: "alice on billing", p: open, app: billing, req: Request{Account: "alice@example.com", Recipients: 2}},
		{name: "carol on billing", p: open, app: billing, req: Request{Account: "carol@example.com", Recipients: 1}, rule: "accounts",
			msg: `app "billing" may send only as alice@example.com, not as carol@example.com; to allow it, the operator adds carol@example.com (or *@example.com) to the app's accounts`},
		{name: "dan on crm", p: open, app: crm, req: Request{Account: "dan@example.org", Raw: true, Recipients: 100}},
		{name: "subdomain on crm", p: open, app: crm, req: Request{Account: "dan@eu.example.org"}, rule: "accounts", msg: `may send only as *@example.org`},
		{name: "raw on billing", p: open, app: billing, req: Request{Account: "alice@example.com", Raw: true, Recipients: 1}, rule: "raw",
			msg: `app "billing" may not send raw messages`},
		{name: "too many on billing", p: open, app: billing, req: Request{Account: "alice@example.com", Recipients: 3}, rule: "max_recipients",
			msg: `app "billing" may send to at most 2 recipients per message (To, Cc and Bcc together), and this request has 3`},
		{name: "unknown count", p: open, app: billing, req: Request{Account: "alice@example.com", Recipients: -1}},
		{name: "no account: left to validation", p: open, app: billing, req: Request{Recipients: 1}},
		{name: "allow-listed email", p: listed, app: billing, req: Request{Account: "alice@example.com"}},
		{name: "allow-listed domain", p: listed, app: crm, req: Request{Account: "dan@example.org"}},
		{name: "off the allow-list", p: &Policy{Apps: apps, Allow: AllowList{Domains: []string{"example.net"}}}, app: crm,
			req: Request{Account: "dan@example.org"}, rule: "allow_list", msg: "dan@example.org is not on this relay's allow-list (ALLOWED_DOMAINS / ALLOWED_EMAILS)"},
		// The app's own rule is named first: it is the one its publisher
		// can act on.
		{name: "both refuse", p: &Policy{Apps: apps, Allow: AllowList{Emails: []string{"x@example.net"}}}, app: billing,
			req: Request{Account: "carol@example.com"}, rule: "accounts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.p.Check(tc.app, tc.req)
			if tc.rule == "" {
				if r != nil {
					t.Fatalf("Check() = %v, want allowed", r)
				}
				return
			}
			if r == nil || r.Rule != tc.rule || r.App != tc.app.Name || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("Check() = %+v, want rule %q naming %q with %q", r, tc.rule, tc.app.Name, tc.msg)
			}
			var err error = r
			var got *Refusal
			if !errors.As(err, &got) || err.Error() != r.Message {
				t.Errorf("Refusal as error = %v", err)
			}
		})
	}
}

func TestListPatterns(t *testing.T) {
	t.Parallel()
	if got := listPatterns([]string{"a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io", "f@x.io", "g@x.io"}); got != "a@x.io, b@x.io, c@x.io, d@x.io, e@x.io and 2 more" {
		t.Errorf("listPatterns = %q", got)
	}
}
