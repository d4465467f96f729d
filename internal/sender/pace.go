package sender

import (
	"sync"
	"time"
)

// Pacing (issue 18 part 4). Gmail limits each mailbox to a few sends a
// second and answers the rest 429 with the time the next will be accepted.
// A burst for one mailbox that all goes at once therefore costs a Gmail
// call per refused send, and each refusal a Pub/Sub redelivery. Each
// account gets a bucket that learns the mailbox's rate from Gmail's
// refusals and hands every delivery a send slot, so that a burst drains at
// that rate with few refusals.
//
// A bucket is in one of three modes:
//   - probing (new, or forgotten): the first probeSends deliveries go at
//     once; the others wait, up to probeWait, for their answers. Without
//     it, a burst to a mailbox never seen would all reach Gmail before the
//     first refusal came back.
//   - open: Gmail has accepted the probes and refused nothing since, so
//     nothing is paced: a healthy mailbox is not slowed.
//   - paced: Gmail refused a send; slots are 1/rate apart (a token bucket
//     of burst 1, kept as the time of the next free slot), and none comes
//     before the time Gmail gave. A refusal lowers the rate
//     (multiplicatively); each run of recoverAfter accepted sends raises it
//     by recoverStep (additively), and at paceCeiling the bucket opens.
//
// Every method takes the time, so that tests drive it with a fake clock.
// The Sender passes its Options.Now.
const (
	// probeSends go at once to a probing bucket.
	probeSends = 2
	// probeWait bounds how long other deliveries wait for the probes'
	// answers (about one Gmail call), so that a slow or stuck probe
	// delays a burst by that much at most.
	probeWait = time.Second
	// paceCeiling is the fastest paced rate, sends a second, 4× the
	// per-user rate Gmail documents (250 quota units/s, 100 per send):
	// reached, the bucket opens.
	paceCeiling = 10.0
	// paceFloor is the slowest rate a refusal lowers a bucket to.
	paceFloor = 0.5
	// paceMargin is how far under the rate a refusal implies the bucket
	// goes, so that slots do not land on the instant Gmail's bucket
	// refills, where the requests' jitter would get some refused.
	paceMargin = 0.95
	// paceNudge lowers the rate on a refusal that came while the bucket
	// was already under the rate Gmail's "Retry after" implies.
	paceNudge = 0.98
	// paceBackoff lowers the rate when a refusal says nothing of when to
	// retry (a 403 userRateLimitExceeded, a 429 without a time).
	paceBackoff = 0.5
	// credibleWithin: a "Retry after" at most this far after the last
	// accepted send is read as Gmail's spacing between sends, which gives
	// the rate: it is Gmail's documented per-user spacing (400 ms at 2.5
	// sends/s) with room for the answers' latency. One further away
	// (Gmail's 429s with a time seconds, minutes or hours ahead, the
	// sandbox's injected 429s) is a pause: the bucket waits for it but
	// keeps its pace, as a rate read from it would be far too slow.
	credibleWithin = 500 * time.Millisecond
	// Every recoverAfter sends accepted without a refusal raise a paced
	// rate by recoverStep sends a second.
	recoverAfter = 20
	recoverStep  = 0.25
	// forgetAfter without a refusal returns a paced bucket to probing, and
	// idleAfter without a delivery drops a bucket: the rate may have been
	// a passing state of the mailbox (its other mail clients share it).
	forgetAfter = 5 * time.Minute
	idleAfter   = time.Hour
	// sweepEvery reservations look for idle buckets.
	sweepEvery = 1024
)

type paceMode int

const (
	probing paceMode = iota
	open
	paced
)

// pace holds the accounts' buckets. Its zero value is not usable: see
// newPace.
type pace struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	calls   int
}

func newPace() *pace { return &pace{buckets: map[string]*bucket{}} }

// bucket is one account's pace.
type bucket struct {
	mode paceMode
	// rate is sends a second, when paced.
	rate float64
	// free is when the next paced slot is free.
	free time.Time
	// notBefore is Gmail's "Retry after".
	notBefore time.Time
	// probes counts the probes handed out, probed those answered.
	probes, probed int
	// changed is closed, and replaced, when slots already handed out are
	// no longer right (a refusal moved them, or the probes were answered):
	// their waiters take new ones.
	changed chan struct{}
	// lowered is when the rate last went down: an answer to a send that
	// started earlier was for the old pace, and does not count.
	lowered time.Time
	// accepted is when Gmail's latest acceptance of a send came back.
	accepted time.Time
	// run counts accepted sends since the rate last changed.
	run int
	// limited is the last refusal's time, and msg Gmail's words in it.
	limited time.Time
	msg     string
	// used is the last reservation's time.
	used time.Time
}

// slot is a reservation: send at at, unless changed is closed first
// (then take a new one). probe says the slot waits for the probes'
// answers: if it comes without them, call probeTimedOut.
type slot struct {
	at      time.Time
	changed <-chan struct{}
	probe   bool
}

// refusal is why reserve handed out no slot: the earliest it could have,
// and Gmail's words that made the account slow down, if any.
type refusal struct {
	at  time.Time
	msg string
}

func (p *pace) get(account string, now time.Time) *bucket {
	b := p.buckets[account]
	if b == nil || (b.mode == paced && now.Sub(b.limited) > forgetAfter && !now.Before(b.notBefore)) {
		b = &bucket{changed: make(chan struct{})}
		p.buckets[account] = b
	}
	return b
}

