package config

import (
	"context"
	"maps"
	"strings"
	"testing"
)

func TestDelegation(t *testing.T) {
	t.Parallel()
	base := map[string]string{"GOOGLE_CLOUD_PROJECT": "p", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s", "ADMIN_REQUIRE_AUTH": "false"}
	cases := []struct {
		name string
		env  map[string]string
		want []string // problems named; none means valid
	}{
		{"unset", map[string]string{}, nil},
		{"set", map[string]string{"DELEGATED_DOMAINS": "Example.NET, example.org", "DELEGATE_SERVICE_ACCOUNT": "delegate@p.iam.gserviceaccount.com"}, nil},
		{"no account", map[string]string{"DELEGATED_DOMAINS": "example.net"}, []string{"DELEGATE_SERVICE_ACCOUNT is not set"}},
		{"no domains", map[string]string{"DELEGATE_SERVICE_ACCOUNT": "delegate@p.iam.gserviceaccount.com"}, []string{"DELEGATED_DOMAINS is empty"}},
		{"bad values", map[string]string{"DELEGATED_DOMAINS": "example.net,not a domain", "DELEGATE_SERVICE_ACCOUNT": "Delegate <d@p>", "DELEGATION_ENDPOINT": "http://sandbox.example"},
			[]string{`"not a domain"`, "DELEGATE_SERVICE_ACCOUNT", "DELEGATION_ENDPOINT"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env := maps.Clone(base)
			maps.Copy(env, c.env)
			l := MapLookuper(env)
			var errs []error
			var got []Delegation
			if cfg, err := LoadFrom[Sender](context.Background(), l); err != nil {
				errs = append(errs, err)
			} else {
				got = append(got, cfg.Delegation)
			}
			if cfg, err := LoadFrom[Admin](context.Background(), l); err != nil {
				errs = append(errs, err)
			} else {
				got = append(got, cfg.Delegation)
			}
			if cfg, err := LoadFrom[Healthcheck](context.Background(), l); err != nil {
				errs = append(errs, err)
			} else {
				got = append(got, cfg.Delegation)
			}
			if len(c.want) == 0 {
				if len(errs) > 0 {
					t.Fatalf("valid settings refused: %v", errs)
				}
				for _, d := range got {
					if c.name == "set" && (!d.Enabled() || d.DelegatedDomains[0] != "example.net" || d.DelegatedDomains[1] != "example.org") {
						t.Fatalf("domains not normalised: %+v", d)
					}
				}
				return
			}
			if len(errs) != 3 {
				t.Fatalf("%d of 3 functions refused %v, want all: %v", len(errs), c.env, errs)
			}
			for _, err := range errs {
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not name %s:\n%v", w, err)
					}
				}
			}
		})
	}
}
