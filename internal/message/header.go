package message

import "strings"

// field is one header field as composed: a canonical name and its value
// before folding. A header is a []field in the order of the wire.
type field struct {
	name, value string
}

// Folding limits of go-message's header writer, whose output this package
// reproduces byte for byte (TestComposeMatchesGoMessage): a line is folded
// at the last blank before the preferred length, or, when a word would have
// to be split there, before the hard one.
const (
	preferredHeaderLen = 76
	hardHeaderLen      = maxLineLen
)

// appendHeader appends the fields and the empty line that ends a header.
// Callers have run checkFields: names are field names and values carry no
// CR or LF.
func appendHeader(dst []byte, h []field) []byte {
	for _, f := range h {
		dst = appendField(dst, f.name, f.value)
	}
	return append(dst, '\r', '\n')
}

// appendField appends one folded field. It is go-message's
// formatHeaderField, with two differences: it appends instead of
// concatenating strings (which was quadratic in the field's length), and a
// name too long to leave room on its first line folds the value at its
// first blank where go-message would index out of range and panic. That
// panic was reachable: a custom header name may be 96 characters long.
func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	if value == "" {
		return append(dst, '\r', '\n')
	}
	used := len(name) + 2 // on the first line only
	for value != "" {
		line, fold, next, ok := foldLine(value, max(preferredHeaderLen-used, 1))
		if !ok {
			line, fold, next, _ = foldLine(value, max(hardHeaderLen-used, 1))
		}
		dst = append(dst, line...)
		dst = append(dst, fold...)
		value, used = next, 0
	}
	return dst
}

// foldLine splits v before maxlen (at least 1) bytes: line goes on this
// line followed by fold, and next starts the continuation line. ok is false
// when no blank was found and fold had to insert one, which changes the
// value; the caller then retries with the hard limit.
func foldLine(v string, maxlen int) (line, fold, next string, ok bool) {
	foldBefore := maxlen + 1
	if foldBefore > len(v) {
		if v[len(v)-1] != '\n' {
			fold = "\r\n"
		}
		return v, fold, "", true
	}
	at := strings.LastIndexAny(v[:foldBefore], " \t\n")
	switch {
	case at == 0:
		// The blank at the start is the one the previous fold left.
		at = foldBefore - 1
	case at < 0:
		// No blank: fold inside the word (0 when maxlen is 1, so that the
		// whole value moves to the hard limit's retry).
		at = foldBefore - 2
	}
	ok = true
	switch v[at] {
	case ' ', '\t':
		if v[at-1] != '\n' {
			fold = "\r\n"
		}
	case '\n':
	default:
		fold, ok = "\r\n ", false
	}
	return v[:at], fold, v[at:], ok
}
