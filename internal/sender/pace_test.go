package sender

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// step is one call on a pace for account "a", at a time in milliseconds
// after the test's start.
type step struct {
	op string // reserve, sent, failed, limited, timeout
	at int
	// started is the answered send's start (sent, failed, limited);
	// retry its "Retry after", ms (-1: none).
	started, retry int
	// budget is reserve's budget, ms (0: 5 s).
	budget int
	// want is reserve's slot, ms, or -1 for a refusal; probe whether the
	// slot waits for the probes.
	want  int
	probe bool
}

// TestPace drives account buckets through fake time: probing, opening,
// learning Gmail's rate from a refusal, pausing for a far "Retry after",
// recovering, and refusing beyond the budget without taking a slot.
func TestPace(t *testing.T) {
	t.Parallel()
	reserve := func(at, want int) step { return step{op: "reserve", at: at, want: want} }
	cases := []struct {
		name  string
		steps []step
		// mode and rate after the steps (rate checked when paced).
		mode paceMode
		rate float64
	}{
		{name: "a new account's first two sends go at once, the next waits for their answers",
			steps: []step{reserve(0, 0), reserve(0, 0), {op: "reserve", at: 0, want: 1000, probe: true}},
			mode:  probing},
		{name: "two accepted probes open the account: nothing is paced",
			steps: []step{reserve(0, 0), reserve(0, 0),
				{op: "sent", at: 300, started: 0}, {op: "sent", at: 310, started: 0},
				reserve(310, 310), reserve(310, 310), reserve(310, 310), reserve(311, 311)},
			mode: open},
		{name: "any answer but a rate limit ends a probe",
			steps: []step{reserve(0, 0), reserve(0, 0),
				{op: "failed", at: 300, started: 0}, {op: "sent", at: 310, started: 0}, reserve(310, 310)},
			mode: open},
		{name: "a probe that waited in vain opens the account",
			steps: []step{reserve(0, 0), reserve(0, 0), {op: "timeout", at: 1000}, reserve(1000, 1000)},
			mode:  open},
		{name: "a refusal 400 ms after the accepted probe paces at just under 2.5/s, from Gmail's time",
			steps: []step{reserve(0, 0), reserve(0, 0),
				{op: "sent", at: 5, started: 0}, {op: "limited", at: 6, started: 0, retry: 405},
				reserve(6, 405), reserve(6, 405+421), reserve(7, 405+842)},
			mode: paced, rate: 2.5 * paceMargin},
		{name: "without an accepted send, the spacing runs from the refusal's answer",
			steps: []step{reserve(0, 0), {op: "limited", at: 10, started: 0, retry: 410}, reserve(10, 410)},
			mode:  paced, rate: 2.5 * paceMargin},
		{name: "an echo of a refusal already learnt from does not lower the rate again",
			steps: []step{reserve(0, 0), reserve(0, 0),
				{op: "sent", at: 5, started: 0}, {op: "limited", at: 6, started: 0, retry: 405},
				{op: "limited", at: 8, started: 1, retry: 405}},
			mode: paced, rate: 2.5 * paceMargin},
		{name: "a refusal while under Gmail's rate (jitter) only nudges the rate",
			steps: []step{reserve(0, 0), {op: "sent", at: 5, started: 0}, {op: "limited", at: 6, started: 0, retry: 405},
				{op: "sent", at: 410, started: 405}, {op: "limited", at: 800, started: 795, retry: 810}},
			mode: paced, rate: 2.5 * paceMargin * paceNudge},
		{name: "a refusal with no time halves the rate and waits one interval",
			steps: []step{reserve(0, 0), {op: "limited", at: 10, started: 0, retry: -1}, reserve(10, 210), reserve(10, 410)},
			mode:  paced, rate: paceCeiling * paceBackoff},
		{name: "a far Retry after is a pause: the account keeps its pace and waits for it",
			steps: []step{reserve(0, 0), reserve(0, 0), {op: "sent", at: 5, started: 0}, {op: "sent", at: 6, started: 0},
				{op: "limited", at: 100, started: 90, retry: 120_000},
				reserve(110, -1), {op: "reserve", at: 119_000, want: 120_000}, reserve(120_000, 120_000), reserve(120_000, 120_000)},
			mode: open},
		{name: "a refusal beyond the budget takes no slot",
			steps: []step{reserve(0, 0), {op: "limited", at: 10, started: 0, retry: 410},
				{op: "reserve", at: 10, budget: 100, want: -1}, reserve(10, 410), reserve(10, 831)},
			mode: paced, rate: 2.5 * paceMargin},
		{name: "a negative budget allows only a slot now",
			steps: []step{{op: "reserve", at: 0, budget: -1, want: 0}, {op: "reserve", at: 0, budget: -1, want: 0},
				{op: "reserve", at: 0, budget: -1, want: 0, probe: true}},
			mode: probing},
		{name: "a run of accepted sends raises the rate by one step",
			steps: append([]step{reserve(0, 0), {op: "limited", at: 10, started: 0, retry: 410}},
				accepted(recoverAfter, 500, 1000)...),
			mode: paced, rate: 2.5*paceMargin + recoverStep},
		{name: "sends started before the slow-down do not count towards recovery",
			steps: append([]step{reserve(0, 0), {op: "limited", at: 10, started: 0, retry: 410}},
				accepted(recoverAfter, 5, 1000)...),
			mode: paced, rate: 2.5 * paceMargin},
		{name: "five minutes without a refusal return the account to probing",
			steps: []step{reserve(0, 0), {op: "limited", at: 10, started: 0, retry: 410},
				reserve(300_011, 300_011), reserve(300_011, 300_011), {op: "reserve", at: 300_011, want: 301_011, probe: true}},
			mode: probing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
			ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
			p := newPace()
			for i, s := range c.steps {
				switch s.op {
				case "reserve":
					budget := 5 * time.Second
					if s.budget != 0 {
						budget = time.Duration(s.budget) * time.Millisecond
					}
					sl, r := p.reserve("a", ms(s.at), budget)
					switch {
					case s.want < 0 && r == nil:
						t.Errorf("step %d: slot at %v; want a refusal", i, sl.at.Sub(t0))
					case s.want >= 0 && r != nil:
						t.Errorf("step %d: refused (earliest %v); want a slot at %dms", i, r.at.Sub(t0), s.want)
					case s.want >= 0 && (sl.at.Sub(ms(s.want)).Abs() > time.Millisecond || sl.probe != s.probe):
						t.Errorf("step %d: slot at %v (probe %v); want %dms (probe %v)", i, sl.at.Sub(t0), sl.probe, s.want, s.probe)
					}
				case "sent", "failed":
					p.answered("a", ms(s.started), ms(s.at), s.op == "sent")
				case "limited":
					var retry time.Time
					if s.retry >= 0 {
						retry = ms(s.retry)
					}
					p.limited("a", ms(s.started), ms(s.at), retry, "Gmail answered 429")
				case "timeout":
					p.probeTimedOut("a")
				default:
					t.Fatalf("step %d: unknown op %q", i, s.op)
				}
			}
			b := p.buckets["a"]
			if b.mode != c.mode {
				t.Errorf("mode %d; want %d", b.mode, c.mode)
			}
			if c.mode == paced && math.Abs(b.rate-c.rate) > 0.01 {
				t.Errorf("rate %.3f/s; want %.3f/s", b.rate, c.rate)
			}
		})
	}
}

