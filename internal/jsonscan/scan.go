// Package jsonscan reads JSON tokens from a byte slice in one pass, strictly:
// it accepts what json.Valid accepts and reads strings as json.Unmarshal
// does, without allocating per token. The relay decodes every send request
// and every Pub/Sub push with it; encoding/json's Decoder.Token and
// Unmarshal were most of those costs.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/bits"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Scanner reads JSON tokens from a byte slice in one pass. Decode used
// json.Decoder.Token, which allocates and rescans for every token; on a
// 10 KB request that was nearly all of Decode's time. The Scanner accepts
// what json.Valid accepts, reads strings as json.Unmarshal does, and moves
// through the same states as Decoder.Token, so that problems read as they
// did. Its errors are *SyntaxError for a grammar violation,
// io.ErrUnexpectedEOF for input that stops inside a value, and io.EOF for
// the end of the input between top-level values.
//
// Like Decoder.Token it reads a sequence of top-level values; the caller
// decides whether more than one is allowed. A Scanner must not be copied
// once in use: its stack may live inside it.
type Scanner struct {
	data  []byte
	pos   int       // next byte to read
	state scanState // what the grammar allows at pos
	stack []byte    // '[' or '{' per open container, innermost last
	small [8]byte   // stack's first home: a request nests three deep
	err   error     // sticky: after a syntax error the rest cannot be trusted

	// val holds the contents of the last string token, unescaped, or the
	// text of the last number. It aliases data or buf, so it is valid only
	// until the next call to Next.
	val []byte
	// buf is reused to unescape strings, so that a string with escapes
	// costs no more allocations than one without.
	buf    []byte
	pooled *[]byte // where buf came from, to return it
}

// New returns a Scanner over data. Call release when done with it
// and with every val it returned.
func New(data []byte) Scanner {
	p := unescapeBufs.Get().(*[]byte)
	return Scanner{data: data, buf: *p, pooled: p}
}

// SkipRest consumes the rest of a value whose first token was k: nothing
// more for a scalar, through the matching close for an object or array.
func (s *Scanner) SkipRest(k Kind) error {
	depth := 0
	for {
		switch k {
		case BeginObject, BeginArray:
			depth++
		case EndObject, EndArray:
			depth--
		}
		if depth == 0 {
			return nil
		}
		var err error
		if k, err = s.Next(); err != nil {
			return err
		}
	}
}

// Value is the contents of the last String token, unescaped, or the text of
// the last Number. It is valid only until the next call to Next or Release.
func (s *Scanner) Value() []byte { return s.val }

// Release hands the unescape buffer back for the next Scanner.
func (s *Scanner) Release() {
	if s.pooled == nil || cap(s.buf) > maxPooledBuf {
		return
	}
	*s.pooled = s.buf[:0]
	unescapeBufs.Put(s.pooled)
	s.buf, s.val, s.pooled = nil, nil, nil
}

// unescapeBufs lends scanners their unescape buffers. A request's bodies
// usually carry escapes (json.Marshal writes "<" as \u003c), and a buffer
// per request was most of what decoding one allocated.
var unescapeBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuf keeps a rare huge body from pinning its buffer in the pool.
const maxPooledBuf = 64 << 10

// Kind is what the Scanner found.
type Kind uint8

const (
	BeginObject Kind = iota + 1
	EndObject
	BeginArray
	EndArray
	String // Scanner.val holds the unescaped contents
	Number // Scanner.val holds the literal text
	True
	False
	Null
)

// scanState mirrors the states of Decoder.Token, so that the same input
// fails at the same byte with the same complaint.
type scanState uint8

const (
	stateTop scanState = iota // between top-level values
	stateArrayStart
	stateArrayValue // after a comma in an array
	stateArrayComma // after an array element
	stateObjectStart
	stateObjectKey   // after a comma in an object
	stateObjectColon // after a key
	stateObjectValue // after a colon
	stateObjectComma // after a member's value
)

