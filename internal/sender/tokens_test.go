package sender_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// TestTokenCache: a burst of 100 sends on one account shares one Secret Manager
// read and one refresh, whether the instance is cold or Gmail has just
// refused its cached access token; steady state costs neither.
func TestTokenCache(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store sendertest.Store) {
		// Requests wait at the gate until all have arrived: the Gmail
		// timeout must outlast that wait, or they end as ambiguous sends.
		e := sendertest.New(t, sendertest.Options{Store: store, SendTimeout: 2 * time.Minute, Lease: 3 * time.Minute})
		e.Connect(alice)
		// The property holds for any burst; the unit phase keeps it small.
		n := 100
		if testing.Short() {
			n = 20
		}
		sent := 0
		burst := func(name string) {
			t.Helper()
			e.HoldGmail(n) // all n in flight at Gmail together
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					key := fmt.Sprintf("%s-%d", name, i)
					errs[i] = e.Deliver(delivery("ps-"+key, sendertest.NewRequest(alice, key)))
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: delivery %d: %v", name, i, err)
				}
			}
			sent += n
			rs := e.Results()
			ok := 0
			for _, r := range rs {
				if r.Event.Status == results.StatusSent {
					ok++
				}
			}
			if ok != n || len(rs) != n {
				t.Fatalf("%s: %d results, %d sent; want %d sent", name, len(rs), ok, n)
			}
			wantOutbox(t, e, sent)
		}
		measure := func(name string, wantRefresh, wantAccess int64) {
			t.Helper()
			r0, a0 := e.Sandbox.Stats().TokenRefreshes, e.Secrets.Calls("AccessSecretVersion")
			burst(name)
			if r := e.Sandbox.Stats().TokenRefreshes - r0; r != wantRefresh {
				t.Errorf("%s: %d refreshes; want %d", name, r, wantRefresh)
			}
			if a := e.Secrets.Calls("AccessSecretVersion") - a0; a != wantAccess {
				t.Errorf("%s: %d Secret Manager reads; want %d", name, a, wantAccess)
			}
		}

		measure("cold", 1, 1)
		measure("steady", 0, 0)
		if e.Sandbox.ExpireAccessTokens(alice) == 0 {
			t.Fatal("no access token to expire")
		}
		measure("expired", 1, 0)
		measure("steady-again", 0, 0)
	})
}
