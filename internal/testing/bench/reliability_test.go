package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// reliabilityRelay is the sender on an in-process fake Google (for its
// knobs), with the real ledger logic (ledger.Local, sharded) and results
// read back from pstest.
func reliabilityRelay(t *testing.T, accounts int) (*google, *relay) {
	t.Helper()
	g := startInProcess(t)
	r := newRelay(t, g, relayOpts{Ledger: newLocalLedger(t), Accounts: accounts, Subscribe: true,
		SendTimeout: 30 * time.Second, Lease: time.Minute})
	return g, r
}

// deliveries makes n small requests spread round-robin over the accounts,
// keyed prefix-00000 onwards.
func (r *relay) deliveries(prefix string, n int) []sender.Delivery {
	t := newMsgTemplate()
	out := make([]sender.Delivery, n)
	for i := range out {
		key := fmt.Sprintf("%s-%05d", prefix, i)
		out[i] = sender.Delivery{MessageID: "m-" + key, Data: t.data(r.Accounts[i%len(r.Accounts)], key, key)}
	}
	return out
}

// outboxKeys counts the .eml files in dir by their X-Bench-Seq header (the
// idempotency key).
func outboxKeys(t *testing.T, dir string) (map[string]int, int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
		_, after, ok := bytes.Cut(head, []byte("\nX-Bench-Seq: "))
		if !ok {
			t.Fatalf("%s has no X-Bench-Seq header", f)
		}
		v, _, _ := bytes.Cut(after, []byte("\r\n"))
		keys[string(v)]++
	}
	return keys, len(files)
}

// drainResults pulls and acknowledges every result event published so far.
func drainResults(t *testing.T, r *relay) []results.Event {
	t.Helper()
	ctx := context.Background()
	sub := "projects/" + project + "/subscriptions/" + resultsSub
	r.Publisher.Stop() // flush
	var out []results.Event
	for i := 0; i < 10000; i++ {
		resp, err := r.PubSub.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 1000, ReturnImmediately: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.ReceivedMessages) == 0 {
			return out
		}
		ids := make([]string, 0, len(resp.ReceivedMessages))
		for _, m := range resp.ReceivedMessages {
			var e results.Event
			if err := json.Unmarshal(m.Message.Data, &e); err != nil {
				t.Fatalf("result %s: %v", m.Message.MessageId, err)
			}
			if m.Message.Attributes["status"] != string(e.Status) || m.Message.Attributes["idempotency_key"] != e.IdempotencyKey {
				t.Errorf("result %s: attributes %v do not match the event", m.Message.MessageId, m.Message.Attributes)
			}
			out = append(out, e)
			ids = append(ids, m.AckId)
		}
		if err := r.PubSub.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids}); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("results never drained")
	return nil
}

