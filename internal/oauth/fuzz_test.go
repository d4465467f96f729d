package oauth

import (
	"errors"
	"testing"
	"time"
)

// FuzzVerifyState feeds arbitrary states and cookies to Verify: it must
// never panic, and must accept only a state it issued together with that
// state's own cookie.
func FuzzVerifyState(f *testing.F) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	keys, err := NewStateKeys("fuzz-secret", func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	// Fixed values: the fuzzer's workers rebuild this in other processes.
	good := keys.issue([nonceLen]byte{1, 2, 3}, [16]byte{4, 5, 6})
	f.Add(good.State, good.Cookie)
	f.Add(good.State, "")
	f.Add(good.State[:len(good.State)-1], good.Cookie)
	f.Add("", "")
	f.Add("AAAA", "x")
	f.Add(good.State+"A", good.Cookie)
	f.Fuzz(func(t *testing.T, state, cookie string) {
		v, err := keys.Verify(state, cookie)
		if err == nil {
			if state != good.State || cookie != good.Cookie {
				t.Fatalf("accepted a state or cookie it did not issue: %q / %q", state, cookie)
			}
			if v.Verifier != good.Verifier {
				t.Fatal("verifier differs for the issued state")
			}
			return
		}
		known := []error{ErrStateMissing, ErrStateTampered, ErrStateExpired, ErrCookieMissing, ErrCookieMismatch}
		for _, k := range known {
			if errors.Is(err, k) {
				return
			}
		}
		t.Fatalf("unexpected error %v", err)
	})
}