// maxDepth is encoding/json's nesting limit. A request never nests beyond
// three levels; the limit is there so that hostile input gets an error, and
// holds the container stack to a bounded size.
const maxDepth = 10000

// SyntaxError is a violation of the JSON grammar. Unlike json.SyntaxError,
// whose Offset counts the bytes read before the fault was seen, Offset is the
// index of the byte at fault, so that a message can point at it.
type SyntaxError struct {
	msg    string
	Offset int64
}

func (e *SyntaxError) Error() string { return e.msg }

func (s *Scanner) fail(offset int, msg string) error {
	s.err = &SyntaxError{msg: msg, Offset: int64(offset)}
	return s.err
}

// charError words a complaint about byte c as encoding/json does.
func (s *Scanner) charError(offset int, c byte, context string) error {
	return s.fail(offset, "invalid character "+quoteChar(c)+" "+context)
}

// eof records that the input stopped short of what the grammar requires.
func (s *Scanner) eof() error {
	s.err = io.ErrUnexpectedEOF
	return s.err
}

// quoteChar spells c the way encoding/json's messages do, so that problems
// read the same as before the Scanner replaced it.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	q := strconv.Quote(string(rune(c)))
	return "'" + q[1:len(q)-1] + "'"
}

// InputOffset is the index just past the last token returned, or, after an
// error, of the token that failed: what Decoder.InputOffset reports.
func (s *Scanner) InputOffset() int64 { return int64(s.pos) }

// More reports whether another element or member follows in the current
// array or object. Like Decoder.More it only peeks: a byte that cannot
// follow is left for Next to reject.
func (s *Scanner) More() bool {
	c, ok := s.peek()
	return ok && c != ']' && c != '}'
}

// peek skips white space and returns the byte after it. At the end of the
// input it leaves pos where it was, as Decoder.InputOffset does.
func (s *Scanner) peek() (byte, bool) {
	for i := s.pos; i < len(s.data); i++ {
		switch c := s.data[i]; c {
		case ' ', '\t', '\r', '\n':
		default:
			s.pos = i
			return c, true
		}
	}
	return 0, false
}

// Next reads the next token, consuming the commas and colons before it.
func (s *Scanner) Next() (Kind, error) {
	if s.err != nil {
		return 0, s.err
	}
	for {
		c, ok := s.peek()
		if !ok {
			if s.state == stateTop {
				return 0, io.EOF
			}
			return 0, s.eof()
		}
		switch c {
		case '{', '[':
			if !s.valueAllowed() {
				return 0, s.tokenError(c)
			}
			if len(s.stack) >= maxDepth {
				return 0, s.charError(s.pos, c, "exceeded max depth")
			}
			if s.stack == nil {
				s.stack = s.small[:0]
			}
			s.stack = append(s.stack, c)
			s.pos++
			if c == '{' {
				s.state = stateObjectStart
				return BeginObject, nil
			}
			s.state = stateArrayStart
			return BeginArray, nil

		case '}', ']':
			open, closed := byte('{'), EndObject
			if c == ']' {
				open, closed = '[', EndArray
			}
			if len(s.stack) == 0 || s.stack[len(s.stack)-1] != open || !s.canClose() {
				return 0, s.tokenError(c)
			}
			s.stack = s.stack[:len(s.stack)-1]
			s.pos++
			s.valueEnd()
			return closed, nil

		case ':':
			if s.state != stateObjectColon {
				return 0, s.tokenError(c)
			}
			s.pos++
			s.state = stateObjectValue

		case ',':
			switch s.state {
			case stateArrayComma:
				s.state = stateArrayValue
			case stateObjectComma:
				s.state = stateObjectKey
			default:
				return 0, s.tokenError(c)
			}
			s.pos++

		case '"':
			key := s.state == stateObjectStart || s.state == stateObjectKey
			if !key && !s.valueAllowed() {
				return 0, s.tokenError(c)
			}
			if err := s.scanString(); err != nil {
				return 0, err
			}
			if key {
				s.state = stateObjectColon
			} else {
				s.valueEnd()
			}
			return String, nil

		default:
			if !s.valueAllowed() {
				return 0, s.tokenError(c)
			}
			k, err := s.scanScalar(c)
			if err != nil {
				return 0, err
			}
			s.valueEnd()
			return k, nil
		}
	}
}