// TestReliabilityFaults sends 10,000 messages across 50 accounts through
// simulated push with 10% duplicated pushes, 5% Gmail 5xx and 2% 429s, and
// requires exactly one accepted message and one sent result per request.
func TestReliabilityFaults(t *testing.T) {
	testenv.Integration(t)
	const n, accounts = 10000, 50
	g, r := reliabilityRelay(t, accounts)
	g.Sandbox.SetFaultRetryAfter(time.Second)
	if err := g.Sandbox.SetFaultRates(7, map[sandbox.Fault]float64{
		sandbox.ServerError500: 0.025, sandbox.Unavailable503: 0.025, sandbox.RateLimit429: 0.02,
	}); err != nil {
		t.Fatal(err)
	}
	ds := r.deliveries("rel", n)
	// Pub/Sub's 10s..600s backoff, scaled down a hundredfold; 10 attempts
	// as infra's max_delivery_attempts.
	sim := &pushSim{Handle: r.Sender.Handle, Ctx: r.Ctx, Workers: concurrency, MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 6 * time.Second, MaxAttempts: 10, DupRate: 0.10, DupDelay: 2 * time.Second, Seed: 1}
	sim.start()
	defer sim.stop()
	start := time.Now()
	sim.publish(ds)
	if !sim.wait(8 * time.Minute) {
		t.Fatalf("not every message was acked or dead-lettered within 8 minutes: %d deliveries so far", sim.Deliveries.Load())
	}
	elapsed := time.Since(start)
	_ = g.Sandbox.SetFaultRates(0, nil)
	st := g.Sandbox.Stats()

	keys, files := outboxKeys(t, g.Outbox)
	evs := drainResults(t, r)
	sent, dupRes, failed, maybe := map[string]int{}, 0, 0, map[string]bool{}
	for _, e := range evs {
		switch e.Status {
		case results.StatusSent:
			sent[e.IdempotencyKey]++
		case results.StatusDuplicate:
			dupRes++
		case results.StatusFailed:
			failed++
			t.Errorf("failed result for %s: %+v", e.IdempotencyKey, e.Error)
		}
		if e.MaybeDuplicate {
			maybe[e.IdempotencyKey] = true
		}
	}
	lost, dups, ambiguousDups, noResult, twoResults := 0, 0, 0, 0, 0
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("rel-%05d", i)
		switch c := keys[k]; {
		case c == 0:
			lost++
		case c > 1 && maybe[k]:
			ambiguousDups += c - 1
		case c > 1:
			dups += c - 1
		}
		switch sent[k] {
		case 0:
			noResult++
		case 1:
		default:
			twoResults++
		}
	}
	if files != n || lost != 0 || dups != 0 || noResult != 0 || twoResults != 0 || sim.DeadLettered.Load() != 0 {
		t.Errorf("want exactly %d .eml files, none lost, no duplicates, one sent result each, none dead-lettered; got %d files, %d lost, %d duplicates (%d more flagged ambiguous), %d without a sent result, %d with several, %d dead-lettered",
			n, files, lost, dups, ambiguousDups, noResult, twoResults, sim.DeadLettered.Load())
	}
	l := r.Ledger.Stats()
	figure(t, "reliability.eml_files", "%d of %d", files, n)
	figure(t, "reliability.lost", "%d", lost)
	figure(t, "reliability.duplicates", "%d (ambiguous, recorded: %d)", dups, ambiguousDups)
	figure(t, "reliability.results", "%d sent, %d duplicate, %d failed", len(sent), dupRes, failed)
	figure(t, "reliability.dead_lettered", "%d", sim.DeadLettered.Load())
	figure(t, "reliability.pushes", "%d deliveries for %d messages (%.2f/msg; %d duplicated pushes, %d nacks; at most %d deliveries of one message)",
		sim.Deliveries.Load(), n, float64(sim.Deliveries.Load())/n, sim.Duplicates.Load(), sim.Nacks.Load(), sim.MaxSeen.Load())
	figure(t, "reliability.gmail_calls", "%d (%.3f/msg; %d faulted by injection, %d rejected)", st.SendsAccepted+st.SendsFaulted+st.SendsRateLimited+st.SendsRejected,
		float64(st.SendsAccepted+st.SendsFaulted+st.SendsRateLimited+st.SendsRejected)/n, st.SendsFaulted, st.SendsRejected)
	figure(t, "reliability.ledger_writes_per_msg", "%.2f", float64(l.Writes)/n)
	figure(t, "reliability.elapsed", "%.1fs (%.0f msgs/s, in-process sandbox, 80 workers)", elapsed.Seconds(), n/elapsed.Seconds())
}

// TestReliabilityQuota sends to accounts whose Gmail allows 2.5 sends a
// second each and reports goodput against that ceiling and how many
// deliveries and Gmail calls each message cost.
func TestReliabilityQuota(t *testing.T) {
	testenv.Integration(t)
	const accounts, perAccount = 10, 20
	const rate = 2.5
	g, r := reliabilityRelay(t, accounts)
	g.Sandbox.SetSendRate(rate, 1)
	ds := r.deliveries("quota", accounts*perAccount)
	// A tenth of Pub/Sub's 10s..600s backoff, so that the run stays short
	// but the backoff still dwarfs the quota's 0.4 s spacing, as it does in
	// production.
	sim := &pushSim{Handle: r.Sender.Handle, Ctx: r.Ctx, Workers: concurrency, MinBackoff: time.Second,
		MaxBackoff: time.Minute, MaxAttempts: 10, Seed: 2}
	sim.start()
	defer sim.stop()
	start := time.Now()
	sim.publish(ds)
	if !sim.wait(6 * time.Minute) {
		t.Fatalf("not every message was acked or dead-lettered within 6 minutes")
	}
	elapsed := time.Since(start)
	st := g.Sandbox.Stats()
	n := float64(len(ds))
	keys, files := outboxKeys(t, g.Outbox)
	for k, c := range keys {
		if c > 1 {
			t.Errorf("%s accepted %d times", k, c)
		}
	}
	if int64(files)+sim.DeadLettered.Load() != int64(len(ds)) {
		t.Errorf("%d accepted + %d dead-lettered != %d messages", files, sim.DeadLettered.Load(), len(ds))
	}
	// Issue 18's targets that timing barely sways are asserted: each
	// account's pace (internal/sender/pace.go) learns Gmail's rate from one
	// refusal and spreads the rest. Goodput, which timing sways, is a figure.
	calls := float64(st.SendsAccepted+st.SendsRateLimited+st.SendsFaulted) / n
	if calls > 1.1 || sim.DeadLettered.Load() != 0 {
		t.Errorf("%.2f Gmail calls per message and %d dead-lettered; want at most 1.1 and none", calls, sim.DeadLettered.Load())
	}
	ideal := (perAccount - 1) / rate // the first send of each account uses the burst
	figure(t, "quota.goodput", "%.1f msgs/s over %.1fs (ceiling %.1f/s = %d accounts x %.1f/s; ideal run %.1fs)",
		float64(files)/elapsed.Seconds(), elapsed.Seconds(), rate*accounts, accounts, rate, ideal)
	figure(t, "quota.amplification", "%.2f deliveries/msg, %.2f Gmail calls/msg (%d answered 429 by the quota)",
		float64(sim.Deliveries.Load())/n, calls, st.SendsRateLimited)
	figure(t, "quota.dead_lettered", "%d of %d (backoff 1s..60s, 10 attempts)", sim.DeadLettered.Load(), len(ds))
}

