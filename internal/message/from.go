package message

import (
	"slices"

	"github.com/gmailrelay/gmailrelay/internal/account"
)

// CheckSender checks who the message is sent as, from or the raw message's
// From: it must be the account or one of aliases, its registered send-as
// aliases, compared as account.Normalize does. Gmail would silently replace
// any other From with the account's address, so such a request is refused
// with the way to register the alias rather than sent as something else.
// It returns a *ValidationError; a From that does not parse is Validate's
// to report, not this.
func (r *Request) CheckSender(aliases []string) error {
	var p problems
	s := senders{account: r.Account, aliases: aliases}
	switch {
	case len(r.Raw) > 0:
		h, err := readRawHeader(r.Raw)
		if err != nil {
			return nil
		}
		if list, err := parseRawAddressList(h.Get("From")); err == nil && len(list) == 1 {
			p.sentAs("raw", "the From address", list[0].Address, s)
		}
	case r.From != "":
		p.sentAs("from", "", r.From, s)
	}
	return p.err()
}

// senders is whom a message may be sent as.
type senders struct {
	account string
	aliases []string
}

func (s senders) allows(addr string) bool {
	n := account.Normalize(addr)
	if n == account.Normalize(s.account) {
		return true
	}
	return slices.ContainsFunc(s.aliases, func(a string) bool { return account.Normalize(a) == n })
}

// sentAs adds a problem unless s allows addr. what prefixes the address in
// the message ("the From address" for raw).
func (p *problems) sentAs(field, what, addr string, s senders) {
	if s.allows(addr) {
		return
	}
	subject := quote(addr)
	if what != "" {
		subject = what + " " + subject
	}
	p.add(field, "%s does not match account %s or any of its registered send-as aliases, and Gmail would send it as %s instead. "+
		"To send as an alias, the mailbox's owner first adds and verifies it in Gmail (Settings, Accounts, \"Send mail as\"), "+
		"then the relay's operator registers it: scripts/admin.sh aliases %s ALIAS..., or PUT /accounts/%s/aliases on admin with {\"aliases\": [...]}",
		subject, quote(s.account), s.account, s.account, s.account)
}