func (s *Scanner) valueAllowed() bool {
	switch s.state {
	case stateTop, stateArrayStart, stateArrayValue, stateObjectValue:
		return true
	}
	return false
}

// canClose reports whether the innermost container may end here: not after
// a comma, a key or a colon.
func (s *Scanner) canClose() bool {
	switch s.state {
	case stateArrayStart, stateArrayComma, stateObjectStart, stateObjectComma:
		return true
	}
	return false
}

// valueEnd moves past a complete value to what may follow it.
func (s *Scanner) valueEnd() {
	switch {
	case len(s.stack) == 0:
		s.state = stateTop
	case s.stack[len(s.stack)-1] == '[':
		s.state = stateArrayComma
	default:
		s.state = stateObjectComma
	}
}

// tokenError rejects byte c where the grammar allows no such token, in
// the words Decoder.Token uses.
func (s *Scanner) tokenError(c byte) error {
	var context string
	switch s.state {
	case stateArrayComma:
		context = "after array element"
	case stateObjectStart, stateObjectKey:
		context = "looking for beginning of object key string"
	case stateObjectColon:
		context = "after object key"
	case stateObjectComma:
		context = "after object key:value pair"
	default:
		context = "looking for beginning of value"
	}
	return s.charError(s.pos, c, context)
}

// scanScalar reads a number or a literal starting with c at s.pos.
func (s *Scanner) scanScalar(c byte) (Kind, error) {
	switch {
	case c == '-' || '0' <= c && c <= '9':
		end, err := s.scanNumber()
		if err != nil {
			return 0, err
		}
		s.val = s.data[s.pos:end]
		s.pos = end
		return Number, nil
	case c == 't':
		return True, s.scanLiteral("true")
	case c == 'f':
		return False, s.scanLiteral("false")
	case c == 'n':
		return Null, s.scanLiteral("null")
	}
	return 0, s.charError(s.pos, c, "looking for beginning of value")
}

func (s *Scanner) scanLiteral(lit string) error {
	for k := 1; k < len(lit); k++ {
		i := s.pos + k
		if i >= len(s.data) {
			return s.eof()
		}
		if c := s.data[i]; c != lit[k] {
			return s.charError(i, c, "in literal "+lit+" (expecting "+quoteChar(lit[k])+")")
		}
	}
	s.pos += len(lit)
	return nil
}

// scanNumber returns the end of the number at s.pos, by RFC 8259's
// grammar. Whatever follows the number is left for Next to judge, as
// Decoder.Token does: "01" is the number 0 and then an unexpected 1.
func (s *Scanner) scanNumber() (int, error) {
	data := s.data
	i := s.pos
	if data[i] == '-' {
		i++
		if i >= len(data) {
			return 0, s.eof()
		}
		if !isDigit(data[i]) {
			return 0, s.charError(i, data[i], "in numeric literal")
		}
	}
	if data[i] == '0' {
		i++
	} else {
		i = skipDigits(data, i+1)
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) {
			return 0, s.eof()
		}
		if !isDigit(data[i]) {
			return 0, s.charError(i, data[i], "after decimal point in numeric literal")
		}
		i = skipDigits(data, i+1)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) {
			return 0, s.eof()
		}
		if !isDigit(data[i]) {
			return 0, s.charError(i, data[i], "in exponent of numeric literal")
		}
		i = skipDigits(data, i+1)
	}
	return i, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func skipDigits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

