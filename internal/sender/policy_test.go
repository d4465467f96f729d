package sender_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/policy"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// The apps: billing may send only as alice, crm as anyone at
// example.org, with raw.
const testApps = `{"billing":{"accounts":["alice@example.com"],"max_recipients":2},"crm":{"accounts":["*@example.org"],"raw":true}}`

func appsPolicy(t *testing.T, allow policy.AllowList) *policy.Policy {
	t.Helper()
	apps, errs := policy.ParseApps(testApps)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return &policy.Policy{Apps: apps, Allow: allow}
}

func onSub(msgID, sub string, req sendertest.Request) sender.Delivery {
	d := delivery(msgID, req)
	if sub != "" {
		d.Subscription = "projects/p/subscriptions/" + sub
	}
	return d
}

const rawMsg = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: raw\r\n\r\nRaw body.\r\n"

// TestPolicy: each app sends only as the accounts, with the raw permission
// and up to the recipients its policy gives; every refusal is a permanent
// forbidden result naming the app and the rule, before Gmail or the ledger
// is touched.
func TestPolicy(t *testing.T) {
	t.Parallel()
	dan := "dan@example.org"
	cases := []struct {
		name     string
		sub      string
		account  string
		req      sendertest.Request
		allow    policy.AllowList
		wantApp  string
		contains []string // empty: sent
	}{
		{name: "alice on billing", sub: "gmail-send-billing-push", account: alice, wantApp: "billing"},
		{name: "carol on billing", sub: "gmail-send-billing-push", account: "carol@example.com", wantApp: "billing",
			contains: []string{`app "billing" may send only as alice@example.com`, "carol@example.com", "accounts in Terraform's apps variable"}},
		{name: "raw on billing", sub: "gmail-send-billing-push", account: alice, wantApp: "billing",
			req:      sendertest.Request{"account": alice, "raw": []byte(rawMsg), "idempotency_key": "k"},
			contains: []string{`app "billing" may not send raw messages`}},
		{name: "too many recipients on billing", sub: "gmail-send-billing-push", account: alice, wantApp: "billing",
			req:      sendertest.NewRequest(alice, "k").With("to", []string{"a@example.org", "b@example.org"}, "cc", []string{"c@example.org"}),
			contains: []string{`at most 2 recipients`, "has 3"}},
		{name: "dan on crm", sub: "gmail-send-crm-push", account: dan, wantApp: "crm"},
		{name: "raw on crm", sub: "gmail-send-crm-push", account: dan, wantApp: "crm",
			req: sendertest.Request{"account": dan, "raw": []byte("From: dan@example.org\r\nTo: bob@example.org\r\n\r\nx"), "idempotency_key": "k"}},
		{name: "alice on crm", sub: "gmail-send-crm-push", account: alice, wantApp: "crm", contains: []string{`app "crm" may send only as *@example.org`}},
		{name: "unknown subscription", sub: "rogue", account: alice,
			contains: []string{`the push subscription "projects/p/subscriptions/rogue" is not an app's`}},
		{name: "undeclared app", sub: "gmail-send-hr-push", account: alice, wantApp: "hr", contains: []string{`app "hr"`, "not declared"}},
		{name: "default when apps are declared", sub: "gmail-send-push", account: alice, wantApp: "default", contains: []string{`app "default"`}},
		// The allow-list changed after dan connected: he no longer sends.
		{name: "off the allow-list at send time", sub: "gmail-send-crm-push", account: dan, wantApp: "crm",
			allow:    policy.AllowList{Domains: []string{"example.com"}},
			contains: []string{"dan@example.org is not on this relay's allow-list", "ALLOWED_DOMAINS"}},
		{name: "on the allow-list", sub: "gmail-send-billing-push", account: alice, wantApp: "billing",
			allow: policy.AllowList{Emails: []string{alice}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := sendertest.New(t, sendertest.Options{Policy: appsPolicy(t, tc.allow)})
			e.Connect(tc.account)
			before := e.Requests.Gmail() + e.Requests.Count(sendertest.RouteToken)
			req := tc.req
			if req == nil {
				req = sendertest.NewRequest(tc.account, "k")
			}
			wantAck(t, e.Deliver(onSub("ps-1", tc.sub, req)))
			r := oneResult(t, e)
			if r.Event.App != tc.wantApp || (tc.wantApp != "" && r.Attributes["app"] != tc.wantApp) {
				t.Errorf("result app %q, attribute %q; want %q", r.Event.App, r.Attributes["app"], tc.wantApp)
			}
			if len(tc.contains) == 0 {
				if r.Event.Status != results.StatusSent {
					t.Fatalf("result = %+v; want sent", r.Event)
				}
				wantOutbox(t, e, 1)
				return
			}
			wantFailed(t, r, "forbidden", false, tc.contains...)
			if r.Event.Account != tc.account || r.Event.IdempotencyKey != "k" || r.Event.Error.ReconnectURL != "" {
				t.Errorf("result = %+v", r.Event)
			}
			wantOutbox(t, e, 0)
			if n := e.Requests.Gmail() + e.Requests.Count(sendertest.RouteToken) - before; n != 0 {
				t.Errorf("Google saw %d requests for a refused send", n)
			}
			// Nothing was claimed: the key is not taken in any scope.
			if rec, err := e.Ledger.Get(context.Background(), ledger.Scope{App: tc.wantApp, Account: tc.account, Key: "k"}.ID()); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("a refused request left a ledger record %+v (%v)", rec, err)
			}
			// A redelivery is refused the same way.
			wantAck(t, e.Deliver(onSub("ps-1", tc.sub, req)))
			wantFailed(t, oneResult(t, e), "forbidden", false, tc.contains...)
		})
	}
}

// TestPolicyScopesIdempotency: the same key from alice on billing and from
// dan on crm is two requests, two messages (DESIGN §3: idempotency is
// scoped to app, account and key).
func TestPolicyScopesIdempotency(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{Policy: appsPolicy(t, policy.AllowList{})})
	e.Connect(alice)
	e.Connect("dan@example.org")
	wantAck(t, e.Deliver(onSub("ps-1", "gmail-send-billing-push", sendertest.NewRequest(alice, "shared-key"))))
	wantAck(t, e.Deliver(onSub("ps-2", "gmail-send-crm-push", sendertest.NewRequest("dan@example.org", "shared-key"))))
	rs := e.Results()
	if len(rs) != 2 {
		t.Fatalf("got %d results, want 2", len(rs))
	}
	// Results arrive in any order.
	sent := map[string]string{}
	for _, r := range rs {
		if r.Event.Status == results.StatusSent {
			sent[r.Event.App] = r.Event.Account
		}
	}
	if sent["billing"] != alice || sent["crm"] != "dan@example.org" {
		t.Errorf("sent app -> account = %v; want billing: alice, crm: dan (results %+v)", sent, rs)
	}
	wantOutbox(t, e, 2)
}

// TestPolicyDefault: without a policy (APPS unset) every push is the
// default app's and may send as any account, raw included, as before apps.
func TestPolicyDefault(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{})
	e.Connect(alice)
	wantAck(t, e.Deliver(onSub("ps-1", "anything", sendertest.Request{"account": alice, "raw": []byte(rawMsg), "idempotency_key": "k"})))
	r := oneResult(t, e)
	if r.Event.Status != results.StatusSent || r.Event.App != "default" || r.Attributes["app"] != "default" {
		t.Fatalf("result = %+v attrs %v; want sent on the default app", r.Event, r.Attributes)
	}
}
