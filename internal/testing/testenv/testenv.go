// Package testenv decides what a test does when a prerequisite (an emulator,
// a browser) is missing: locally it skips with the reason, and under CI=true
// it fails, so that CI can never go green by skipping.
// It also holds the few helpers every package's tests need alike
// (SyncBuffer).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"

	"cloud.google.com/go/firestore"
)

// InCI reports whether the tests run under CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Integration marks a test that needs a prerequisite started by make test:
// `go test -short` (make test's unit phase) skips it by design, whatever CI
// says, and the integration phase runs it.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs in make test's integration phase (without -short)")
	}
}

// Require skips the test (or fails it under CI) when ok is false. Under
// -short it always skips: see Integration.
func Require(t testing.TB, ok bool, what, howToGet string) {
	t.Helper()
	if ok {
		return
	}
	Integration(t)
	if InCI() {
		t.Fatalf("%s is required under CI=true but missing: %s", what, howToGet)
	}
	t.Skipf("skipping: %s is missing (%s)", what, howToGet)
}

// FirestoreEmulator returns the Firestore emulator's host:port. make test
// starts it and exports FIRESTORE_EMULATOR_HOST.
func FirestoreEmulator(t testing.TB) string {
	t.Helper()
	h := os.Getenv("FIRESTORE_EMULATOR_HOST")
	Require(t, h != "", "the Firestore emulator", "run `make test`, or start it with scripts/emulators.sh start and export FIRESTORE_EMULATOR_HOST")
	return h
}

// PubSubEmulator returns the gcloud Pub/Sub emulator's host:port. make test
// exports it as GCLOUD_PUBSUB_EMULATOR_HOST rather than PUBSUB_EMULATOR_HOST,
// so that it never silently redirects clients in tests that use pstest.
func PubSubEmulator(t testing.TB) string {
	t.Helper()
	h := os.Getenv("GCLOUD_PUBSUB_EMULATOR_HOST")
	Require(t, h != "", "the gcloud Pub/Sub emulator", "run `make test`, or start it with scripts/emulators.sh start and export GCLOUD_PUBSUB_EMULATOR_HOST")
	return h
}

// Chromium returns the path of a Chromium binary for browser tests.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Require(t, false, "Chromium", "apt-get install chromium")
	return ""
}

// FirestoreClient returns a Firestore client on the emulator, in a project
// of its own so that tests never see each other's documents; it closes with
// the test.
func FirestoreClient(t testing.TB) *firestore.Client {
	t.Helper()
	FirestoreEmulator(t)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	c, err := firestore.NewClient(context.Background(), "test-"+hex.EncodeToString(b[:]))
	if err != nil {
		t.Fatalf("Firestore client on the emulator: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