// plain marks the bytes that stand for themselves inside a string: printable
// ASCII other than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Masks for examining eight bytes at once.
const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// special marks, by setting its top bit, each byte of w (eight bytes,
// little-endian) that is not plain: one below 0x20 (subtracting 0x20 wraps
// it), one of 0x80 and above, the quote or the backslash. A term can mark a
// byte wrongly only above a byte it marks rightly, through a borrow, so the
// lowest mark is always exact.
func special(w uint64) uint64 {
	ctlOrHigh := (w - lowBits*0x20) | w
	quote := zeroBytes(w ^ lowBits*'"')
	bslash := zeroBytes(w ^ lowBits*'\\')
	return (ctlOrHigh | quote | bslash) & highBits
}

// zeroBytes sets the top bit of each zero byte of v (and perhaps of bytes
// above one).
func zeroBytes(v uint64) uint64 { return (v - lowBits) &^ v }

// skipPlain returns the index of the first byte at or after i that is not
// plain, or len(data). Strings are most of a request, so it looks at eight
// bytes a turn.
func skipPlain(data []byte, i int) int {
	for i+8 <= len(data) {
		if m := special(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
	}
	for i < len(data) && plain[data[i]] {
		i++
	}
	return i
}

// scanString reads the string whose quote is at s.pos. Most strings have no
// escapes and valid UTF-8, and their contents are then a slice of data. The
// rest are rewritten into buf by rewriteString from the first byte that
// needs it.
func (s *Scanner) scanString() error {
	data := s.data
	start := s.pos + 1
	i := start
	for {
		i = skipPlain(data, i)
		if i >= len(data) {
			return s.eof()
		}
		c := data[i]
		switch {
		case c == '"':
			s.val = data[start:i]
			s.pos = i + 1
			return nil
		case c < ' ':
			return s.charError(i, c, "in string literal")
		case c >= utf8.RuneSelf:
			// Two-byte sequences, the common case in European text,
			// without a call.
			if c >= 0xC2 && c <= 0xDF && i+1 < len(data) && data[i+1]&0xC0 == 0x80 {
				i += 2
				continue
			}
			if r, size := utf8.DecodeRune(data[i:]); r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		// A backslash, or a byte that is not UTF-8.
		return s.rewriteString(start, i)
	}
}

// rewriteString finishes the string that began at start, from i, where its
// first escape or invalid byte is: it writes the contents into buf as
// encoding/json's unquote would, escapes replaced by what they stand for,
// and invalid UTF-8 and unpaired surrogates by U+FFFD, since Decode must
// read the same request as json.Unmarshal.
//
// HTML that json.Marshal wrote is dense with escapes (every "<" and ">"),
// so the plain runs between them are short. They are copied eight bytes at
// a time as they are examined: a whole word is stored, and the output then
// keeps only the bytes before the first that is not plain.
func (s *Scanner) rewriteString(start, i int) error {
	data := s.data
	buf := s.buf[:0]
	// Room for the whole string, as usual when it holds no quote escape,
	// and for a word stored past its end: growing by doubling would copy a
	// long body several times over.
	if n := bytes.IndexByte(data[i:], '"'); n >= 0 && i-start+n+8 > cap(buf) {
		buf = make([]byte, 0, i-start+n+8)
	}
	buf = append(buf, data[start:i]...)
	for {
		for i+8 <= len(data) && cap(buf)-len(buf) >= 8 {
			w := binary.LittleEndian.Uint64(data[i:])
			n := len(buf)
			binary.LittleEndian.PutUint64(buf[n:n+8], w)
			if m := special(w); m != 0 {
				k := bits.TrailingZeros64(m) / 8
				buf = buf[:n+k]
				i += k
				break
			}
			buf = buf[:n+8]
			i += 8
		}
		if i >= len(data) {
			return s.eof()
		}
		c := data[i]
		if c != '\\' {
			switch {
			case c == '"':
				s.buf, s.val = buf, buf
				s.pos = i + 1
				return nil
			case c < ' ':
				return s.charError(i, c, "in string literal")
			case c < utf8.RuneSelf:
				// Plain, within eight bytes of the end or with buf full.
				buf = append(buf, c)
				i++
			case c >= 0xC2 && c <= 0xDF && i+1 < len(data) && data[i+1]&0xC0 == 0x80:
				buf = append(buf, c, data[i+1])
				i += 2
			default:
				r, size := utf8.DecodeRune(data[i:])
				if r == utf8.RuneError && size == 1 {
					buf = append(buf, string(utf8.RuneError)...)
				} else {
					buf = append(buf, data[i:i+size]...)
				}
				i += size
			}
			continue
		}
		// A backslash.
		if i+1 >= len(data) {
			return s.eof()
		}
		e := data[i+1]
		if e != 'u' {
			b := unescaped[e]
			if b == 0 {
				return s.charError(i+1, e, "in string escape code")
			}
			buf = append(buf, b)
			i += 2
			continue
		}
		r := rune(-1)
		if i+6 <= len(data) {
			if data[i+2] == '0' && data[i+3] == '0' {
				// \u00XX, as json.Marshal writes "<", ">" and "&": a
				// Latin-1 code point, with no surrogate to pair.
				hi, lo := hexDigits[data[i+4]], hexDigits[data[i+5]]
				if hi|lo >= 0 {
					if c := byte(hi)<<4 | byte(lo); c < utf8.RuneSelf {
						buf = append(buf, c)
					} else {
						buf = append(buf, 0xC0|c>>6, 0x80|c&0x3F)
					}
					i += 6
					continue
				}
			}
			r = hexValue(data[i+2 : i+6])
		}
		if r < 0 {
			return s.hexError(i + 2)
		}
		i += 6
		if utf16.IsSurrogate(r) {
			// Only a well-formed \u escape right after can complete the
			// pair; anything else is read afresh, and any error in it
			// reported, on the next turn of the loop.
			r2 := rune(-1)
			if i+6 <= len(data) && data[i] == '\\' && data[i+1] == 'u' {
				r2 = hexValue(data[i+2 : i+6])
			}
			if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
				r = pair
				i += 6
			} else {
				r = utf8.RuneError
			}
		}
		buf = utf8.AppendRune(buf, r)
	}
}

// unescaped maps the byte after a backslash to the byte it stands for, and
// every byte that may not follow a backslash to 0. \u is read apart.
var unescaped = [256]byte{
	'"':  '"',
	'\\': '\\',
	'/':  '/',
	'b':  '\b',
	'f':  '\f',
	'n':  '\n',
	'r':  '\r',
	't':  '\t',
}

// hexError reports what is wrong with the four hex digits of the \u
// escape at i.
func (s *Scanner) hexError(i int) error {
	for k := i; k < i+4; k++ {
		if k >= len(s.data) {
			return s.eof()
		}
		if c := s.data[k]; hexDigits[c] < 0 {
			return s.charError(k, c, `in \u hexadecimal character escape`)
		}
	}
	return s.charError(i, s.data[i], `in \u hexadecimal character escape`) // not reached
}

// hexValue is the value of four hex digits, or negative if they are not.
func hexValue(b []byte) rune {
	_ = b[3]
	return rune(hexDigits[b[0]])<<12 | rune(hexDigits[b[1]])<<8 | rune(hexDigits[b[2]])<<4 | rune(hexDigits[b[3]])
}

// hexDigits holds the value of each hex digit, and -1 for every other byte;
// or-ing four of them, shifted, leaves a negative result if any was -1.
var hexDigits = func() (t [256]int8) {
	for c := range t {
		switch {
		case '0' <= c && c <= '9':
			t[c] = int8(c - '0')
		case 'a' <= c && c <= 'f':
			t[c] = int8(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			t[c] = int8(c - 'A' + 10)
		default:
			t[c] = -1
		}
	}
	return t
}()
