package message

import (
	"encoding/json"
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
