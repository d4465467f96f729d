package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
)

var (
	kills     = flag.Int("kills", 5, "kill: how many times the sender is killed with SIGKILL and restarted")
	killLease = flag.Duration("kill-lease", time.Minute, "kill: SEND_LEASE of the sender (its lower bound, 1m, keeps the run short)")
)

// killN is kill's default message count; -n overrides it.
const killN = 2000

// kill sends -n messages (2,000 unless -n is given) through the packaged
// sender and kills it with SIGKILL -kills times at random moments while it
// sends, restarting it each time on the same port and state directory, as
// Cloud Run replaces a crashed instance. Each push that got no 2xx (a nack,
// or a connection cut by the kill) is redelivered with the same message ID,
// as Pub/Sub does, until it is acknowledged. The ledger is the Local one, a
// journal that must survive the kills.
//
// It reports:
//   - lost: messages the sandbox never accepted (must be 0);
//   - duplicates: extra copies, counted by Message-ID in the outbox;
//   - unflagged: duplicated messages none of whose results says
//     maybe_duplicate (must be 0).
func kill() error {
	if *binPath == "" {
		return errors.New("-bin is required (build it with -mode=build)")
	}
	if *limit < 1 || *kills < 0 {
		return errors.New("-concurrency must be at least 1 and -kills at least 0")
	}
	total := killN
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "n" {
			total = *n
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), *maxDuration)
	defer cancel()
	st, err := newStack(ctx, "kill", *accounts, "user%03d@example.com")
	if err != nil {
		return err
	}
	// Kept when the run fails, for its sender logs.
	failed := true
	st.keep = true
	defer func() {
		st.keep = failed
		st.close()
	}()
	project, g, psc, dir, emails := st.project, st.g, st.psc, st.dir, st.emails
	g.sb.SetLatency(*gmailLatency)

	port, err := freePort()
	if err != nil {
		return err
	}
	env := append(st.env(), "SEND_LEASE="+killLease.String(), "SEND_TIMEOUT=30s")
	if *memLimit != "" {
		env = append(env, "GOMEMLIMIT="+*memLimit)
	}
	start := func(i int) (*proc, error) {
		p, err := startSenderOn(*binPath, env, filepath.Join(dir, fmt.Sprintf("sender-%d.log", i)), port)
		if err != nil {
			return nil, err
		}
		if err := p.waitListening(); err != nil {
			p.stop()
			return nil, err
		}
		return p, nil
	}
	sp, err := start(0)
	if err != nil {
		return err
	}
	defer func() { sp.stop() }()

	endpoint := sp.url() + "/projects/" + project + "/topics/" + sendTopic
	bodies := make([][]byte, total)
	for i := range bodies {
		bodies[i] = pushBody(fmt.Sprintf("kill-%d", i), request(emails[i%len(emails)], i), project)
	}
	// Kill when the sandbox has accepted each of -kills random counts,
	// between 5% and 90% of the messages, so that every kill lands while
	// sends are in flight, whatever the machine's speed.
	at := make([]int, *kills)
	for i := range at {
		at[i] = total/20 + rand.IntN(total*85/100)
	}
	slices.Sort(at)

	log.Printf("kill: %d messages, %d kills at accepted counts %v, concurrency %d, Gmail latency %s, lease %s",
		total, *kills, at, *limit, *gmailLatency, *killLease)
	began := time.Now()
	var pushes, nacks atomic.Int64
	pushErr := make(chan error, 1)
	go func() { pushErr <- redeliverAll(ctx, endpoint, bodies, *limit, &pushes, &nacks) }()

	var killedAt []time.Duration
	for i, count := range at {
		for int(g.sb.Stats().SendsAccepted) < count {
			if ctx.Err() != nil {
				return fmt.Errorf("kill %d: waiting for %d accepted messages: %w", i+1, count, ctx.Err())
			}
			time.Sleep(time.Millisecond)
		}
		// A random moment within the next few sends, so that kills do not
		// line up with the sandbox's answers.
		time.Sleep(time.Duration(rand.IntN(int(*gmailLatency/time.Microsecond)+1)) * time.Microsecond)
		if err := sp.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %d: %w", i+1, err)
		}
		<-sp.done
		sp.log.Close()
		killedAt = append(killedAt, time.Since(began))
		log.Printf("kill %d at %d accepted (%.1fs); restarting", i+1, g.sb.Stats().SendsAccepted, time.Since(began).Seconds())
		if sp, err = start(i + 1); err != nil {
			return fmt.Errorf("restart %d: %w", i+1, err)
		}
	}
	if err := <-pushErr; err != nil {
		return err
	}
	elapsed := time.Since(began)

	// The outbox: every accepted message, by Message-ID and by sequence.
	byMsgID := map[string]int{}
	keyOf := map[string]string{}
	delivered := map[int]bool{}
	for _, m := range g.sb.Outbox() {
		h, err := emlHeader(m.Path)
		if err != nil {
			return err
		}
		id := h.Get("Message-Id")
		seq, err := strconv.Atoi(h.Get("X-Bench-Seq"))
		if id == "" || err != nil {
			return fmt.Errorf("%s: no Message-ID or X-Bench-Seq", m.Path)
		}
		byMsgID[id]++
		keyOf[id] = "lt-" + strconv.Itoa(seq)
		delivered[seq] = true
	}
	lost := 0
	for i := range total {
		if !delivered[i] {
			lost++
		}
	}
	res, err := pullResults(ctx, psc, project, total)
	if err != nil {
		return err
	}
	dups, dupMessages, unflagged := 0, 0, 0
	for id, c := range byMsgID {
		if c < 2 {
			continue
		}
		dups += c - 1
		dupMessages++
		if !res.flagged[keyOf[id]] {
			unflagged++
			log.Printf("unflagged duplicate: %s (%s), %d copies", keyOf[id], id, c)
		}
	}
	// The journal the sender was killed over, read once it is stopped (two
	// processes must not share it): every message must be recorded sent.
	sp.stop()
	journal, err := ledger.NewLocal(filepath.Join(st.state, "sends.json"))
	if err != nil {
		return fmt.Errorf("the sender's ledger after the kills: %w", err)
	}
	recorded := 0
	for i := range total {
		rec, err := journal.Get(ctx, ledger.Scope{Account: emails[i%len(emails)], Key: "lt-" + strconv.Itoa(i)}.ID())
		if err == nil && rec.State == ledger.StateSent {
			recorded++
		}
	}
	_ = journal.Close()
	figure("kill_ledger", "%d of %d messages recorded sent in the Local journal after the kills", recorded, total)
	figure("kill_lost", "%d of %d messages never delivered (must be 0)", lost, total)
	figure("kill_duplicates", "%d extra copies of %d messages (same Message-ID twice in the outbox)", dups, dupMessages)
	figure("kill_unflagged", "%d duplicated messages without a maybe_duplicate result (must be 0)", unflagged)
	figure("kill_results", "%v; %d results flag maybe_duplicate; %d keys without a result", res.byStatus, res.maybeDup, total-len(res.keys))
	figure("kill_run", "%d kills at %v; %d pushes (%d not acknowledged, redelivered) in %.1fs; lease %s, concurrency %d, Gmail latency %s",
		len(killedAt), roundAll(killedAt), pushes.Load(), nacks.Load(), elapsed.Seconds(), *killLease, *limit, *gmailLatency)
	if lost != 0 || unflagged != 0 || len(res.keys) != total || recorded != total {
		return fmt.Errorf("%d lost, %d unflagged duplicates, %d of %d keys with a result (sender logs kept in %s)", lost, unflagged, len(res.keys), total, dir)
	}
	failed = false
	return nil
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%.1fs", d.Seconds())
	}
	return out
}