// accepted is n accepted sends, started at from ms and answered every
// 420 ms from at ms.
func accepted(n, from, at int) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = step{op: "sent", at: at + 420*i, started: from}
	}
	return out
}

// TestPaceWakesWaiters: a refusal, or the probes' answers, close the
// channel of every slot already handed out, so their waiters take new
// slots instead of sending into Gmail's refusal; other accounts' waiters
// are not woken.
func TestPaceWakesWaiters(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		answer func(p *pace, now time.Time)
	}{
		{"a refusal", func(p *pace, now time.Time) { p.limited("a", now, now, now.Add(400*time.Millisecond), "429") }},
		{"the probes' answers", func(p *pace, now time.Time) {
			p.answered("a", now, now, true)
			p.answered("a", now, now, true)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
			p := newPace()
			var slots []slot
			for range 3 {
				sl, r := p.reserve("a", now, 5*time.Second)
				if r != nil {
					t.Fatalf("refused: %+v", r)
				}
				slots = append(slots, sl)
			}
			other, _ := p.reserve("b", now, 5*time.Second)
			c.answer(p, now)
			for i, sl := range slots {
				select {
				case <-sl.changed:
				default:
					t.Errorf("slot %d's waiter was not woken", i)
				}
			}
			select {
			case <-other.changed:
				t.Error("another account's waiter was woken")
			default:
			}
		})
	}
}

// TestPaceSweep: buckets no delivery used for idleAfter are dropped, so
// the map does not grow with every account ever seen.
func TestPaceSweep(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	p := newPace()
	p.reserve("old", now, time.Second)
	later := now.Add(idleAfter + time.Minute)
	for i := range sweepEvery {
		p.reserve(fmt.Sprintf("new-%d", i%3), later, time.Second)
	}
	if _, ok := p.buckets["old"]; ok {
		t.Error("an idle bucket survived the sweep")
	}
	if len(p.buckets) != 3 {
		t.Errorf("%d buckets; want the 3 in use", len(p.buckets))
	}
}
