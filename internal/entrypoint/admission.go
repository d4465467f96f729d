package entrypoint

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/gmailrelay/gmailrelay/internal/logging"
)

// DefaultMemoryLimit is the sender's memory budget when GOMEMLIMIT is not
// set: Cloud Run gives it 512 MiB, and Go does not read the container's
// limit by itself. Terraform sets GOMEMLIMIT to about 90% of
// available_memory, which this default matches.
const DefaultMemoryLimit = 450 << 20

// MemoryLimit is the process's memory budget: the Go runtime's soft limit
// (GOMEMLIMIT), or DefaultMemoryLimit when none is set, which it then sets
// as the runtime's limit too, so that the collector runs before the heap
// doubles rather than after (639 MB against 434 MB peak RSS for 80 pushes
// of nearly 10 MB, DESIGN.md §5).
func MemoryLimit() int64 {
	limit, unset := memoryLimit(debug.SetMemoryLimit(-1))
	if unset {
		debug.SetMemoryLimit(limit)
	}
	return limit
}

// memoryLimit is the budget for the runtime's current limit, and whether
// none was set (the runtime reports math.MaxInt64).
func memoryLimit(current int64) (int64, bool) {
	if current == math.MaxInt64 {
		return DefaultMemoryLimit, true
	}
	return current, false
}

// What a push costs in memory, measured with the packaged sender
// (scripts/loadtest -mode=large, the sender run with GOGC=1 so that its
// VmHWM follows the live heap instead of twice it): one push of 13.3 MB
// (10 MB of request data in base64, an attachment of 7.5 MB) raised VmHWM
// from 28 MB to 74 MB, 46 MB or 3.5 times the push body (80 MB, 3.9 times,
// before the body was read into one buffer and base64 decoded without a
// string copy). That is the body, the decoded data, json.Decoder's copy of
// it, the request with its decoded attachment, the composed message and
// the upload's buffers, alive at once; 4 leaves a margin. Checked by
// scripts/loadtest -mode=burst: 80 such pushes at once, GOMEMLIMIT=460MiB,
// peak at 477 MiB RSS (3,655 MiB with the budget out of the way). A small
// push costs more than its size (clients' buffers, its goroutine), hence
// the fixed overhead.
const (
	// CostFactor is the memory per byte of push body.
	CostFactor = 4
	// CostOverhead is the memory of a push beyond its body's.
	CostOverhead = 256 << 10
	// IdleReserve is what the sender holds with nothing in flight (VmHWM
	// 27 MB after start-up and a first send), kept out of the budget that
	// pushes share.
	IdleReserve = 32 << 20
	// DefaultAdmitWait is how long a push over budget waits for room
	// before it is refused with 429: long enough for a send at Gmail's
	// usual latency (100 to 1,000 ms) to finish, short enough that Pub/Sub
	// redelivers rather than holds the request open.
	DefaultAdmitWait = 2 * time.Second
	// retryAfter is the Retry-After of a refused push, in seconds: the
	// push subscription's minimum backoff (retry_policy, infra/).
	retryAfter = 10
	// ReferenceCost is what a push whose request attaches Cloud Storage
	// objects (gcs_uri) costs beyond its body, whatever the objects' size:
	// the message is streamed, so what it holds is one upload chunk
	// (gmail.ResumableChunk, 4 MiB), the object reader's and the pipe's
	// buffers, and the HTTP clients' — one object is read at a time, so
	// the cost is per push, not per reference. Measured with
	// TestPeakRSSByReference (internal/sender): a 30.1 MiB message by
	// reference raised the sender process's VmHWM by 5.2 MiB over its peak
	// after a small send (45.4 to 50.6 MiB); 8 MiB leaves a margin. A push
	// body cannot show the
	// references before it is read (its data is base64), so this is
	// charged once the push is decoded (chargeReferences), on top of what
	// Handler charged by Content-Length.
	ReferenceCost = 8 << 20
)

