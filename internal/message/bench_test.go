package message

import (
	"encoding/json"
	"strings"
	"testing"
)

// BenchmarkCompose composes a ~10 KB text+html message, the sender's hot
// path.
func BenchmarkCompose(b *testing.B) {
	r := benchRequest()
	out, err := Compose(r, ComposeOptions{Now: testNow})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compose(r, ComposeOptions{Now: testNow}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode decodes and validates the same message as JSON.
func BenchmarkDecode(b *testing.B) {
	data, err := json.Marshal(benchRequest())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendQP encodes the bodies composition encodes most: prose
// without line breaks (as the sender's benchmark sends), prose in lines,
// and European text with escapes.
func BenchmarkAppendQP(b *testing.B) {
	prose := strings.Repeat("Thank you for your order. Your invoice is attached to this message. ", 120)
	for _, c := range []struct{ name, s string }{
		{"prose", prose},
		{"lines", strings.ReplaceAll(prose, ". ", ".\n")},
		{"utf8", benchRequest().Text},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.s)))
			var buf []byte
			for b.Loop() {
				buf = appendQP(buf[:0], c.s)
			}
		})
	}
}
