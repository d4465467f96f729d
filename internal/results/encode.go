package results

import (
	"strconv"
	"unicode/utf8"
)

// appendJSON appends e as json.Marshal writes it, byte for byte
// (FuzzAppendJSON holds it to that). Marshal's reflection was most of the
// cost of turning a result into a message, for ten known fields.
func (e *Event) appendJSON(b []byte) ([]byte, error) {
	b = appendField(b, '{', "idempotency_key", e.IdempotencyKey)
	b = appendField(b, ',', "pubsub_message_id", e.PubSubMessageID)
	b = appendField(b, ',', "account", e.Account)
	b = appendField(b, ',', "status", string(e.Status))
	if e.GmailMessageID != "" {
		b = appendField(b, ',', "gmail_message_id", e.GmailMessageID)
	}
	if e.GmailThreadID != "" {
		b = appendField(b, ',', "gmail_thread_id", e.GmailThreadID)
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(e.Attempt), 10)
	t, err := e.FinishedAt.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b = append(append(b, `,"finished_at":`...), t...)
	if e.MaybeDuplicate {
		b = append(b, `,"maybe_duplicate":true`...)
	}
	if e.Error != nil {
		b = append(b, `,"error":`...)
		b = appendField(b, '{', "code", e.Error.Code)
		b = appendField(b, ',', "message", e.Error.Message)
		b = append(b, `,"retryable":`...)
		b = strconv.AppendBool(b, e.Error.Retryable)
		if e.Error.ReconnectURL != "" {
			b = appendField(b, ',', "reconnect_url", e.Error.ReconnectURL)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// appendField appends sep, the key (which needs no escaping) and the value
// as a JSON string.
func appendField(b []byte, sep byte, key, v string) []byte {
	b = append(append(append(b, sep, '"'), key...), '"', ':')
	return appendString(b, v)
}

// appendString appends s as a JSON string as encoding/json writes one with
// its default HTML escaping: <, > and & as \u escapes, the short escapes
// for backspace, form feed, newline, return and tab, other control
// characters as \u00XX, invalid UTF-8 as \ufffd, and U+2028 and U+2029
// escaped.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}
