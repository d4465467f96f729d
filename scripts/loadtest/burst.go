package main

import (
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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/testing/procstat"
)

var (
	burstN       = flag.Int("burst-n", 80, "burst: pushes in each burst (all at once)")
	burstBackoff = flag.Duration("burst-backoff", time.Second, "burst: first retry delay after a refusal, doubling to 10x it; Pub/Sub's is 10 s to 600 s, scaled down so that a run takes a minute")
	burstLimit   = flag.String("burst-gomemlimit", "460MiB", "burst: GOMEMLIMIT for the sender, as Terraform sets it for 512 MiB")
)

// burst holds the packaged sender to its memory budget under the worst
// bursts a push subscription can deliver to one instance (issue 16): each
// of -burst-n pushes at once, retried on any refusal with backoff as
// Pub/Sub does, in a fresh sender process each time so that each peak RSS
// (VmHWM) is that burst's:
//
//	valid:   pushes of nearly 10 MB of request data (a 7.4 MB attachment),
//	         Gmail answering after -gmail-latency; every message must be
//	         delivered exactly once
//	invalid: 9.9 MB requests with 330k recipients each; every one must be
//	         acknowledged as a failure, nothing sent
func burst() error {
	if *binPath == "" {
		return errors.New("-bin is required (build it with -mode=build)")
	}
	ctx := context.Background()
	st, err := newStack(ctx, "burst", 8, "burst%d@example.com")
	if err != nil {
		return err
	}
	defer st.close()
	project, g, psc, dir, emails := st.project, st.g, st.psc, st.dir, st.emails
	env := append(st.env(), "GOMEMLIMIT="+*burstLimit)

	// run starts a sender, warms it (every account's token read and
	// refreshed), slows Gmail and pushes bodies all at once.
	sent := 0
	run := func(name string, bodies func(i int) []byte) (burstStats, error) {
		sp, _, err := startSender(*binPath, env, filepath.Join(dir, "sender-"+name+".log"))
		if err != nil {
			return burstStats{}, err
		}
		defer sp.stop()
		if err := sp.waitListening(); err != nil {
			return burstStats{}, err
		}
		endpoint := sp.url() + "/projects/" + project + "/topics/" + sendTopic
		g.sb.SetLatency(0)
		for i, e := range emails {
			if err := post(endpoint, pushBody(fmt.Sprintf("warm-%s-%d", name, i), request(e, -1-sent-i), project)); err != nil {
				return burstStats{}, err
			}
		}
		sent += len(emails)
		g.sb.SetLatency(*gmailLatency)
		hwm0 := procstat.PeakRSSKB(sp.cmd.Process.Pid)
		log.Printf("%s: %d pushes at once, Gmail latency %s, GOMEMLIMIT %s", name, *burstN, *gmailLatency, *burstLimit)
		st, err := pushBurst(endpoint, *burstN, bodies)
		st.hwmIdleKB, st.hwmKB = hwm0, procstat.PeakRSSKB(sp.cmd.Process.Pid)
		if err != nil {
			return st, fmt.Errorf("%s: %w (sender log %s)", name, err, sp.log.Name())
		}
		return st, nil
	}

	// (a) Valid pushes of nearly 10 MB.
	att := make([]byte, (message.MaxRequestSize-100_000)/4*3)
	fillPseudoRandom(att)
	valid := func(i int) []byte {
		data, err := json.Marshal(message.Request{Account: emails[i%len(emails)], To: []string{"Bob <bob@example.org>"},
			Subject: "Burst " + strconv.Itoa(i), Text: "see attachment", Headers: map[string]string{"X-Bench-Seq": strconv.Itoa(i)},
			Attachments:    []message.Attachment{{Filename: "big.bin", ContentType: "application/octet-stream", Data: att}},
			IdempotencyKey: "burst-" + strconv.Itoa(i)})
		if err != nil {
			panic(err)
		}
		return pushBody(fmt.Sprintf("burst-%d", i), data, project)
	}
	before := len(g.sb.Outbox())
	a, err := run("valid", valid)
	if err != nil {
		return err
	}
	if err := waitOutbox(g, before+*burstN, time.Minute); err != nil {
		return err
	}
	seen := map[int]int{}
	for _, m := range g.sb.Outbox()[before:] {
		s, err := seqOf(m.Path)
		if err != nil {
			return err
		}
		if s >= 0 {
			seen[s]++
		}
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	a.report("burst_valid", fmt.Sprintf("%d of %d delivered, %d duplicates; request data %.1f MB, push body %.1f MB",
		len(seen), *burstN, dups, float64(len(att))*4/3/1e6, float64(len(valid(0)))/1e6))

	// (b) Invalid 9.9 MB requests with 330k recipients.
	var to strings.Builder
	for i := range 330_000 {
		if i > 0 {
			to.WriteByte(',')
		}
		fmt.Fprintf(&to, `"recipient%06d@example.org"`, i)
	}
	recipients := to.String()
	invalid := func(i int) []byte {
		data := `{"account":"` + emails[i%len(emails)] + `","subject":"s","text":"t","idempotency_key":"bad-` + strconv.Itoa(i) + `","to":[` + recipients + `]}`
		return pushBody(fmt.Sprintf("bad-%d", i), []byte(data), project)
	}
	before = len(g.sb.Outbox())
	b, err := run("invalid", invalid)
	if err != nil {
		return err
	}
	// The warm-up of the second run sent one message per account.
	sentInvalid := len(g.sb.Outbox()) - before - len(emails)
	b.report("burst_invalid", fmt.Sprintf("%d acknowledged, %d sent; request data %.1f MB, push body %.1f MB",
		b.acked, sentInvalid, float64(len(recipients)+120)/1e6, float64(len(invalid(0)))/1e6))

	res, err := countResults(ctx, psc, project, sent+2**burstN, time.Minute)
	if err != nil {
		return err
	}
	figure("burst_results", "%v (want sent %d, failed %d)", res, sent+*burstN, *burstN)
	var problems []string
	if len(seen) != *burstN || dups != 0 {
		problems = append(problems, fmt.Sprintf("valid: %d distinct delivered of %d, %d duplicates", len(seen), *burstN, dups))
	}
	if sentInvalid != 0 {
		problems = append(problems, fmt.Sprintf("invalid: %d sent", sentInvalid))
	}
	for _, st := range []burstStats{a, b} {
		if st.hwmKB > 512<<10 {
			problems = append(problems, fmt.Sprintf("peak RSS %.0f MiB over 512 MiB", float64(st.hwmKB)/1024))
		}
	}
	if res["sent"] != sent+*burstN || res["failed"] != *burstN {
		problems = append(problems, fmt.Sprintf("results %v", res))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

type burstStats struct {
	acked, refused429, refusedOther, attempts int64
	span                                      time.Duration
	hwmIdleKB, hwmKB                          int64
}

func (s burstStats) report(name, what string) {
	figure(name, "%.0f MiB peak RSS (VmHWM; %.0f MiB before the burst); %s; %d pushes answered 429, %d other refusals, %d attempts in all; %.1fs",
		float64(s.hwmKB)/1024, float64(s.hwmIdleKB)/1024, what, s.refused429, s.refusedOther, s.attempts, s.span.Seconds())
}

// pushBurst posts n bodies at once, one goroutine each, as a push
// subscription delivers a burst to an instance with that concurrency. A
// refusal (429, another non-2xx, or a connection closed on the unread
// body) is retried after a backoff that doubles from -burst-backoff to 10
// times it, with jitter, as Pub/Sub's retry policy does, until -timeout.
// Each body is built just before its first post and dropped once acked.
func pushBurst(endpoint string, n int, body func(i int) []byte) (burstStats, error) {
	var st burstStats
	var acked, r429, rOther, attempts atomic.Int64
	tr := &http.Transport{MaxIdleConns: 2 * n, MaxIdleConnsPerHost: 2 * n}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = body(i)
	}
	deadline := time.Now().Add(*maxDuration)
	var failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bodies[i]
			bodies[i] = nil
			for attempt := 0; ; attempt++ {
				attempts.Add(1)
				res, err := client.Post(endpoint, "application/json", bytes.NewReader(b))
				switch {
				case err != nil:
					rOther.Add(1)
				case res.StatusCode/100 == 2:
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					acked.Add(1)
					return
				default:
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode == http.StatusTooManyRequests {
						r429.Add(1)
					} else {
						rOther.Add(1)
					}
				}
				if time.Now().After(deadline) {
					failed.Add(1)
					return
				}
				d := min(*burstBackoff<<min(attempt, 10), 10**burstBackoff)
				time.Sleep(d/2 + rand.N(d))
			}
		}()
	}
	wg.Wait()
	st.span = time.Since(t0)
	st.acked, st.refused429, st.refusedOther, st.attempts = acked.Load(), r429.Load(), rOther.Load(), attempts.Load()
	if f := failed.Load(); f > 0 {
		return st, fmt.Errorf("%d pushes never acknowledged", f)
	}
	return st, nil
}
