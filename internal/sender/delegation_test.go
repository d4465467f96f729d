package sender_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/delegation"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/events"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

const (
	delegateSA = "delegate@relay-project.iam.gserviceaccount.com"
	zoe        = "zoe@example.net"
)

// accountEvents records account events: the fake of sender.Events.
type accountEvents struct {
	mu  sync.Mutex
	got []events.Account
}

var _ sender.Events = (*accountEvents)(nil)

func (a *accountEvents) Publish(_ context.Context, e *events.Account) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, *e)
	return nil
}

func (a *accountEvents) all() []events.Account {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]events.Account(nil), a.got...)
}

// delegatedSender is the Env's sender with example.net delegated to
// delegateSA, through the real impersonate code against the sandbox.
func delegatedSender(t *testing.T, e *sendertest.Env, ev sender.Events) *sender.Sender {
	t.Helper()
	d, err := delegation.New(context.Background(), delegation.Config{ServiceAccount: delegateSA,
		ClientID: sandbox.ServiceAccountClientID(delegateSA), Domains: []string{"example.net"}, Endpoint: e.URL})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sender.New(sender.Options{
		Ledger: e.Ledger, Accounts: e.Registry, Tokens: e.Tokens, Results: e.Publisher, OAuth: e.OAuth,
		Gmail: gmail.New(e.URL+"/", nil), ConnectURL: sendertest.ConnectURL, Now: e.Clock.Now,
		Delegation: d, Events: ev,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authorise(t *testing.T, e *sendertest.Env, enabled bool) {
	t.Helper()
	if err := e.Sandbox.SetDelegation(sandbox.Delegation{Domain: "example.net", ClientID: sandbox.ServiceAccountClientID(delegateSA),
		Scopes: []string{sandbox.ScopeGmailSend}, Enabled: enabled}); err != nil {
		t.Fatal(err)
	}
}

// TestDelegatedUserSendsWithoutConnect: a user of a delegated domain that
// never connected is sent as, registered as delegated, and N sends make one
// signJwt call: the minted token is cached for its hour.
func TestDelegatedUserSendsWithoutConnect(t *testing.T) {
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		e := sendertest.New(t, sendertest.Options{Store: store})
		authorise(t, e, true)
		s := delegatedSender(t, e, nil)
		const n = 5
		for i := range n {
			wantAck(t, e.DeliverTo(s, delivery(fmt.Sprintf("m%d", i), sendertest.NewRequest(zoe, fmt.Sprintf("k%d", i)))))
			if r := oneResult(t, e); r.Event.Status != "sent" {
				t.Fatalf("send %d: result %+v, want sent", i, r.Event)
			}
		}
		wantOutbox(t, e, n)
		for _, m := range e.Outbox() {
			if m.Email != zoe {
				t.Fatalf("outbox message sent as %s, want %s", m.Email, zoe)
			}
		}
		if st := e.Sandbox.Stats(); st.SignJWTCalls != 1 || st.DelegatedTokens != 1 {
			t.Fatalf("sandbox stats %+v: want 1 signJwt call and 1 delegated token for %d sends", st, n)
		}
		a := e.Account(zoe)
		if a.Kind != registry.KindDelegated || a.Status != registry.StatusConnected {
			t.Fatalf("registry has %+v, want zoe connected and delegated", a)
		}
		if _, err := e.Tokens.Load(context.Background(), zoe); err == nil {
			t.Fatal("a refresh token was stored for a delegated account")
		}
	})
}

// TestDelegationRevokedFailsWithAdminFix: once the admin withdraws the
// delegation and the cached token has gone, the next request fails for
// good with the admin's fix, the log raises the alert, and one account
// event goes out however many requests fail.
func TestDelegationRevokedFailsWithAdminFix(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{})
	authorise(t, e, true)
	ev := &accountEvents{}
	s := delegatedSender(t, e, ev)
	wantAck(t, e.DeliverTo(s, delivery("m1", sendertest.NewRequest(zoe, "k1"))))
	oneResult(t, e)

	authorise(t, e, false)
	// The hour of the cached token ends (Google does not take back a
	// token already issued): Gmail answers 401, and the relay mints anew.
	e.Sandbox.ExpireAccessTokens(zoe)
	for i := 2; i <= 3; i++ {
		wantAck(t, e.DeliverTo(s, delivery(fmt.Sprintf("m%d", i), sendertest.NewRequest(zoe, fmt.Sprintf("k%d", i)))))
		wantFailed(t, oneResult(t, e), "domain_policy", false,
			"unauthorized_client", "a Workspace super admin must authorise client ID "+sandbox.ServiceAccountClientID(delegateSA)+" for https://www.googleapis.com/auth/gmail.send",
			"Admin console → Security → Access and data control → API controls → Domain-wide delegation")
	}
	wantOutbox(t, e, 1)
	got := ev.all()
	if len(got) != 1 || got[0].Type != sender.EventDelegationDenied || got[0].Account != zoe || !strings.Contains(got[0].Reason, "Domain-wide delegation") {
		t.Fatalf("account events = %+v, want one delegation_denied for zoe with the fix", got)
	}
	logs := e.Logs.String()
	if !strings.Contains(logs, `"alert":"delegation_denied"`) || strings.Count(logs, `"alert":"delegation_denied"`) != 1 {
		t.Fatalf("want exactly one alert log line, logs:\n%s", logs)
	}
	if strings.Contains(logs, "ya29.") {
		t.Fatal("an access token reached the logs")
	}

	// Authorised again: the next request is sent, and a later refusal
	// raises a new event.
	authorise(t, e, true)
	wantAck(t, e.DeliverTo(s, delivery("m4", sendertest.NewRequest(zoe, "k4"))))
	if r := oneResult(t, e); r.Event.Status != "sent" {
		t.Fatalf("after re-authorising: %+v, want sent", r.Event)
	}
}

func TestDelegatedRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		setup    func(t *testing.T, e *sendertest.Env, s *sender.Sender)
		account  string
		code     string
		contains []string
	}{
		{"unknown user", func(t *testing.T, e *sendertest.Env, _ *sender.Sender) {
			_ = e.Sandbox.SetDelegatedUser("ghost@example.net", sandbox.UserUnknown)
		}, "ghost@example.net", "unknown_account", []string{"Invalid email or User ID", "suspended"}},
		{"suspended user", func(t *testing.T, e *sendertest.Env, _ *sender.Sender) {
			_ = e.Sandbox.SetDelegatedUser("sam@example.net", sandbox.UserSuspended)
		}, "sam@example.net", "unknown_account", []string{"Invalid email or User ID"}},
		{"domain not delegated", func(t *testing.T, e *sendertest.Env, _ *sender.Sender) {}, "zoe@example.com", "unknown_account", []string{"is not connected"}},
		{"disconnected by the operator", func(t *testing.T, e *sendertest.Env, s *sender.Sender) {
			wantAck(t, e.DeliverTo(s, delivery("first", sendertest.NewRequest(zoe, "first"))))
			oneResult(t, e)
			if _, _, err := e.Registry.SetStatus(context.Background(), zoe, registry.StatusDisconnected, "disconnected by the operator", e.Clock.Now()); err != nil {
				t.Fatal(err)
			}
		}, zoe, "unknown_account", []string{"was disconnected by the operator", "Workspace admin's step"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := sendertest.New(t, sendertest.Options{})
			authorise(t, e, true)
			s := delegatedSender(t, e, nil)
			c.setup(t, e, s)
			before := len(e.Outbox())
			wantAck(t, e.DeliverTo(s, delivery("m", sendertest.NewRequest(c.account, "k"))))
			wantFailed(t, oneResult(t, e), c.code, false, c.contains...)
			wantOutbox(t, e, before)
			if c.account != zoe {
				if _, err := e.Registry.Get(context.Background(), c.account); err == nil {
					t.Fatalf("%s was registered although no token was minted", c.account)
				}
			}
		})
	}
}

// TestConnectedAccountInDelegatedDomainKeepsOAuth: a mailbox its owner
// connected sends with its own token, not through delegation.
func TestConnectedAccountInDelegatedDomainKeepsOAuth(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{})
	authorise(t, e, true)
	e.Connect(zoe)
	s := delegatedSender(t, e, nil)
	wantAck(t, e.DeliverTo(s, delivery("m", sendertest.NewRequest(zoe, "k"))))
	if r := oneResult(t, e); r.Event.Status != "sent" {
		t.Fatalf("result %+v, want sent", r.Event)
	}
	if st := e.Sandbox.Stats(); st.SignJWTCalls != 0 || st.TokenRefreshes != 1 {
		t.Fatalf("stats %+v: want a refresh and no signJwt", st)
	}
	if a := e.Account(zoe); a.Delegated() {
		t.Fatalf("account became delegated: %+v", a)
	}
}
