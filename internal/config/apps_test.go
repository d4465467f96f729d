package config

import (
	"context"
	"strings"
	"testing"
)

func senderEnv(extra map[string]string) map[string]string {
	env := map[string]string{"GOOGLE_CLOUD_PROJECT": "p", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s"}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// TestSenderApps: APPS and the allow-list reach the sender's policy.
func TestSenderApps(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom[Sender](context.Background(), MapLookuper(senderEnv(map[string]string{
		"APPS":            `{"billing":{"accounts":["alice@example.com"]},"crm":{"accounts":["*@example.org"],"raw":true,"max_recipients":20}}`,
		"ALLOWED_DOMAINS": " Example.ORG ",
		"ALLOWED_EMAILS":  "Alice@Example.com",
	})))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Policy()
	if !p.Apps.Declared() || strings.Join(p.Apps.Names(), ",") != "billing,crm" || p.Apps.Get("crm").MaxRecipients != 20 {
		t.Errorf("apps = %v", p.Apps.Names())
	}
	if !p.Allow.Allows("alice@example.com") || !p.Allow.Allows("dan@example.org") || p.Allow.Allows("carol@example.com") {
		t.Errorf("allow-list = %+v, want it normalised", p.Allow)
	}
}

func TestSenderAppsUnset(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom[Sender](context.Background(), MapLookuper(senderEnv(nil)))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Policy()
	if p.Apps.Declared() || p.Apps.Get("default") == nil || !p.Apps.Get("default").Raw {
		t.Errorf("apps = %v, want the implicit default app with raw", p.Apps.Names())
	}
	// A struct built without Validate (as tests do) gets the same.
	if p := (&Sender{}).Policy(); p.Apps.Get("default") == nil {
		t.Errorf("Policy() without Validate has no default app")
	}
}

// TestSenderAppsProblems: every bad app is named, with the variable, among
// the configuration's other problems.
func TestSenderAppsProblems(t *testing.T) {
	t.Parallel()
	_, err := LoadFrom[Sender](context.Background(), MapLookuper(senderEnv(map[string]string{
		"APPS":            `{"Billing":{"accounts":["alice@example.com"]},"crm":{"accounts":[],"max_recipients":101}}`,
		"ALLOWED_DOMAINS": "not a domain",
		"SEND_LEASE":      "1s",
	})))
	if err == nil {
		t.Fatal("bad APPS accepted")
	}
	for _, want := range []string{`APPS: app "Billing": the name must be`, `APPS: app "crm": accounts is empty`, `APPS: app "crm": max_recipients 101`, `ALLOWED_DOMAINS: "not a domain"`, "SEND_LEASE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}
