package message

import (
	"net/mail"
	"strings"
)

// parseAddress is mail.ParseAddress with a shortcut for the two forms nearly
// every request uses, "bob@example.org" and "Bob Example <bob@example.org>",
// in plain ASCII. net/mail's parser allocates for every word and tries each
// address twice over (as an addr-spec, then as a name-addr); with an address
// parsed in validation and again in composition it was 6% of a delivery's
// CPU. The shortcut answers only where ParseAddress would give the same
// Address (FuzzParseAddress holds it to that); anything else goes to
// ParseAddress.
func parseAddress(s string) (*mail.Address, error) {
	if name, addr, ok := simpleAddress(s); ok {
		return &mail.Address{Name: name, Address: addr}, nil
	}
	return mail.ParseAddress(s)
}

// simpleAddress splits s if it is a bare dot-atom addr-spec, or a phrase of
// plain atoms separated by single spaces, one space, and that addr-spec in
// angle brackets.
func simpleAddress(s string) (name, addr string, ok bool) {
	if !strings.HasSuffix(s, ">") {
		return "", s, isAddrSpec(s)
	}
	i := strings.LastIndex(s, " <")
	if i <= 0 {
		return "", "", false
	}
	name, addr = s[:i], s[i+2:len(s)-1]
	if !isPhrase(name) || !isAddrSpec(addr) {
		return "", "", false
	}
	return name, addr, true
}

// isAddrSpec reports whether s is local@domain with both sides dot-atoms of
// ASCII atext: no leading, trailing or doubled dot.
func isAddrSpec(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && isASCIIDotAtom(local) && isASCIIDotAtom(domain)
}

// isPhrase reports whether s is words of ASCII atext and dots separated by
// single spaces, none of which could be an RFC 2047 encoded-word (which
// net/mail would decode).
func isPhrase(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") || strings.Contains(s, "=?") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ' ' && c != '.' && !atext[c] {
			return false
		}
	}
	return true
}

// atext marks RFC 5322's atext in ASCII: the visible characters but the
// specials.
var atext = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = !strings.ContainsRune(`()<>[]:;@\,".`, c)
	}
	return t
}()
