package bench

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/sender"
)

// pushSim plays Pub/Sub push with the deployed subscription's policy, with
// time scaled down: each message is pushed until one delivery acks it; a
// nack is redelivered after an exponential backoff (MinBackoff doubling up
// to MaxBackoff, as retry_policy 10s..600s does); after MaxAttempts
// deliveries without an ack the message is dead-lettered. A fraction of
// pushes is duplicated, as at-least-once delivery does. Workers bound the
// deliveries in flight, as the sender's concurrency does.
type pushSim struct {
	Handle      func(context.Context, sender.Delivery) error
	Ctx         context.Context
	Workers     int
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
	MaxAttempts int
	DupRate     float64
	DupDelay    time.Duration // duplicates arrive up to this long after the first push
	Seed        uint64

	ready chan *simDelivery
	quit  chan struct{}
	wg    sync.WaitGroup // one per message until acked or dead-lettered
	dups  sync.WaitGroup // one per duplicate push until delivered
	mu    sync.Mutex
	rng   *rand.Rand

	Deliveries   atomic.Int64
	Nacks        atomic.Int64
	Duplicates   atomic.Int64
	DeadLettered atomic.Int64
	MaxSeen      atomic.Int64 // most deliveries of one message
}

type simMsg struct {
	d        sender.Delivery
	mu       sync.Mutex
	attempts int
	acked    bool
	dead     bool
	pending  int // deliveries queued or in flight
}

type simDelivery struct {
	m   *simMsg
	dup bool
}

func (p *pushSim) start() {
	p.ready = make(chan *simDelivery, 1<<16)
	p.quit = make(chan struct{})
	p.rng = rand.New(rand.NewPCG(p.Seed, 7))
	for i := 0; i < p.Workers; i++ {
		go p.worker()
	}
}

// publish queues messages for their first push.
func (p *pushSim) publish(ds []sender.Delivery) {
	for _, d := range ds {
		m := &simMsg{d: d}
		p.wg.Add(1)
		p.push(m, false)
		p.mu.Lock()
		dup := p.rng.Float64() < p.DupRate
		delay := time.Duration(p.rng.Int64N(int64(p.DupDelay) + 1))
		p.mu.Unlock()
		if dup {
			// A duplicate push comes at some point after the first: often
			// after the ack (a redelivery Pub/Sub did not see acked),
			// sometimes while the first is still in flight.
			p.Duplicates.Add(1)
			p.dups.Add(1)
			m.mu.Lock()
			m.pending++
			m.mu.Unlock()
			time.AfterFunc(delay, func() { p.enqueue(&simDelivery{m: m, dup: true}) })
		}
	}
}

func (p *pushSim) push(m *simMsg, dup bool) {
	m.mu.Lock()
	m.pending++
	m.mu.Unlock()
	p.enqueue(&simDelivery{m: m, dup: dup})
}

func (p *pushSim) enqueue(d *simDelivery) {
	select {
	case p.ready <- d:
	case <-p.quit:
	}
}

func (p *pushSim) worker() {
	for {
		var d *simDelivery
		select {
		case d = <-p.ready:
		case <-p.quit:
			return
		}
		p.deliver(d)
		if d.dup {
			p.dups.Done()
		}
	}
}

func (p *pushSim) deliver(d *simDelivery) {
	m := d.m
	m.mu.Lock()
	// A redelivery of a finished message is dropped; a duplicate push is
	// delivered whatever happened to the first, as Pub/Sub does.
	if (m.acked && !d.dup) || m.dead {
		m.pending--
		m.mu.Unlock()
		return
	}
	m.attempts++
	n := m.attempts
	m.mu.Unlock()
	if int64(n) > p.MaxSeen.Load() {
		p.MaxSeen.Store(int64(n)) // racy max; good enough for a figure
	}
	p.Deliveries.Add(1)
	err := p.Handle(p.Ctx, m.d)
	if err != nil {
		p.Nacks.Add(1)
	}
	m.mu.Lock()
	m.pending--
	switch {
	case m.acked || m.dead:
		m.mu.Unlock()
	case err == nil:
		m.acked = true
		m.mu.Unlock()
		p.wg.Done()
	case m.pending > 0:
		// Another delivery of this message is queued or in flight; its
		// outcome decides.
		m.mu.Unlock()
	case n >= p.MaxAttempts:
		m.dead = true
		m.mu.Unlock()
		p.DeadLettered.Add(1)
		p.wg.Done()
	default:
		m.pending++
		m.mu.Unlock()
		back := p.MinBackoff << min(n-1, 20)
		if back > p.MaxBackoff || back <= 0 {
			back = p.MaxBackoff
		}
		time.AfterFunc(back, func() { p.enqueue(&simDelivery{m: m}) })
	}
}

// wait blocks until every message is acked or dead-lettered and every
// duplicate push delivered, or timeout.
func (p *pushSim) wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { p.wg.Wait(); p.dups.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (p *pushSim) stop() { close(p.quit) }
