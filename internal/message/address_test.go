package message

import (
	"net/mail"
	"strings"
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

// addressForms are display names and addresses for formatting: plain ones
// that take writePlainAddress, and ones String must quote, escape or encode.
var addressForms = []mail.Address{
	{Name: "", Address: "bob@example.org"},
	{Name: "Acme Billing", Address: "billing@acme.example"},
	{Name: "J. R. \"Bob\" Dobbs", Address: "bob@example.org"},
	{Name: `back\slash`, Address: "bob@example.org"},
	{Name: "tab\there", Address: "bob@example.org"},
	{Name: "Grüße", Address: "bob@example.org"},
	{Name: "ctl\x01", Address: "bob@example.org"},
	{Name: "x", Address: "first.last@example.org"},
	{Name: "x", Address: "a..b@example.org"},
	{Name: "x", Address: "\"quoted local\"@example.org"},
	{Name: "x", Address: "user@"},
	{Name: "x", Address: "no-at"},
	{Name: "x", Address: "jörg@example.org"},
}

// TestWritePlainAddress: where the shortcut writes, it writes what String
// does, and it writes for the common forms.
func TestWritePlainAddress(t *testing.T) {
	t.Parallel()
	for _, a := range addressForms {
		checkPlainAddress(t, a.Name, a.Address)
	}
	for _, a := range addressForms[:2] {
		var b strings.Builder
		if !writePlainAddress(&b, &a) {
			t.Errorf("%+v: no shortcut; want one", a)
		}
	}
}

// FuzzWritePlainAddress: wherever writePlainAddress writes, it writes what
// (*mail.Address).String returns.
func FuzzWritePlainAddress(f *testing.F) {
	for _, a := range addressForms {
		f.Add(a.Name, a.Address)
	}
	f.Fuzz(checkPlainAddress)
}

func checkPlainAddress(t *testing.T, name, addr string) {
	t.Helper()
	a := &mail.Address{Name: name, Address: addr}
	var b strings.Builder
	if writePlainAddress(&b, a) && b.String() != a.String() {
		t.Fatalf("%+v: writePlainAddress wrote %q; String gives %q", *a, b.String(), a.String())
	}
}
