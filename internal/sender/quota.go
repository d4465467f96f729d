package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/registry"
)

// Usage is where the sender counts each mailbox's accepted sends against
// its daily limits (package registry's quota rules).
type Usage interface {
	AddUsage(ctx context.Context, email string, add []registry.Bucket, drop []time.Time) error
}

var (
	_ Usage = (*registry.Firestore)(nil)
	_ Usage = (*registry.Local)(nil)
)

// usageWriteInterval is the least time between two count writes to one
// account's document from one instance. Firestore sustains about one write
// a second to a document; Gmail lets one mailbox send a few a second, so
// writing on every send would queue writes behind each other. A send that
// finds a write recent leaves its count pending, and a timer writes it.
const usageWriteInterval = time.Second

// usageWriteTimeout bounds one count write.
const usageWriteTimeout = 10 * time.Second

// quota keeps this instance's part of each mailbox's count that the
// registry does not hold yet: deliveries admitted but not finished
// (reserved), and sends finished but not yet written (pending). Admitting a
// delivery checks the stored count, read with the account as every
// delivery reads it anyway, plus these, so the check costs no read, and
// concurrent deliveries on one instance cannot all slip under the limit.
// What other instances have reserved or not yet written (at most a second
// of their sends) is not seen: the limit can be passed by that much.
type quota struct {
	store Usage
	now   func() time.Time
	// clock is the real clock, which paces the writes: tests move now.
	clock func() time.Time

	mu       sync.Mutex
	accounts map[string]*tally
	closed   bool
}

type tally struct {
	reserved, reservedRecipients int
	pending                      []registry.Bucket
	// inflight is the count a running write carries, and written what
	// this instance's writes stored lately: an account read while a write
	// runs, or just before it lands, does not show it yet, so admit counts
	// both itself until a read is known to be younger than the write.
	inflight []registry.Bucket
	written  []writtenCount
	// drop are hours the last read showed out of the window, removed with
	// the next write so the stored map stays at most 25 hours long.
	drop      []time.Time
	lastWrite time.Time
	writing   bool
	timer     *time.Timer
	// log is the last settling delivery's logger, for the timer's writes,
	// which run outside any request.
	log *slog.Logger
}

// writtenCount is a count this instance wrote, and when the write returned
// (by the real clock).
type writtenCount struct {
	registry.Bucket
	at time.Time
}

func newQuota(store Usage, now func() time.Time) *quota {
	return &quota{store: store, now: now, clock: time.Now, accounts: map[string]*tally{}}
}

// quotaRefusal is a delivery the mailbox's daily limits do not admit now.
type quotaRefusal struct {
	limits     registry.Limits
	messages   int
	recipients int
	retryAt    time.Time // zero: the request can never fit
}

// readStarted is the real-clock time an account read begins, for admit.
func (q *quota) readStarted() time.Time { return q.clock() }

// admit checks one more message to recipients recipients against a's
// limits, read from the registry from readAt on, and, when it fits,
// reserves it until settle.
func (q *quota) admit(email string, a *registry.Account, readAt time.Time, recipients int, now time.Time) *quotaRefusal {
	limits := a.Limits()
	stored := a.Buckets()
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.accounts[email]
	if t == nil {
		t = &tally{}
		q.accounts[email] = t
	}
	// A write that returned before the read began is in stored; a later
	// one may or may not be, so its hour counts at least what this
	// instance wrote into it (max, not sum: never twice).
	t.written = slices.DeleteFunc(t.written, func(w writtenCount) bool { return w.at.Before(readAt) })
	buckets := withOwnWrites(stored, t.written)
	buckets = append(buckets, t.pending...)
	buckets = append(buckets, t.inflight...)
	buckets = append(buckets, registry.Bucket{Hour: registry.HourOf(now), Messages: t.reserved, Recipients: t.reservedRecipients})
	ok, retryAt := registry.Admit(buckets, now, recipients, limits)
	if !ok {
		msgs, rcpts := registry.Usage(buckets, now)
		return &quotaRefusal{limits: limits, messages: msgs, recipients: rcpts, retryAt: retryAt}
	}
	t.reserved++
	t.reservedRecipients += recipients
	for _, b := range stored {
		if !b.Live(now) {
			t.drop = append(t.drop, b.Hour)
		}
	}
	return nil
}

