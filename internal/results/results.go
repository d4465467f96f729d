// Package results publishes the outcome of every send request to the
// results topic (DESIGN §3), so a publisher learns what became of each
// message without polling. Events carry the status and idempotency key as
// attributes, so subscribers can filter without decoding.
package results

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	vkit "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc"
)

// Status is a result's status.
type Status string

// Statuses.
const (
	StatusSent      Status = "sent"
	StatusFailed    Status = "failed"
	StatusDuplicate Status = "duplicate"
)

// Error is a failed result's error.
type Error struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	Retryable    bool   `json:"retryable"`
	ReconnectURL string `json:"reconnect_url,omitempty"`
}

// Event is one result.
type Event struct {
	IdempotencyKey  string    `json:"idempotency_key"`
	PubSubMessageID string    `json:"pubsub_message_id"`
	Account         string    `json:"account"`
	Status          Status    `json:"status"`
	GmailMessageID  string    `json:"gmail_message_id,omitempty"`
	GmailThreadID   string    `json:"gmail_thread_id,omitempty"`
	Attempt         int       `json:"attempt"`
	FinishedAt      time.Time `json:"finished_at"`
	// MaybeDuplicate is set when an earlier attempt reached Gmail without an
	// answer, so this message may have been delivered twice.
	MaybeDuplicate bool   `json:"maybe_duplicate,omitempty"`
	Error          *Error `json:"error,omitempty"`
}

// Message turns e into the Pub/Sub message that carries it.
func (e *Event) Message() (*pubsub.Message, error) {
	data, err := e.appendJSON(make([]byte, 0, 320))
	if err != nil {
		return nil, fmt.Errorf("results: encoding event: %w", err)
	}
	attrs := map[string]string{"status": string(e.Status), "idempotency_key": e.IdempotencyKey}
	if e.Error != nil {
		attrs["error_code"] = e.Error.Code
	}
	return &pubsub.Message{Data: data, Attributes: attrs}, nil
}

// Publisher publishes events to one topic, in batches: every event that
// arrives within BatchDelay of the first goes in one Publish call.
//
// It calls the Pub/Sub client's TopicAdminClient (the generated gRPC client
// under pubsub.Publisher, with its retry settings) rather than
// pubsub.Publisher, because every delivery waits for its own result and
// nothing else: the Publisher's ordering-key scheduler, flow control,
// OpenCensus tags, telemetry and per-message size accounting cost about
// 20 µs of a delivery's CPU (the sender's benchmarks, before and after;
// BenchmarkPublish here compares the two with pstest in-process).
type Publisher struct {
	admin *vkit.TopicAdminClient
	topic string
	delay time.Duration

	mu      sync.Mutex
	cur     *batch
	stopped bool
	sending sync.WaitGroup

	// work hands a batch to a sender goroutine waiting for one; it is
	// unbuffered, so a batch never waits behind another's Publish call.
	work     chan *batch
	quit     chan struct{} // closed by Stop: idle senders leave
	stopOnce sync.Once
	// started and running count sender goroutines, for the tests.
	started, running atomic.Int64
}

// batch is one Publish call in the making.
type batch struct {
	req   pubsubpb.PublishRequest
	bytes int
	timer *time.Timer
	done  chan struct{} // closed when err is set
	err   error
}

// BatchDelay is how long a batch waits for more events. Results are small
// and a delivery's acknowledgement waits for its result, so it is short.
const BatchDelay = time.Millisecond

// Pub/Sub's limits on one Publish request (pubsub.MaxPublishRequestCount
// and MaxPublishRequestBytes): an event that would take its batch over
// either sends that batch at once and starts the next.
const (
	maxBatchCount = pubsub.MaxPublishRequestCount
	maxBatchBytes = 9 << 20 // under the 10 MB limit, with room for the framing
)

// ErrStopped is returned by Publish after Stop.
var ErrStopped = errors.New("results: the publisher is stopped")

// NewPublisher publishes to topic (an ID, or a full name) through client.
func NewPublisher(client *pubsub.Client, topic string) *Publisher {
	if !strings.HasPrefix(topic, "projects/") {
		topic = "projects/" + client.Project() + "/topics/" + topic
	}
	return &Publisher{admin: client.TopicAdminClient, topic: topic, delay: BatchDelay,
		work: make(chan *batch), quit: make(chan struct{})}
}

// Publish publishes e and waits until Pub/Sub has it, or ctx ends. An event
// whose wait ends with ctx may still be published.
func (p *Publisher) Publish(ctx context.Context, e *Event) error {
	m, err := e.Message()
	if err != nil {
		return err
	}
	pm := &pubsubpb.PubsubMessage{Data: m.Data, Attributes: m.Attributes}
	size := len(m.Data) + 64
	for k, v := range m.Attributes {
		size += len(k) + len(v) + 8
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return fmt.Errorf("results.Publish: %w", ErrStopped)
	}
	b := p.cur
	if b != nil && (len(b.req.Messages) == maxBatchCount || b.bytes+size > maxBatchBytes) {
		p.detachLocked(b)
		b = nil
	}
	if b == nil {
		b = &batch{req: pubsubpb.PublishRequest{Topic: p.topic}, done: make(chan struct{})}
		p.cur = b
		b.timer = time.AfterFunc(p.delay, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.cur == b {
				p.detachLocked(b)
			}
		})
	}
	b.req.Messages = append(b.req.Messages, pm)
	b.bytes += size
	p.mu.Unlock()

	select {
	case <-b.done:
		if b.err != nil {
			return fmt.Errorf("results.Publish: %w", b.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("results.Publish: %w", context.Cause(ctx))
	}
}

// detachLocked takes b out of reach of new events and sends it. Whoever
// detaches a batch (its timer, a full batch, Stop) sends it, once.
func (p *Publisher) detachLocked(b *batch) {
	p.cur = nil
	b.timer.Stop()
	p.sending.Add(1)
	select {
	case p.work <- b:
	default:
		go p.sendLoop(b)
	}
}

// senderIdle is how long a sender goroutine waits for its next batch.
const senderIdle = 10 * time.Second

// sendLoop sends b, then the batches handed to it while it waits, for up
// to senderIdle between them. A goroutine per batch cost 2% of a
// delivery's CPU: each one grew its stack afresh to the depth of a gRPC
// call.
func (p *Publisher) sendLoop(b *batch) {
	p.started.Add(1)
	p.running.Add(1)
	defer p.running.Add(-1)
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	for {
		p.send(b)
		idle.Reset(senderIdle)
		select {
		case b = <-p.work:
		case <-idle.C:
			return
		case <-p.quit:
			return
		}
	}
}

// send makes one Publish call for b. It runs under a context of its own:
// one delivery giving up must not fail the others in the batch.
func (p *Publisher) send(b *batch) {
	defer p.sending.Done()
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	_, b.err = p.admin.Publish(ctx, &b.req, gax.WithGRPCOptions(grpc.MaxCallSendMsgSize(maxBatchBytes+1<<20)))
	close(b.done)
}

// publishTimeout bounds one Publish call, retries included, as the client
// library's default call settings do.
const publishTimeout = 60 * time.Second

// Stop sends what is pending, waits for every Publish call in flight, and
// makes later Publish calls fail with ErrStopped. Calling it again waits
// again.
func (p *Publisher) Stop() {
	p.mu.Lock()
	p.stopped = true
	if p.cur != nil {
		p.detachLocked(p.cur)
	}
	p.mu.Unlock()
	p.sending.Wait()
	p.stopOnce.Do(func() { close(p.quit) })
}