// reserve hands account's delivery the next slot, if it is at most budget
// after now (a negative budget allows only now). A refusal takes nothing.
func (p *pace) reserve(account string, now time.Time, budget time.Duration) (slot, *refusal) {
	budget = max(budget, 0)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls%sweepEvery == 0 {
		p.sweep(now)
	}
	b := p.get(account, now)
	b.used = now
	at := now
	if b.notBefore.After(at) {
		at = b.notBefore
	}
	switch b.mode {
	case probing:
		if b.probes < probeSends {
			if at.Sub(now) > budget {
				return slot{}, &refusal{at: at, msg: b.msg}
			}
			b.probes++
			return slot{at: at, changed: b.changed}, nil
		}
		// Wait for the probes' answers: they close changed. A waiter
		// that times out sends anyway.
		if at.Sub(now) > budget {
			return slot{}, &refusal{at: at, msg: b.msg}
		}
		return slot{at: at.Add(min(probeWait, budget-at.Sub(now))), changed: b.changed, probe: true}, nil
	case paced:
		if b.free.After(at) {
			at = b.free
		}
		if at.Sub(now) > budget {
			return slot{}, &refusal{at: at, msg: b.msg}
		}
		b.free = at.Add(b.interval())
		return slot{at: at, changed: b.changed}, nil
	}
	if at.Sub(now) > budget {
		return slot{}, &refusal{at: at, msg: b.msg}
	}
	return slot{at: at, changed: b.changed}, nil
}

// answered records Gmail's answer, other than a rate limit, to account's
// send that started at started, answered at now: accepted says it took the
// message.
func (p *pace) answered(account string, started, now time.Time, accepted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.buckets[account]
	if b == nil {
		return
	}
	if accepted && now.After(b.accepted) {
		b.accepted = now
	}
	switch b.mode {
	case probing:
		// Any answer but a rate limit says the mailbox is not refusing
		// for its rate.
		if b.probed++; b.probed >= probeSends {
			b.open()
		}
	case paced:
		if !accepted || started.Before(b.lowered) {
			return
		}
		if b.run++; b.run >= recoverAfter {
			b.run = 0
			b.rate += recoverStep
			if b.rate >= paceCeiling {
				b.mode = open
			}
		}
	}
}

// probeTimedOut ends account's probing when a delivery waited probeWait for the
// probes' answers in vain (a probe may never reach Gmail: its request was
// a duplicate, or its token missing): the mailbox is taken as healthy.
func (p *pace) probeTimedOut(account string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.buckets[account]; b != nil && b.mode == probing {
		b.open()
	}
}

// limited records that Gmail refused account's send that started at
// started, answered at now, with retryAt its "Retry after" (zero if it
// gave none) and msg its words.
func (p *pace) limited(account string, started, now, retryAt time.Time, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.get(account, now)
	b.limited, b.msg = now, msg
	moved := false
	if retryAt.After(b.notBefore) {
		b.notBefore, moved = retryAt, true
	}
	if b.mode == paced && started.Before(b.lowered) {
		// Sent before the last slow-down: its refusal is that one's echo.
		if moved {
			b.moved()
		}
		return
	}
	rate := paceCeiling
	if b.mode == paced {
		rate = b.rate
	}
	// Gmail's bucket was last drawn by the latest accepted send, or else
	// by none since this refusal: from then to the "Retry after" is at
	// most Gmail's spacing between sends. The answers come after the
	// draws, so the spacing measured from them is shorter, and the rate
	// it gives an upper bound: the earlier answer gives the closer one.
	ref := now
	if b.accepted.Before(ref) && retryAt.Sub(b.accepted) <= credibleWithin {
		ref = b.accepted
	}
	switch spacing := retryAt.Sub(ref); {
	case retryAt.IsZero():
		rate *= paceBackoff
	case spacing > credibleWithin:
		// A pause, not a rate: wait for it, keep the pace. A probe so
		// answered has learnt what it could.
		if b.mode == probing {
			b.mode, moved = open, true
		}
		if moved {
			b.moved()
		}
		return
	case spacing > 0:
		// Just under Gmail's rate. A refusal while already under it came
		// from the requests' jitter, not the rate: it only nudges the
		// pace down, where Gmail's next refill is less often raced.
		rate = min(rate*paceNudge, float64(time.Second)/float64(spacing)*paceMargin)
	default:
		rate *= paceMargin
	}
	b.mode, b.rate = paced, max(rate, paceFloor)
	b.lowered, b.run = now, 0
	// Slots restart after Gmail's time (or one interval on): the ones
	// handed out were too close.
	b.free = time.Time{}
	if retryAt.IsZero() {
		b.notBefore = now.Add(b.interval())
	}
	b.moved()
}

func (b *bucket) interval() time.Duration {
	return time.Duration(float64(time.Second) / b.rate)
}

func (b *bucket) open() {
	b.mode = open
	b.moved()
}

// moved tells the waiters to take new slots.
func (b *bucket) moved() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// sweep drops the buckets no delivery used for idleAfter.
func (p *pace) sweep(now time.Time) {
	for a, b := range p.buckets {
		if now.Sub(b.used) > idleAfter && now.After(b.notBefore) {
			delete(p.buckets, a)
		}
	}
}
