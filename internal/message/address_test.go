package message

import (
	"net/mail"
	"testing"
)

// addressSeeds are addresses on both sides of parseAddress's shortcut.
var addressSeeds = []string{
	"bob@example.org", "Bob Example <bob@example.org>", "Bob <bob@example.org>", "J. R. Bob <bob@example.org>",
	"J..Bob <bob@example.org>", "o'brien+tag@example.org", "!#$%&'*+-/=?^_`{|}~@example.org",
	".bob@example.org", "bob.@example.org", "bo..b@example.org", "bob@example..org", "bob@", "@example.org",
	"bob@example.org (Bob)", "\"Bob\" <bob@example.org>", "Bob  Example <bob@example.org>", " Bob <bob@example.org>",
	"Bob <bob@example.org> ", "Bob<bob@example.org>", "=?utf-8?q?B=C3=B6b?= <bob@example.org>", "a=?b <bob@example.org>",
	"Böb <bob@example.org>", "bob@exämple.org", "Bob <bob@[192.0.2.1]>", "Bob <<bob@example.org>>", "Bob <bob@example.org",
	"Team: bob@example.org;", "Bob <a@b> <c@d>", "bob@example.org, eve@example.org", "<bob@example.org>", "x <@>",
}

// TestParseAddress: parseAddress reads every seed as mail.ParseAddress does,
// and takes its shortcut for the plain forms.
func TestParseAddress(t *testing.T) {
	t.Parallel()
	for _, s := range addressSeeds {
		checkParseAddress(t, s)
	}
	for _, s := range []string{"bob@example.org", "Bob Example <bob@example.org>", "J. R. Bob <bob@example.org>", "o'brien+tag@example.org"} {
		if _, _, ok := simpleAddress(s); !ok {
			t.Errorf("%q: no shortcut; want one", s)
		}
	}
}

// FuzzParseAddress: wherever parseAddress takes its shortcut, ParseAddress
// succeeds with the same name and address; elsewhere the two are one call.
func FuzzParseAddress(f *testing.F) {
	for _, s := range addressSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkParseAddress(t, s) })
}

func checkParseAddress(t *testing.T, s string) {
	t.Helper()
	got, gotErr := parseAddress(s)
	want, wantErr := mail.ParseAddress(s)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: parseAddress error %v; ParseAddress error %v", s, gotErr, wantErr)
	}
	if gotErr == nil && *got != *want {
		t.Fatalf("%q: parseAddress = %+v; ParseAddress = %+v", s, *got, *want)
	}
}
