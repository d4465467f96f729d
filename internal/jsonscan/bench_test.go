package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

// BenchmarkString reads one long string token of each kind a request's
// bodies are: ASCII prose, HTML as json.Marshal writes it (every "<" and
// ">" a \u escape), and European text with line breaks.
func BenchmarkString(b *testing.B) {
	for _, c := range []struct{ name, s string }{
		{"prose", strings.Repeat("Thank you for your order. Your invoice is attached to this message. ", 75)},
		{"html", strings.Repeat("<b>Thank you</b> for your order. Your invoice is <i>attached</i>. ", 75)},
		{"utf8", strings.Repeat("Grüße aus Köln: die Rechnung liegt bei, zahlbar binnen 30 Tagen.\n", 75)},
	} {
		data, err := json.Marshal(c.s)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				s := New(data)
				if k, err := s.Next(); err != nil || k != String || len(s.Value()) != len(c.s) {
					b.Fatalf("got %v, %v, %d bytes", k, err, len(s.Value()))
				}
				s.Release()
			}
		})
	}
}
