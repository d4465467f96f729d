package bench

import (
	"sync"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// TestExternalCallsPerMessage counts, with the instrumented fakes, what one
// message costs in external calls once every account has sent once: Secret
// Manager reads (want 0), token refreshes (want 0), and Firestore document
// writes and reads, the send ledger's and the account registry's together,
// as Firestore bills them (want at most 2 ledger writes, 1 registry write
// and 1 read). The registry's write is the daily-quota count, coalesced to
// at most one a second per mailbox, so it costs a full write per send only
// for a mailbox sending less than once a second. Each store is
// counted by its own Stats: ledger.Local and registry.Local count a read or
// write where their Firestore twins make one.
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
	lw, lr := l.Writes-l0.Writes, l.Reads-l0.Reads
	rw, rr := reg.Writes-reg0.Writes, reg.Reads-reg0.Reads
	fw, fr := per(lw+rw), per(lr+rr)
	sm, rf := per(c.SMReads), per(c.TokenRefreshes)
	figure(t, "calls.secret_manager_reads_per_msg", "%.3f", sm)
	figure(t, "calls.token_refreshes_per_msg", "%.3f", rf)
	figure(t, "calls.firestore_writes_per_msg", "%.3f", fw)
	figure(t, "calls.firestore_reads_per_msg", "%.3f", fr)
	figure(t, "calls.ledger_writes_per_msg", "%.3f", per(lw))
	figure(t, "calls.registry_writes_per_msg", "%.3f", per(rw))
	figure(t, "calls.firestore_split", "ledger %.3f writes, %.3f reads; registry %.3f writes, %.3f reads", per(lw), per(lr), per(rw), per(rr))
	figure(t, "calls.gmail_calls_per_msg", "%.3f", per(c.GmailAttempts))
	if c.SMReads != 0 || c.TokenRefreshes != 0 || lw > 2*n || rw > n || lr+rr > n || c.GmailAccepted != n {
		t.Errorf("per message at steady state: %.3f Secret Manager reads (want 0), %.3f refreshes (want 0), %.3f ledger writes (want <= 2), %.3f registry writes (want <= 1), %.3f Firestore reads (want <= 1), %d of %d accepted",
			sm, rf, per(lw), per(rw), fr, c.GmailAccepted, n)
	}
}
