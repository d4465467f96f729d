package bench

import (
	"sync"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testenv"
)

// TestExternalCallsPerMessage counts, with the instrumented fakes, what one
// message costs in external calls once every account has sent once:
// Secret Manager reads (want 0), token refreshes (want 0) and ledger writes
// as Firestore bills them (want at most 2).
func TestExternalCallsPerMessage(t *testing.T) {
	testenv.Integration(t)
	const n = 2000
	g, r := reliabilityRelay(t, 50)
	tpl := newMsgTemplate()
	r.warm(t, tpl)
	c0, l0, reg0 := g.counters(t), r.Ledger.Stats(), r.Registry.(*registry.Local).Stats()
	ds := r.deliveries("calls", n)
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := r.Sender.Handle(r.Ctx, ds[i]); err != nil {
					t.Errorf("%s: %v", ds[i].MessageID, err)
				}
			}
		}()
	}
	for i := range ds {
		work <- i
	}
	close(work)
	wg.Wait()
	c, l, reg := g.counters(t).minus(c0), r.Ledger.Stats(), r.Registry.(*registry.Local).Stats()
	per := func(v int64) float64 { return float64(v) / n }
	sm, rf, lw, lr := per(c.SMReads), per(c.TokenRefreshes), per(l.Writes-l0.Writes), per(l.Reads-l0.Reads)
	figure(t, "calls.secret_manager_reads_per_msg", "%.3f", sm)
	figure(t, "calls.token_refreshes_per_msg", "%.3f", rf)
	figure(t, "calls.ledger_writes_per_msg", "%.3f (reads %.3f)", lw, lr)
	figure(t, "calls.registry_reads_per_msg", "%.3f (writes %.3f)", per(reg.Reads-reg0.Reads), per(reg.Writes-reg0.Writes))
	figure(t, "calls.gmail_calls_per_msg", "%.3f", per(c.GmailAttempts))
	if c.SMReads != 0 || c.TokenRefreshes != 0 || l.Writes-l0.Writes > 2*n || c.GmailAccepted != n {
		t.Errorf("per message at steady state: %.3f Secret Manager reads (want 0), %.3f refreshes (want 0), %.3f ledger writes (want <= 2), %d of %d accepted",
			sm, rf, lw, c.GmailAccepted, n)
	}
}