// startSenderOn starts the binary listening on port, so that a restarted
// sender takes its predecessor's address as a replaced instance takes the
// service's.
func startSenderOn(bin string, env []string, logPath string, port int) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &proc{port: port, done: make(chan struct{}), log: lf}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(slices.Clone(env), "PORT="+strconv.Itoa(port))
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// redeliverAll pushes every body until the sender acknowledges it (2xx),
// workers at a time, as a push subscription does: a nack, a 429 or a
// connection the kill cut puts the message back with the same message ID,
// to be pushed again after a backoff of 100 ms doubling to 2 s, while the
// workers push other messages meanwhile (Pub/Sub's own backoff starts at
// the retry policy's minimum, 10 s, which would only make the run longer).
func redeliverAll(ctx context.Context, endpoint string, bodies [][]byte, workers int, pushes, nacks *atomic.Int64) error {
	tr := &http.Transport{MaxIdleConns: workers * 2, MaxIdleConnsPerHost: workers * 2}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	// Every message is in the queue, in flight, or waiting for its backoff;
	// the queue holds them all, so that putting one back never blocks.
	queue := make(chan int, len(bodies))
	for i := range bodies {
		queue <- i
	}
	attempts := make([]int, len(bodies))
	var acked atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				var i int
				select {
				case i = <-queue:
				case <-done:
					return
				case <-ctx.Done():
					return
				}
				pushes.Add(1)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(bodies[i]))
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode/100 == 2 {
						if acked.Add(1) == int64(len(bodies)) {
							close(done)
						}
						continue
					}
				}
				nacks.Add(1)
				// Only this worker holds i now, so attempts[i] is its own.
				backoff := min(100*time.Millisecond<<min(attempts[i], 5), 2*time.Second)
				attempts[i]++
				time.AfterFunc(backoff/2+rand.N(backoff/2), func() { queue <- i })
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pushing: %d of %d acknowledged: %w", acked.Load(), len(bodies), err)
	}
	return nil
}

