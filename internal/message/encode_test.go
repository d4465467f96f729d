package message

import (
	"bytes"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"

	"encoding/binary"
	gomessage "github.com/emersion/go-message"
	"math/bits"
)

// stdQP is what mime/quotedprintable writes for s, which go-message used for
// every text part before appendQP.
func stdQP(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// goMessageBase64 is the body go-message writes for an attachment.
func goMessageBase64(t testing.TB, data []byte) []byte {
	var h gomessage.Header
	h.Set("Content-Transfer-Encoding", "base64")
	var b bytes.Buffer
	w, err := gomessage.CreateWriter(&b, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, body, _ := bytes.Cut(b.Bytes(), []byte("\r\n\r\n"))
	return body
}

func TestAppendQPMatchesStandardWriter(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200)
	cases := []string{
		"", "a", "=", " ", "\t", "a ", "a\t", " \n", "a \r\nb", "a\rb", "a\r\nb", "a\n\rb", "\r\r\n\n",
		"é", "naïve café", "\x00\x01\x7f\xff", "line one\nline two\n",
		long, strings.Repeat("=", 100), strings.Repeat(" ", 100), strings.Repeat("é", 60),
		strings.Repeat("a", 74) + " \n", strings.Repeat("a", 75) + " ", strings.Repeat("a", 73) + "é",
		strings.Repeat("a", 72) + "==", strings.Repeat("a", 74) + "\t", "\ré\n", "x\r=\ny",
		"<p>Hello</p>\n<p>Total: 42 €</p>\n",
	}
	for _, s := range cases {
		if got, want := appendQP(nil, s), stdQP(t, s); !bytes.Equal(got, want) {
			t.Errorf("appendQP(%q)\n got %q\nwant %q", s, got, want)
		}
	}
	// Random text over an alphabet dense in the cases that matter: line
	// ends, trailing whitespace, bytes to escape, and long runs.
	alphabet := []string{"a", "b", " ", "\t", "\r", "\n", "\r\n", "=", "é", "\x00", "\xff", strings.Repeat("z", 70)}
	r := rand.New(rand.NewPCG(7, 11))
	for range 5000 {
		var sb strings.Builder
		for range r.IntN(40) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()
		if got, want := appendQP(nil, s), stdQP(t, s); !bytes.Equal(got, want) {
			t.Fatalf("appendQP(%q)\n got %q\nwant %q", s, got, want)
		}
	}
}

func TestAppendQPKeepsPrefix(t *testing.T) {
	t.Parallel()
	// The line length counts from where the encoding starts, not from the
	// start of dst.
	got := appendQP([]byte("prefix"), strings.Repeat("a", 80))
	if want := append([]byte("prefix"), stdQP(t, strings.Repeat("a", 80))...); !bytes.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAppendBase64LinesMatchesGoMessage(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 5))
	for _, n := range []int{0, 1, 2, 3, 56, 57, 58, 114, 1000, 57 * 40, 57*40 + 1, 100_000} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		if got, want := appendBase64Lines(nil, data), goMessageBase64(t, data); !bytes.Equal(got, want) {
			t.Errorf("%d bytes:\n got %q\nwant %q", n, got, want)
		}
	}
}

func FuzzAppendQP(f *testing.F) {
	f.Add("hello world\n")
	f.Add(strings.Repeat("a", 74) + " \r\n=é")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := appendQP(nil, s), stdQP(t, s); !bytes.Equal(got, want) {
			t.Fatalf("appendQP(%q)\n got %q\nwant %q", s, got, want)
		}
	})
}

// TestStreamingEncoders: the piecewise writers give the same bytes as the
// one-shot encoders across piece boundaries, where a line break or a
// trailing space may fall.
func TestStreamingEncoders(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 13))
	alphabet := []string{"word ", " ", "\t", "\r\n", "\n", "\r", "é", "=", strings.Repeat("y", 90)}
	for _, size := range []int{0, 10, encodeChunk - 1, encodeChunk, encodeChunk + 1, 3*encodeChunk + 17} {
		var sb strings.Builder
		for sb.Len() < size {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()[:size]
		var got bytes.Buffer
		if _, err := writeQP(&got, s, nil); err != nil {
			t.Fatal(err)
		}
		if want := stdQP(t, s); !bytes.Equal(got.Bytes(), want) {
			t.Errorf("writeQP of %d bytes differs from mime/quotedprintable", size)
		}

		data := []byte(s)
		got.Reset()
		if _, err := writeBase64Lines(&got, data, nil); err != nil {
			t.Fatal(err)
		}
		if want := goMessageBase64(t, data); !bytes.Equal(got.Bytes(), want) {
			t.Errorf("writeBase64Lines of %d bytes differs from go-message", size)
		}
	}
}

// TestNotPrintable: the word test finds exactly the first byte that is not
// printable ASCII or is "=", wherever it is and whatever follows it.
func TestNotPrintable(t *testing.T) {
	t.Parallel()
	printable := func(c byte) bool { return c >= ' ' && c <= '~' && c != '=' }
	for p := 0; p < 8; p++ {
		for c := 0; c < 256; c++ {
			for _, after := range []byte{'a', 0x00, 0x80, 0xff, '=', 0x1f} {
				w := []byte("abcdefgh")
				w[p] = byte(c)
				for q := p + 1; q < 8; q++ {
					w[q] = after
				}
				m := notPrintable(binary.LittleEndian.Uint64(w))
				first := -1
				for i, b := range w {
					if !printable(b) {
						first = i
						break
					}
				}
				got := -1
				if m != 0 {
					got = bits.TrailingZeros64(m) / 8
				}
				if got != first {
					t.Fatalf("%q: first unprintable byte found at %d; want %d", w, got, first)
				}
			}
		}
	}
}
