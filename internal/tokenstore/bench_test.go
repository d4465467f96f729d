package tokenstore_test

import (
	"testing"
)

// BenchmarkSave measures a reconnect (add a version, destroy the old one)
// against the in-process fake, and reports Secret Manager calls per save,
// which is what bills.
func BenchmarkSave(b *testing.B) {
	e := newEnvTB(b)
	const email = "bench@example.com"
	if err := e.store.Save(b.Context(), email, token("warm")); err != nil {
		b.Fatal(err)
	}
	before := e.rpcs()
	for b.Loop() {
		if err := e.store.Save(b.Context(), email, token("refresh")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(e.rpcs()-before)/float64(b.N), "rpcs/op")
}

// BenchmarkLoad measures a token read: one AccessSecretVersion.
func BenchmarkLoad(b *testing.B) {
	e := newEnvTB(b)
	const email = "bench@example.com"
	if err := e.store.Save(b.Context(), email, token("refresh")); err != nil {
		b.Fatal(err)
	}
	before := e.rpcs()
	for b.Loop() {
		if _, err := e.store.Load(b.Context(), email); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(e.rpcs()-before)/float64(b.N), "rpcs/op")
}
