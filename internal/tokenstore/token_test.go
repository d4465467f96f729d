package tokenstore_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

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
