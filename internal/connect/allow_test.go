package connect

import (
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/oauth"
)

// TestAllowed checks the allow-list on identities the sandbox cannot
// produce, such as an address of an allowed Workspace domain held by a
// Google account outside that domain (no hd claim, or another one).
func TestAllowed(t *testing.T) {
	t.Parallel()
	workspace := Options{AllowedDomains: []string{"example.com"}}
	consumer := Options{AllowedDomains: []string{"gmail.com"}}
	both := Options{AllowedDomains: []string{"example.com"}, AllowedEmails: []string{"carol@example.org"}}
	cases := []struct {
		name string
		opts Options
		id   oauth.Identity
		want bool
	}{
		{"no restriction", Options{}, oauth.Identity{Email: "anyone@anywhere.example"}, true},
		{"workspace account of the domain", workspace, oauth.Identity{Email: "alice@example.com", HostedDomain: "example.com"}, true},
		{"address of the domain without hd", workspace, oauth.Identity{Email: "alice@example.com"}, false},
		{"address of the domain, hd of another", workspace, oauth.Identity{Email: "alice@example.com", HostedDomain: "evil.example"}, false},
		{"other domain with hd claiming ours", workspace, oauth.Identity{Email: "mallory@evil.example", HostedDomain: "example.com"}, false},
		{"subdomain", workspace, oauth.Identity{Email: "alice@mail.example.com", HostedDomain: "mail.example.com"}, false},
		{"consumer domain without hd", consumer, oauth.Identity{Email: "erin@gmail.com"}, true},
		{"listed address", both, oauth.Identity{Email: "carol@example.org", HostedDomain: "example.org"}, true},
		{"unlisted address of a listed address's domain", both, oauth.Identity{Email: "dave@example.org", HostedDomain: "example.org"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := c.opts.allowed(c.id); got != c.want {
				t.Errorf("allowed(%+v) = %v, want %v", c.id, got, c.want)
			}
		})
	}
}
