package tokenstore

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"
)

// Token is what the relay keeps for one connected mailbox. Its JSON form,
// with these field names, is the secret payload (DESIGN §4).
//
// Printing a Token with any fmt verb, or logging it with slog, shows
// RefreshToken as [REDACTED]. encoding/json does not redact, since the JSON
// form is the stored payload: never marshal a Token into a log or a response.
type Token struct {
	RefreshToken string    `json:"refresh_token"`
	Scopes       []string  `json:"scopes"`
	IssuedAt     time.Time `json:"issued_at"`
	ClientID     string    `json:"client_id"`
}

const redacted = "[REDACTED]"

// redactedRefreshToken keeps "was a token present?" visible, which is what
// debugging needs, and nothing else.
func (t Token) redactedRefreshToken() string {
	if t.RefreshToken == "" {
		return ""
	}
	return redacted
}

// String implements fmt.Stringer without the refresh token.
func (t Token) String() string {
	return fmt.Sprintf("Token{RefreshToken:%s Scopes:%v IssuedAt:%s ClientID:%s}",
		t.redactedRefreshToken(), t.Scopes, t.IssuedAt.Format(time.RFC3339Nano), t.ClientID)
}

// GoString implements fmt.GoStringer without the refresh token.
func (t Token) GoString() string {
	return fmt.Sprintf("tokenstore.Token{RefreshToken:%q, Scopes:%#v, IssuedAt:%#v, ClientID:%q}",
		t.redactedRefreshToken(), t.Scopes, t.IssuedAt, t.ClientID)
}

// Format implements fmt.Formatter. Without it, verbs such as %d or %x would
// walk the struct's fields and print the refresh token.
func (t Token) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, t.GoString())
	case verb == 'q':
		_, _ = io.WriteString(f, strconv.Quote(t.String()))
	default:
		_, _ = io.WriteString(f, t.String())
	}
}

// LogValue implements slog.LogValuer without the refresh token.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("refresh_token", t.redactedRefreshToken()),
		slog.Any("scopes", t.Scopes),
		slog.Time("issued_at", t.IssuedAt),
		slog.String("client_id", t.ClientID),
	)
}

var (
	_ fmt.Stringer   = Token{}
	_ fmt.GoStringer = Token{}
	_ fmt.Formatter  = Token{}
	_ slog.LogValuer = Token{}
)
