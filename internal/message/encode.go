package message

import (
	"encoding/base64"
	"io"
	"math/bits"
)

// The body encoders below write what go-message's writers would write
// (mime/quotedprintable for text, base64 in 76-character lines for
// attachments), byte for byte; encode_test.go holds them to that. They exist
// because the standard quoted-printable writer handles one byte at a time
// through a 78-byte line buffer, which made it the largest part of composing
// an ordinary message.

// qpLineMax is RFC 2045's limit on an encoded line, CRLF excluded.
const qpLineMax = 76

// qpLiteral marks the bytes quoted-printable may carry as they are: the
// printable ASCII characters but "=", and space and tab (which are encoded
// instead when they would end a line).
var qpLiteral = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = c != '='
	}
	t[' '], t['\t'] = true, true
	return t
}()

const upperHex = "0123456789ABCDEF"

// appendQP appends the quoted-printable encoding of s to dst. Like
// mime/quotedprintable's text mode, every LF, CR or CRLF becomes one CRLF
// line break, and a CR followed by encoded bytes still absorbs the next LF.
func appendQP(dst []byte, s string) []byte {
	e := qpEncoder{buf: dst, start: len(dst)}
	e.write(s)
	e.close()
	return e.buf
}

// qpEncoder is appendQP's state, kept between pieces of a long text.
type qpEncoder struct {
	buf   []byte
	start int  // where the current encoded line begins in buf
	cr    bool // the last line break was a CR, so an LF now adds nothing
}

func (e *qpEncoder) write(s string) {
	dst := e.buf
	for k := 0; k < len(s); {
		b := s[k]
		if qpLiteral[b] {
			// A run of literal bytes is found at once, then copied a line
			// at a time, with a soft break wherever the run goes on past
			// the soft-break column: prose without line breaks is one
			// run.
			end := literalRun(s, k+1, len(s))
			for k < end {
				room := qpLineMax - 1 - (len(dst) - e.start)
				if room == 0 {
					dst = append(dst, '=', '\r', '\n')
					e.start = len(dst)
					room = qpLineMax - 1
				}
				n := min(end-k, room)
				dst = append(dst, s[k:k+n]...)
				k += n
			}
			e.cr = false
			continue
		}
		k++
		switch b {
		case '\n', '\r':
			if e.cr && b == '\n' {
				e.cr = false
				continue
			}
			if b == '\r' {
				e.cr = true
			}
			dst = e.encodeTrailingSpace(dst)
			dst = append(dst, '\r', '\n')
			e.start = len(dst)
		default:
			dst = e.encodeByte(dst, b)
		}
	}
	e.buf = dst
}

// literalRun returns the end of the run of literal bytes in s[i:end]. It
// looks at eight bytes at a time, for the printable ASCII that is nearly
// every body, and steps over a tab, which is literal but looks like a
// control byte to the word test.
func literalRun(s string, i, end int) int {
	for i+8 <= end {
		_ = s[i+7]
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		m := notPrintable(w)
		if m == 0 {
			i += 8
			continue
		}
		// The lowest mark is exact.
		i += bits.TrailingZeros64(m) / 8
		if s[i] != '\t' {
			return i
		}
		i++
	}
	for i < end && qpLiteral[s[i]] {
		i++
	}
	return i
}

// notPrintable marks, with its high bit, each byte of w that is below
// space, "=", DEL or above, exactly for the lowest such byte (a borrow or a
// carry can mark bytes above it, never below). Adding one sets the high bit
// of DEL, and of any byte with it already set stays marked by or-ing w.
func notPrintable(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	below := (w - 0x20*ones) &^ w
	delOrAbove := (w + ones) | w
	eq := w ^ ('=' * ones)
	equals := (eq - ones) &^ eq
	return (below | delOrAbove | equals) & highs
}

// close ends the text, encoding a space or tab left at its end.
func (e *qpEncoder) close() { e.buf = e.encodeTrailingSpace(e.buf) }

// encodeByte appends "=XX", first breaking the line if it has no room.
func (e *qpEncoder) encodeByte(dst []byte, b byte) []byte {
	if qpLineMax-1-(len(dst)-e.start) < 3 {
		dst = append(dst, '=', '\r', '\n')
		e.start = len(dst)
	}
	return append(dst, '=', upperHex[b>>4], upperHex[b&0x0f])
}

// encodeTrailingSpace encodes a space or tab that would end a line, where a
// mail system may strip it.
func (e *qpEncoder) encodeTrailingSpace(dst []byte) []byte {
	if len(dst) == e.start {
		return dst
	}
	if b := dst[len(dst)-1]; b == ' ' || b == '\t' {
		return e.encodeByte(dst[:len(dst)-1], b)
	}
	return dst
}

// encodeChunk is how much input the streaming writers below encode before
// writing, so that a large body never has a second, encoded copy in memory.
const encodeChunk = 57 * 1024 // whole base64 lines

// writeQP writes the quoted-printable encoding of s to w in pieces. The
// current line stays in the buffer between pieces, because a line break may
// still change its last byte.
func writeQP(w io.Writer, s string, scratch []byte) ([]byte, error) {
	e := qpEncoder{buf: scratch[:0]}
	for len(s) > 0 {
		n := min(len(s), encodeChunk)
		e.write(s[:n])
		s = s[n:]
		if _, err := w.Write(e.buf[:e.start]); err != nil {
			return e.buf, err
		}
		e.buf = e.buf[:copy(e.buf, e.buf[e.start:])]
		e.start = 0
	}
	e.close()
	_, err := w.Write(e.buf)
	return e.buf, err
}

// writeBase64Lines writes data as appendBase64Lines does, in pieces.
func writeBase64Lines(w io.Writer, data []byte, scratch []byte) ([]byte, error) {
	for len(data) > 0 {
		n := min(len(data), encodeChunk)
		scratch = appendBase64Lines(scratch[:0], data[:n])
		data = data[n:]
		if len(data) > 0 {
			scratch = append(scratch, '\r', '\n')
		}
		if _, err := w.Write(scratch); err != nil {
			return scratch, err
		}
	}
	return scratch, nil
}

// b64Line is the input that fills one 76-character base64 line.
const b64Line = 57

// appendBase64Lines appends data as standard base64 in lines of 76
// characters separated by CRLF, with no line break after the last.
func appendBase64Lines(dst []byte, data []byte) []byte {
	for len(data) > 0 {
		n := min(len(data), b64Line)
		dst = base64.StdEncoding.AppendEncode(dst, data[:n])
		data = data[n:]
		if len(data) > 0 {
			dst = append(dst, '\r', '\n')
		}
	}
	return dst
}