// settle ends a reservation. A message that was sent, or may have been,
// counts; the count is written at once unless a write is recent, then
// within usageWriteInterval.
func (q *quota) settle(ctx context.Context, email string, recipients int, sent bool, now time.Time) {
	q.mu.Lock()
	t := q.accounts[email]
	if t == nil {
		q.mu.Unlock()
		return
	}
	t.reserved--
	t.reservedRecipients -= recipients
	if !sent {
		q.forgetIdle(email, t)
		q.mu.Unlock()
		return
	}
	t.pending = append(t.pending, registry.Bucket{Hour: registry.HourOf(now), Messages: 1, Recipients: recipients})
	t.log = logging.FromContext(ctx)
	add, drop, ok := q.take(email, t)
	q.mu.Unlock()
	if ok {
		q.write(ctx, email, add, drop)
	}
}

// take hands out t's pending count for writing when no write is running
// and the last is old enough; otherwise it makes sure a timer will.
// q.mu is held.
func (q *quota) take(email string, t *tally) (add []registry.Bucket, drop []time.Time, ok bool) {
	if len(t.pending) == 0 && len(t.drop) == 0 {
		return nil, nil, false
	}
	if wait := t.lastWrite.Add(usageWriteInterval).Sub(q.clock()); t.writing || wait > 0 {
		if t.timer == nil && !q.closed {
			t.timer = time.AfterFunc(max(wait, usageWriteInterval/10), func() { q.flushAccount(email) })
		}
		return nil, nil, false
	}
	add, drop = t.pending, t.drop
	t.pending, t.drop = nil, nil
	t.inflight = add
	t.writing = true
	return add, drop, true
}

// write stores a count and, if it fails, keeps it for the next write:
// the registry briefly undercounting costs at most a few sends over the
// limit, while failing the delivery for it would send the message again.
func (q *quota) write(ctx context.Context, email string, add []registry.Bucket, drop []time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), usageWriteTimeout)
	defer cancel()
	err := q.store.AddUsage(ctx, email, add, drop)
	q.mu.Lock()
	t := q.accounts[email]
	t.writing = false
	t.inflight = nil
	t.lastWrite = q.clock()
	log := t.log
	gone := errors.Is(err, registry.ErrNotFound)
	switch {
	case gone:
		// The account's document is gone (a test's store, a manual
		// delete): there is nothing to count against, and retrying
		// every second would never end.
	case err != nil:
		t.pending = append(add, t.pending...)
	default:
		for _, b := range add {
			t.written = append(t.written, writtenCount{Bucket: b, at: t.lastWrite})
		}
	}
	again := len(t.pending) > 0 && t.timer == nil && !q.closed
	if again {
		t.timer = time.AfterFunc(usageWriteInterval, func() { q.flushAccount(email) })
	}
	q.forgetIdle(email, t)
	q.mu.Unlock()
	if log == nil {
		log = logging.FromContext(ctx)
	}
	switch {
	case gone:
		log.WarnContext(ctx, "the mailbox's registry entry is gone; its sends are not counted against a daily limit", "account", email, "error", err)
	case err != nil:
		log.WarnContext(ctx, "counting the send against the mailbox's daily limit failed; kept to write again", "account", email, "error", err)
	}
}

// flushAccount is the timer's write of a pending count.
func (q *quota) flushAccount(email string) {
	q.mu.Lock()
	t := q.accounts[email]
	if t == nil {
		q.mu.Unlock()
		return
	}
	t.timer = nil
	add, drop, ok := q.take(email, t)
	q.mu.Unlock()
	if ok {
		q.write(context.Background(), email, add, drop)
	}
}

// forgetIdle drops an account with nothing reserved, pending or lately
// written, so the map holds mailboxes that are sending (one that stops
// right after a write stays until its next delivery: at most one small
// tally per connected mailbox). q.mu is held.
func (q *quota) forgetIdle(email string, t *tally) {
	if t.reserved == 0 && len(t.pending) == 0 && !t.writing && t.timer == nil && !q.recentWrite(t) {
		delete(q.accounts, email)
	}
}

