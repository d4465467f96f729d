package tokenstore_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

func TestSecretID(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^gmail-token-[0-9a-f]{64}$`)
	base := tokenstore.SecretID("alice@example.com")
	for _, variant := range []string{"alice@example.com", "Alice@Example.com", "ALICE@EXAMPLE.COM", "  alice@example.com\t", "\nalice@example.com\r\n"} {
		got := tokenstore.SecretID(variant)
		if got != base {
			t.Errorf("SecretID(%q) = %s, want %s", variant, got, base)
		}
	}
	if !valid.MatchString(base) || len(base) > 255 {
		t.Fatalf("SecretID = %q; want gmail-token- and 64 hex digits, at most 255 characters", base)
	}
	// Secret Manager's own rule for IDs.
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`).MatchString(tokenstore.SecretID(strings.Repeat("a", 1000) + "@example.com")) {
		t.Fatalf("SecretID of a long address is not a valid secret ID")
	}
	for _, other := range []string{"alice@example.org", "alice+x@example.com", "bob@example.com"} {
		if tokenstore.SecretID(other) == base {
			t.Errorf("SecretID(%q) collides with alice@example.com", other)
		}
	}
	// The known vector pins the hash: sha256("alice@example.com").
	if want := "gmail-token-ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"; base != want {
		t.Fatalf("SecretID = %s, want %s", base, want)
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"Alice@Example.COM":   "alice@example.com",
		"  bob@example.org\n": "bob@example.org",
		"":                    "",
	}
	for in, want := range tests {
		if got := tokenstore.NormalizeEmail(in); got != want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTokenNeverPrintsRefreshToken(t *testing.T) {
	t.Parallel()
	const secret = "1//0gLEAKED-refresh-token"
	tok := token(secret)
	type holder struct {
		Name  string
		Token tokenstore.Token
		Ptr   *tokenstore.Token
		List  []tokenstore.Token
	}
	h := holder{Name: "x", Token: tok, Ptr: &tok, List: []tokenstore.Token{tok}}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%X", "%T %v"} {
		outputs = append(outputs,
			fmt.Sprintf(verb, tok), fmt.Sprintf(verb, &tok), fmt.Sprintf(verb, h), fmt.Sprintf(verb, []tokenstore.Token{tok}))
	}
	outputs = append(outputs, tok.String(), tok.GoString(), fmt.Sprint(tok), fmt.Sprintln(h))
	for _, handler := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		logger := slog.New(handler(&buf))
		logger.Info("saved", "token", tok, "ptr", &tok, slog.Any("any", tok), slog.Group("g", "t", tok))
		outputs = append(outputs, buf.String())
	}
	for _, out := range outputs {
		if strings.Contains(out, "LEAKED") {
			t.Fatalf("output shows the refresh token: %s", out)
		}
	}

	// Redaction still says whether a token is present and keeps the rest.
	if s := tok.String(); !strings.Contains(s, "[REDACTED]") || !strings.Contains(s, tok.ClientID) {
		t.Fatalf("String() = %q; want [REDACTED] and the client ID", s)
	}
	if s := fmt.Sprintf("%#v", tok); !strings.HasPrefix(s, "tokenstore.Token{") || !strings.Contains(s, "gmail.send") {
		t.Fatalf("%%#v = %q", s)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("saved", "token", tok)
	var rec struct {
		Token map[string]any `json:"token"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("slog JSON: %v", err)
	}
	if rec.Token["refresh_token"] != "[REDACTED]" || rec.Token["client_id"] != tok.ClientID {
		t.Fatalf("slog JSON token = %v", rec.Token)
	}
	if s := (tokenstore.Token{}).String(); strings.Contains(s, "[REDACTED]") {
		t.Fatalf("an empty token claims to hold a refresh token: %s", s)
	}
}

// The JSON form is the stored payload, so it must keep the token; this pins
// the DESIGN §4 field names.
func TestTokenJSONIsThePayloadFormat(t *testing.T) {
	t.Parallel()
	raw, err := json.Marshal(token("rt"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"refresh_token", "scopes", "issued_at", "client_id"} {
		if _, ok := m[k]; !ok {
			t.Errorf("payload lacks %q: %s", k, raw)
		}
	}
	if m["refresh_token"] != "rt" || len(m) != 4 {
		t.Fatalf("payload = %s", raw)
	}
}