// Admission admits pushes while the memory they are estimated to cost fits
// its capacity, so that a burst of large pushes queues briefly and is then
// refused with 429 (which Pub/Sub redelivers later, nothing lost, and no
// Gmail call made, so nothing ambiguous) instead of taking the instance
// over its memory limit, where Cloud Run kills it and every delivery in
// flight with it. The semaphore is FIFO: a large push waiting is not
// overtaken by small ones, so it cannot starve.
type Admission struct {
	sem      *semaphore.Weighted
	capacity int64
	wait     time.Duration
}

// NewAdmission admits pushes within capacity bytes of estimated cost; a
// push waits at most wait for room (and no longer than its request lasts).
func NewAdmission(capacity int64, wait time.Duration) *Admission {
	capacity = max(capacity, CostOverhead)
	return &Admission{sem: semaphore.NewWeighted(capacity), capacity: capacity, wait: wait}
}

// AdmitWithin is the admission of a process whose memory limit is limit
// (see MemoryLimit): pushes share what the idle process leaves.
func AdmitWithin(limit int64) *Admission {
	return NewAdmission(limit-IdleReserve, DefaultAdmitWait)
}

// Cost is the estimated memory of a push whose Content-Length is n, or -1
// when unknown (chunked), which is charged the largest push. A push larger
// than the whole capacity is charged the capacity, so that it runs alone
// rather than waits forever; one over MaxPushBody is refused unread and
// costs only the overhead.
func (a *Admission) Cost(n int64) int64 {
	switch {
	case n > MaxPushBody:
		n = 0
	case n < 0:
		n = MaxPushBody
	}
	return min(n*CostFactor+CostOverhead, a.capacity)
}

// acquire takes weight, waiting at most a.wait.
func (a *Admission) acquire(ctx context.Context, weight int64) bool {
	if a.sem.TryAcquire(weight) {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, a.wait)
	defer cancel()
	return a.sem.Acquire(ctx, weight) == nil
}

// Handler admits each request to next before its body is read, and
// releases its weight when next returns, panicking or not. The request's
// context carries the Admission, for chargeReferences.
func (a *Admission) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		weight := a.Cost(r.ContentLength)
		if !a.acquire(r.Context(), weight) {
			ctx := r.Context()
			logging.FromContext(ctx).WarnContext(ctx, "push refused with 429: the instance's memory budget is taken; Pub/Sub will redeliver it",
				"content_length", r.ContentLength, "cost", weight, "capacity", a.capacity)
			// The body stays unread, so the connection cannot be reused.
			w.Header().Set("Connection", "close")
			refuseBusy(w)
			return
		}
		defer a.sem.Release(weight)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), admissionKey{}, a)))
	})
}

// refuseBusy answers 429, which Pub/Sub redelivers after Retry-After.
func refuseBusy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	http.Error(w, "The instance is at its memory budget; Pub/Sub will redeliver the message.", http.StatusTooManyRequests)
}

type admissionKey struct{}

// referenceMarker is the member name of an attachment by reference. A
// request that has it in its text (even in a body) is charged, which at
// worst over-charges a push that quotes it.
var referenceMarker = []byte(`"gcs_uri"`)

// chargeReferences admits ReferenceCost more for a decoded push whose
// request data attaches objects by reference, when ctx carries an
// Admission (Handler's). It reports false when that does not fit in time:
// the push is then refused, before any Gmail call. release gives it back.
func chargeReferences(ctx context.Context, data []byte) (release func(), ok bool) {
	a, _ := ctx.Value(admissionKey{}).(*Admission)
	if a == nil || !bytes.Contains(data, referenceMarker) {
		return func() {}, true
	}
	weight := min(int64(ReferenceCost), a.capacity)
	if !a.acquire(ctx, weight) {
		logging.FromContext(ctx).WarnContext(ctx, "push refused with 429: the instance's memory budget has no room for a send streamed from Cloud Storage; Pub/Sub will redeliver it",
			"cost", weight, "capacity", a.capacity)
		return nil, false
	}
	return func() { a.sem.Release(weight) }, true
}