// TestReliabilityInvalidGrant revokes one account's grant mid-run: its
// remaining messages must fail at once with reauth_required (no redelivery)
// and the other accounts must not notice.
func TestReliabilityInvalidGrant(t *testing.T) {
	testenv.Integration(t)
	const accounts, perAccount = 10, 40
	g, r := reliabilityRelay(t, accounts)
	victim := r.Accounts[0]
	ds := r.deliveries("grant", accounts*perAccount)
	var victimDone atomic.Int64
	var revoked sync.Once
	var atRevoke sandbox.Stats
	var revokedAt time.Time
	handle := func(ctx context.Context, d sender.Delivery) error {
		err := r.Sender.Handle(ctx, d)
		if err == nil && strings.Contains(string(d.Data), `"account":"`+victim+`"`) && victimDone.Add(1) == 10 {
			revoked.Do(func() {
				g.Sandbox.RevokeAll(victim)
				atRevoke, revokedAt = g.Sandbox.Stats(), time.Now()
			})
		}
		return err
	}
	sim := &pushSim{Handle: handle, Ctx: r.Ctx, Workers: concurrency, MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 6 * time.Second, MaxAttempts: 10, Seed: 3}
	sim.start()
	defer sim.stop()
	sim.publish(ds)
	if !sim.wait(3 * time.Minute) {
		t.Fatal("not every message was acked within 3 minutes")
	}
	finished := time.Since(revokedAt)
	after := g.Sandbox.Stats()

	keys, _ := outboxKeys(t, g.Outbox)
	evs := drainResults(t, r)
	victimSent, victimFailed, others := 0, 0, 0
	for _, e := range evs {
		switch {
		case e.Account == victim && e.Status == results.StatusSent:
			victimSent++
		case e.Account == victim && e.Status == results.StatusFailed:
			victimFailed++
			if e.Error == nil || e.Error.Code != "reauth_required" || !strings.Contains(e.Error.ReconnectURL, "login_hint=") || e.Attempt != 1 {
				t.Errorf("victim failure %s: want reauth_required with a reconnect link on the first attempt, got attempt %d, %+v", e.IdempotencyKey, e.Attempt, e.Error)
			}
		case e.Account != victim && e.Status == results.StatusSent:
			others++
			if keys[e.IdempotencyKey] != 1 {
				t.Errorf("%s: %d .eml files, want 1", e.IdempotencyKey, keys[e.IdempotencyKey])
			}
		default:
			t.Errorf("unexpected result: %+v", e)
		}
	}
	if victimSent < 10 || victimFailed == 0 || victimSent+victimFailed != perAccount {
		t.Errorf("victim: %d sent + %d failed, want at least 10 sent, some failed, %d in all", victimSent, victimFailed, perAccount)
	}
	if others != (accounts-1)*perAccount {
		t.Errorf("other accounts: %d sent, want %d", others, (accounts-1)*perAccount)
	}
	if sim.Nacks.Load() != 0 || sim.DeadLettered.Load() != 0 {
		t.Errorf("%d nacks and %d dead-lettered; a dead grant must fail fast, not retry", sim.Nacks.Load(), sim.DeadLettered.Load())
	}
	acct, err := r.Registry.Get(context.Background(), victim)
	if err != nil || acct.Status != registry.StatusReauthRequired {
		t.Errorf("victim account: %+v, %v; want reauth_required", acct, err)
	}
	for _, a := range r.Accounts[1:] {
		if acct, err := r.Registry.Get(context.Background(), a); err != nil || acct.Status != registry.StatusConnected {
			t.Errorf("%s: %+v, %v; want connected", a, acct, err)
		}
	}
	rejected := after.SendsRejected - atRevoke.SendsRejected
	figure(t, "invalid_grant.victim", "%d sent before revocation, %d failed reauth_required on the first delivery (%d Gmail 401s, %d without calling Gmail); all finished %.0f ms after revocation",
		victimSent, victimFailed, rejected, int64(victimFailed)-rejected, float64(finished.Milliseconds()))
	figure(t, "invalid_grant.others", "%d of %d sent, 0 nacks", others, (accounts-1)*perAccount)
}
