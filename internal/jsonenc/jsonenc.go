// Package jsonenc writes JSON strings as encoding/json does, appending to a
// byte slice. The standard library exports no appending escaper, and the
// hot paths that write JSON by hand (result events, log lines) need one
// that json.Marshal's output can be checked against byte for byte.
package jsonenc

import "unicode/utf8"

// AppendString appends s as a JSON string, as encoding/json writes one with
// its default HTML escaping: <, > and & as \u escapes, the short escapes
// for backspace, form feed, newline, return and tab, other control
// characters as \u00XX, invalid UTF-8 as \ufffd, and U+2028 and U+2029
// escaped.
func AppendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safe[c] {
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

// safe marks the ASCII bytes that stand for themselves in a JSON string as
// encoding/json writes one: printable, and not a quote, a backslash or one
// of the HTML characters it escapes.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()