// recentWrite reports whether t wrote so lately that a read already under
// way might not show it: keep it, or a delivery reading now would miss it.
func (q *quota) recentWrite(t *tally) bool {
	return len(t.written) > 0 && q.clock().Sub(t.lastWrite) < usageWriteTimeout
}

// withOwnWrites returns stored with each hour raised to at least what
// written holds for it.
func withOwnWrites(stored []registry.Bucket, written []writtenCount) []registry.Bucket {
	if len(written) == 0 {
		return stored
	}
	own := map[int64]registry.Bucket{}
	for _, w := range written {
		k := registry.HourOf(w.Hour).Unix()
		b := own[k]
		b.Hour = registry.HourOf(w.Hour)
		b.Messages += w.Messages
		b.Recipients += w.Recipients
		own[k] = b
	}
	out := slices.Clone(stored)
	for i, b := range out {
		k := registry.HourOf(b.Hour).Unix()
		if o, ok := own[k]; ok {
			out[i].Messages = max(b.Messages, o.Messages)
			out[i].Recipients = max(b.Recipients, o.Recipients)
			delete(own, k)
		}
	}
	for _, o := range own {
		out = append(out, o)
	}
	return out
}

// close writes every pending count now, so a shutdown (Cloud Run's SIGTERM)
// loses none; only a crash loses the last second's. It waits, within ctx,
// for writes already running.
func (q *quota) close(ctx context.Context) error {
	q.mu.Lock()
	q.closed = true
	for _, t := range q.accounts {
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
	}
	q.mu.Unlock()
	tried := map[string]bool{}
	for {
		q.mu.Lock()
		var email string
		var add []registry.Bucket
		var drop []time.Time
		busy, lost := false, 0
		for e, t := range q.accounts {
			switch {
			case t.writing:
				busy = true
			case len(t.pending) > 0 && email == "" && !tried[e]:
				tried[e] = true
				email, add, drop = e, t.pending, t.drop
				t.pending, t.drop, t.writing, t.inflight = nil, nil, true, add
			}
			for _, b := range t.pending {
				lost += b.Messages
			}
		}
		q.mu.Unlock()
		switch {
		case email != "":
			q.write(ctx, email, add, drop)
			continue
		case !busy && lost > 0:
			return fmt.Errorf("sender: %d sends could not be counted against their mailboxes' daily limits", lost)
		case !busy:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sender: %d sends not yet counted against their mailboxes' daily limits: %w", lost, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// failure is the refusal as a held delivery's failure: daily_limit with
// the time the window lets the message in, as Gmail's own daily cap is
// reported, so publishers handle both alike.
func (r *quotaRefusal) failure(email string) *gmail.Failure {
	used := fmt.Sprintf("%d messages", r.messages)
	limit := fmt.Sprintf("%d messages", r.limits.Messages)
	if r.limits.Recipients > 0 {
		used += fmt.Sprintf(" to %d recipients", r.recipients)
		limit += fmt.Sprintf(" or %d recipients", r.limits.Recipients)
	}
	fix := fmt.Sprintf(`; an operator can set the mailbox's limit with PATCH /admin/accounts/%s {"daily_limit": N} (at most %d)`, email, registry.MaxDailyLimit)
	if r.retryAt.IsZero() {
		return &gmail.Failure{Code: gmail.CodeDailyLimit,
			Message: fmt.Sprintf("the message has more recipients than %s may send to in 24 hours (%d); split it into smaller messages", email, r.limits.Recipients)}
	}
	return &gmail.Failure{Code: gmail.CodeDailyLimit, Retryable: true, RetryAt: r.retryAt,
		Message: fmt.Sprintf("%s has sent %s in the last 24 hours, and its daily limit is %s: the relay holds this message so that Google does not lock the mailbox, until %s when older sends leave the window%s",
			email, used, limit, r.retryAt.UTC().Format(time.RFC3339), fix)}
}
