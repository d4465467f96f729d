package message

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCheckSender: from, and a raw message's From, must be the account or
// one of its registered aliases, in any case; anything else is refused with
// the way to register the alias.
func TestCheckSender(t *testing.T) {
	t.Parallel()
	const account = "alice@example.com"
	aliases := []string{"Billing@Example.com", "alice@acme.example"}
	raw := func(from string) []byte {
		return []byte("From: " + from + "\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nbody\r\n")
	}
	cases := []struct {
		name    string
		req     Request
		aliases []string
		field   string // "" means allowed
	}{
		{name: "no from", req: Request{Account: account}},
		{name: "from is the account", req: Request{Account: account, From: account}},
		{name: "from is the account in another case", req: Request{Account: account, From: "ALICE@example.com"}},
		{name: "from is an alias", req: Request{Account: account, From: "alice@acme.example"}, aliases: aliases},
		{name: "from is an alias in another case", req: Request{Account: account, From: "billing@EXAMPLE.com"}, aliases: aliases},
		{name: "from not registered", req: Request{Account: account, From: "sales@example.com"}, aliases: aliases, field: "from"},
		{name: "from with no aliases", req: Request{Account: account, From: "billing@example.com"}, field: "from"},
		{name: "from of another account", req: Request{Account: "bob@example.com", From: "billing@example.com"}, field: "from"},

		{name: "raw from the account", req: Request{Account: account, Raw: raw("Alice <alice@example.com>")}},
		{name: "raw from an alias", req: Request{Account: account, Raw: raw("Billing <billing@example.com>")}, aliases: aliases},
		{name: "raw from another address", req: Request{Account: account, Raw: raw("mallory@example.com")}, aliases: aliases, field: "raw"},
		{name: "raw from an alias unregistered", req: Request{Account: account, Raw: raw("billing@example.com")}, field: "raw"},
		// Validate reports these; CheckSender has nothing to compare.
		{name: "raw without From", req: Request{Account: account, Raw: []byte("To: b@example.org\r\n\r\nx")}},
		{name: "raw unparseable", req: Request{Account: account, Raw: []byte("From: a@\r\n\r\nx")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.req.CheckSender(tc.aliases)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("CheckSender = %v, want nil", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) || len(ve.Problems) != 1 {
				t.Fatalf("CheckSender = %v, want one problem", err)
			}
			p := ve.Problems[0]
			if p.Field != tc.field {
				t.Errorf("field = %q, want %q", p.Field, tc.field)
			}
			// The fix names both halves: Gmail's verification, then the
			// relay's registration, for this account.
			for _, want := range []string{"does not match account", `"Send mail as"`, "scripts/admin.sh aliases " + tc.req.Account, "PUT /accounts/" + tc.req.Account + "/aliases"} {
				if !strings.Contains(p.Message, want) {
					t.Errorf("message %q lacks %q", p.Message, want)
				}
			}
		})
	}
}

// TestComposeFrom: an alias becomes the From address, under from_name; the
// Message-ID stays on the account's domain; an unregistered one is refused
// by Compose and ComposeTo alike, and raw goes through CheckRaw's aliases.
func TestComposeFrom(t *testing.T) {
	t.Parallel()
	r := validRequest()
	r.From, r.FromName = "billing@acme.example", "Acme Billing"
	raw, err := Compose(r, ComposeOptions{Now: time.Unix(0, 0), MessageIDKey: "k", Aliases: []string{"BILLING@acme.example"}})
	if err != nil {
		t.Fatal(err)
	}
	p := parseMessage(t, raw)
	if got := p.addresses(t, "From"); len(got) != 1 || got[0] != "Acme Billing <billing@acme.example>" {
		t.Errorf("From = %v, want Acme Billing <billing@acme.example>", got)
	}
	if got := p.header.Get("Message-Id"); got != MessageID("k", "example.com") {
		t.Errorf("Message-ID = %q, want it on the account's domain", got)
	}

	for name, compose := range map[string]func() error{
		"Compose": func() error { _, err := Compose(r, ComposeOptions{}); return err },
		"ComposeTo": func() error {
			var b strings.Builder
			_, err := ComposeTo(&b, r, ComposeOptions{Aliases: []string{"other@acme.example"}})
			if b.Len() > 0 {
				t.Errorf("ComposeTo wrote %d bytes of a refused message", b.Len())
			}
			return err
		},
	} {
		if err := compose(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "from: ") {
			t.Errorf("%s with billing@ unregistered = %v, want an invalid from", name, err)
		}
	}

	msg := []byte("From: billing@acme.example\r\nTo: bob@example.org\r\n\r\nx")
	if err := CheckRaw(msg, r.Account); !errors.Is(err, ErrInvalid) {
		t.Errorf("CheckRaw without aliases = %v, want invalid", err)
	}
	if err := CheckRaw(msg, r.Account, "billing@acme.example"); err != nil {
		t.Errorf("CheckRaw with the alias = %v", err)
	}
	if _, err := Compose(&Request{Account: r.Account, Raw: msg}, ComposeOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Compose of raw from an unregistered alias = %v, want invalid", err)
	}
}

// TestComposeRefusesBadFromUnvalidated: compose itself refuses a from that
// is not one bare address, even when Validate is bypassed, since net/mail
// would drop control characters and send as some other address.
func TestComposeRefusesBadFromUnvalidated(t *testing.T) {
	t.Parallel()
	for _, from := range []string{"a@example.com\r\nBcc: e@x.io", "Name <a@example.com>", "a@example.com, b@example.com"} {
		r := validRequest()
		r.From = from
		if _, err := compose(r, ComposeOptions{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("compose(from %q) = %v, want ErrInvalid", from, err)
		}
	}
}