// emlHeader reads the header of an .eml file.
func emlHeader(path string) (textproto.MIMEHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := textproto.NewReader(bufio.NewReader(f)).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// killResults is what the result events said.
type killResults struct {
	byStatus map[string]int
	keys     map[string]bool // keys with at least one result
	flagged  map[string]bool // keys with a result that says maybe_duplicate
	maybeDup int
}

// pullResults reads result events until every one of want keys has one
// and the topic has been quiet for a second, or 30 s have passed.
func pullResults(ctx context.Context, c *pubsub.Client, project string, want int) (*killResults, error) {
	sub := "projects/" + project + "/subscriptions/results-count"
	r := &killResults{byStatus: map[string]int{}, keys: map[string]bool{}, flagged: map[string]bool{}}
	deadline := time.Now().Add(30 * time.Second)
	quietSince := time.Now()
	for time.Now().Before(deadline) && (len(r.keys) < want || time.Since(quietSince) < time.Second) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := c.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 1000})
		cancel()
		if err != nil {
			if pctx.Err() != nil && ctx.Err() == nil {
				continue
			}
			return r, err
		}
		if len(resp.ReceivedMessages) == 0 {
			continue
		}
		quietSince = time.Now()
		ids := make([]string, 0, len(resp.ReceivedMessages))
		for _, m := range resp.ReceivedMessages {
			ids = append(ids, m.AckId)
			var ev struct {
				Key            string `json:"idempotency_key"`
				Status         string `json:"status"`
				MaybeDuplicate bool   `json:"maybe_duplicate"`
			}
			if err := json.Unmarshal(m.Message.Data, &ev); err != nil {
				return r, fmt.Errorf("result event: %w", err)
			}
			r.byStatus[ev.Status]++
			r.keys[ev.Key] = true
			if ev.MaybeDuplicate {
				r.flagged[ev.Key] = true
				r.maybeDup++
			}
		}
		if err := c.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids}); err != nil {
			return r, err
		}
	}
	return r, nil
}
