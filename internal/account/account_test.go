package account_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/account"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{"  Alice@Example.COM\t", "alice@example.com"},
		{"\nBOB@EXAMPLE.ORG \r\n", "bob@example.org"},
		{"", ""},
		{"   ", ""},
	}
	for _, c := range cases {
		if got := account.Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestIDsPinned pins the IDs of a known address: the tokens and accounts
// already stored are found by exactly these strings.
func TestIDsPinned(t *testing.T) {
	t.Parallel()
	// sha256("alice@example.com")
	const hash = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
	for _, email := range []string{"alice@example.com", "Alice@Example.com", "ALICE@EXAMPLE.COM", "  alice@example.com\t", "\nalice@example.com\r\n"} {
		secretID, docID := account.IDs(email)
		if secretID != "gmail-token-"+hash {
			t.Errorf("secret ID of %q = %s, want gmail-token-%s", email, secretID, hash)
		}
		if docID != hash {
			t.Errorf("document ID of %q = %s, want %s", email, docID, hash)
		}
	}
}

func TestIDsValidAndDistinct(t *testing.T) {
	t.Parallel()
	secretRE := regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	// Firestore document IDs must not contain "/" nor be "." or "..".
	docRE := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]string{}
	for _, email := range []string{
		"alice@example.com", "bob@example.com", "alice@example.org", "alice+x@example.com",
		"a/b@example.com", "o'brien+tag@example.com", strings.Repeat("a", 1000) + "@example.com",
	} {
		secretID, docID := account.IDs(email)
		if !secretRE.MatchString(secretID) || !strings.HasPrefix(secretID, account.SecretIDPrefix) {
			t.Errorf("secret ID of %q = %q: not a valid token secret ID", email, secretID)
		}
		if !docRE.MatchString(docID) {
			t.Errorf("document ID of %q = %q: not 64 hex digits", email, docID)
		}
		if other, dup := seen[docID]; dup {
			t.Errorf("%q and %q share the ID %s", email, other, docID)
		}
		seen[docID] = email
	}
}
