// Package sender turns one Pub/Sub send request into at most one Gmail
// send and exactly one result event. It owns the retry contract of DESIGN
// §3: it returns nil (ack) for a sent message, a duplicate and every final
// failure, and an error (nack) only when a redelivery can succeed.
package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/policy"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// Ledger is the idempotency ledger; every id is a ledger.Scope's ID.
type Ledger interface {
	Claim(ctx context.Context, id string, c ledger.ClaimRequest) (*ledger.Record, ledger.ClaimOutcome, error)
	Finish(ctx context.Context, id string, f ledger.Finish) error
	Release(ctx context.Context, id, errorCode, errorMessage string, now time.Time) error
	MarkAmbiguous(ctx context.Context, id string, now time.Time) error
}

// Accounts is the account registry.
type Accounts interface {
	Get(ctx context.Context, email string) (*registry.Account, error)
	SetStatus(ctx context.Context, email string, s registry.Status, reason string, now time.Time) (bool, registry.Status, error)
	SetHold(ctx context.Context, email string, until time.Time, reason string, now time.Time) (bool, error)
	// Create registers a delegated account on first use (tokens.go).
	Create(ctx context.Context, a *registry.Account) error
	// Usage counts the mailbox's sends against its daily limits (quota.go).
	Usage
}

// Results publishes result events.
type Results interface {
	Publish(ctx context.Context, e *results.Event) error
}

var (
	_ Ledger   = (*ledger.Firestore)(nil)
	_ Ledger   = (*ledger.Local)(nil)
	_ Accounts = (*registry.Firestore)(nil)
	_ Accounts = (*registry.Local)(nil)
	_ Results  = (*results.Publisher)(nil)
)

// Options are the sender's dependencies and settings.
type Options struct {
	Ledger   Ledger
	Accounts Accounts
	Tokens   Tokens
	Results  Results
	OAuth    Refresher
	Gmail    *gmail.Client
	// ConnectURL is authorize's URL, for reconnect links.
	ConnectURL string
	// Lease is how long a delivery owns a message before a redelivery may
	// take over. It must exceed SendTimeout.
	Lease time.Duration
	// SendTimeout bounds one Gmail call.
	SendTimeout time.Duration
	// PaceBudget is how long one delivery may wait in-process for a
	// rate-limited account's next send slot before it is nacked instead
	// (0 means 5 s; negative disables waiting). Waiting here rather than in
	// Pub/Sub's backoff keeps a burst from burning delivery attempts and
	// dead-lettering; the budget keeps a delivery well inside the function's
	// timeout.
	PaceBudget time.Duration
	// MaxDeliveryAttempts is the subscription's max_delivery_attempts (0:
	// unknown). A delivery that would be nacked on that attempt publishes a
	// failed result first, since Pub/Sub dead-letters the request next; an
	// unanswered send on that attempt fails instead of being held.
	MaxDeliveryAttempts int
	// MaxSendAttempts bounds the deliveries that claim a request and try
	// Gmail (the ledger record's Attempts; 0 means 10): a transient Gmail
	// failure on that attempt ends in a failed result and an ack. Held
	// deliveries never claim, so they do not count: Pub/Sub's
	// max_delivery_attempts can then be high enough to outlast a day's
	// hold, while an ordinary failure still ends after a few tries.
	MaxSendAttempts int
	Now             func() time.Time
	// Policy says which app may send as whom (nil: one app allowing
	// every account, as without APPS).
	Policy *policy.Policy
	// Delegation sends as users of delegated domains without a connect
	// (nil: none); Events receives the account events it raises (nil: the
	// log only). See tokens.go.
	Delegation Delegation
	Events     Events
	// Attachments configures attachments by Cloud Storage reference
	// (attachments.go); the zero value turns them off.
	Attachments Attachments
	// MaxBackoff is the subscription's retry_policy maximum_backoff (0
	// means 600 s, as infra/pubsub.tf sets it): with MaxDeliveryAttempts it
	// tells whether redeliveries can outlast a daily-limit hold, or the
	// request should be reported at once rather than dead-lettered.
	MaxBackoff time.Duration
}

// Sender handles send requests.
type Sender struct {
	opts  Options
	boxes *mailboxes
	quota *quota
	// pace spaces each account's sends to the rate Gmail allows it
	// (pace.go).
	pace *pace

	mu    sync.Mutex
	holds map[string]hold
}

// hold pauses an account (or, under projectHold, every account) until the
// time Gmail gave, so redeliveries do not hammer Gmail before it: its
// daily cap, or the project's quota. It also describes a rate-limited
// delivery that found no send slot within PaceBudget.
type hold struct {
	until time.Time
	code  gmail.Code
	msg   string
}

// New returns a Sender.
func New(o Options) (*Sender, error) {
	if o.Ledger == nil || o.Accounts == nil || o.Tokens == nil || o.Results == nil || o.OAuth == nil || o.Gmail == nil {
		return nil, errors.New("sender.New: a dependency is nil")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 2 * time.Minute
	}
	if o.PaceBudget == 0 {
		o.PaceBudget = 5 * time.Second
	}
	if o.MaxSendAttempts <= 0 {
		o.MaxSendAttempts = DefaultMaxSendAttempts
	}
	if o.Lease <= o.SendTimeout {
		o.Lease = o.SendTimeout + time.Minute
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 600 * time.Second
	}
	return &Sender{opts: o, boxes: newMailboxes(o.Tokens, o.OAuth, o.Gmail, o.Delegation, o.Accounts),
		quota: newQuota(o.Accounts, o.Now), pace: newPace(), holds: map[string]hold{}}, nil
}

// closeTimeout bounds Close's writes of the sends not yet counted.
const closeTimeout = 10 * time.Second

// Close writes the daily-limit counts not yet in the registry. Call it
// before closing the registry's client.
func (s *Sender) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return s.quota.close(ctx)
}

// Delivery is one Pub/Sub delivery of a send request.
type Delivery struct {
	MessageID  string
	Data       []byte
	Attributes map[string]string
	// DeliveryAttempt counts this message's deliveries, from 1; Pub/Sub
	// sets it when the subscription has a dead-letter policy, else 0.
	DeliveryAttempt int
	// Subscription is the push's subscription, from which Handle learns
	// the app (policy.AppFor); Pub/Sub authenticates the push, and only
	// project admins create subscriptions, so it can be trusted.
	Subscription string
	// App is the app the request came from. Handle sets it from
	// Subscription; a caller without a subscription (a test) may preset it.
	App string
}

// DefaultMaxSendAttempts is Options.MaxSendAttempts when unset.
const DefaultMaxSendAttempts = 10

// ErrRetry wraps every nack, so callers and tests can tell a deliberate
// redelivery from a bug.
var ErrRetry = errors.New("sender: redeliver later")

// recordTimeout bounds the ledger and results writes that follow a Gmail
// call, which run detached from the delivery's cancellation.
const recordTimeout = 30 * time.Second

// Handle processes one delivery. nil means acknowledge.
func (s *Sender) Handle(ctx context.Context, d Delivery) error {
	req, decodeErr := message.Decode(d.Data)
	key := d.Attributes["idempotency_key"]
	account := ""
	switch {
	case req != nil:
		account = req.Account
		if req.IdempotencyKey != "" {
			key = req.IdempotencyKey
		}
	default:
		// An invalid request is still reported under the key and account
		// its publisher gave, when they can be read at all.
		var loose struct {
			Account        string `json:"account"`
			IdempotencyKey string `json:"idempotency_key"`
		}
		if json.Unmarshal(d.Data, &loose) == nil {
			account = loose.Account
			if k := loose.IdempotencyKey; k != "" && len(k) <= message.MaxIdempotencyKeyLen {
				key = k
			}
		}
	}
	if key == "" {
		key = d.MessageID
	}
	if key == "" {
		// Nothing identifies this delivery; it cannot be deduplicated or
		// reported against anything, so record it and drop it.
		logging.FromContext(ctx).ErrorContext(ctx, "delivery without message ID or idempotency key dropped")
		return nil
	}
	refusal := s.authorize(&d, req, account)
	// Idempotency is per (app, account, key): the same key from another
	// app or mailbox is another request, whose record never answers here.
	j := &job{s: s, d: d, key: key, id: ledger.Scope{App: d.App, Account: account, Key: key}.ID(), account: account, req: req}
	// One With for the delivery: each costs a pre-formatting of its
	// attributes, per message.
	log := logging.FromContext(ctx).With("pubsub_message_id", d.MessageID, "idempotency_key", key, "account", account, "app", d.App)
	ctx = logging.WithLogger(ctx, log)
	if refusal != nil {
		return j.refuse(ctx, refusal)
	}
	defer j.settleQuota(ctx)
	if decodeErr == nil {
		if err := j.admit(ctx); err != nil {
			return err
		}
	}

	rec, outcome, err := s.opts.Ledger.Claim(ctx, j.id, ledger.ClaimRequest{
		PubSubMessageID: d.MessageID, Fingerprint: ledger.Fingerprint(d.Data), Lease: s.opts.Lease, Now: s.opts.Now(),
	})
	if err != nil {
		log.WarnContext(ctx, "ledger unavailable; redelivering", "error", err)
		return fmt.Errorf("%w: ledger: %v", ErrRetry, err)
	}
	j.rec = rec
	switch outcome {
	case ledger.ClaimDone:
		log.InfoContext(ctx, "duplicate delivery", "state", rec.State)
		ev := &results.Event{Status: results.StatusDuplicate,
			GmailMessageID: rec.GmailMessageID, GmailThreadID: rec.GmailThreadID, MaybeDuplicate: rec.MaybeDuplicate}
		if rec.State == ledger.StateFailed {
			// Say what became of the original, so a subscriber that only
			// sees this event knows the request failed.
			ev.Error = &results.Error{Code: rec.ErrorCode, Message: "the original request failed: " + rec.ErrorMessage}
		}
		return j.publish(ctx, ev)
	case ledger.ClaimBusy:
		log.InfoContext(ctx, "another delivery holds the lease; redelivering later", "lease_until", rec.LeaseUntil)
		return fmt.Errorf("%w: another delivery is sending this message", ErrRetry)
	case ledger.ClaimTakeover:
		if rec.Lapsed > 0 {
			log.WarnContext(ctx, "taking over a lapsed lease; an earlier delivery may have sent the message, so this send is flagged maybe_duplicate",
				"attempt", rec.Attempts, "lapsed", rec.Lapsed)
		}
		if rec.Lapsed >= 2 {
			// Two deliveries ended without a word after they may have
			// sent it: a third send would risk a third copy.
			return j.fail(ctx, &gmail.Failure{Code: gmail.CodeGmailError, Ambiguous: true,
				Message: fmt.Sprintf("%d earlier deliveries ended (crashed or timed out) without recording what Gmail did, so the message may already have been delivered; "+
					"the relay stops here rather than risk another copy: check the mailbox's Sent folder before publishing it again under a new idempotency key", rec.Lapsed)})
		}
	}

	if decodeErr != nil {
		return j.fail(ctx, &gmail.Failure{Code: gmail.CodeInvalidRequest, Message: decodeErr.Error()})
	}
	return j.run(ctx)
}

// MessageIDKey is the key a composed message's Message-ID derives from
// (message.MessageID) for the request whose ledger ID is id: hex of its
// SHA-256, printable ASCII as a key must be.
func MessageIDKey(id string) string { return ledger.Fingerprint([]byte(id)) }

// job is one claimed delivery.
type job struct {
	s   *Sender
	d   Delivery
	key string
	// id is the ledger ID of the request's scope (app, account, key).
	id      string
	account string
	req     *message.Request
	rec     *ledger.Record

	// acct and acctErr are the registry's answer, read once by admit.
	acct    *registry.Account
	acctErr error
	read    bool
	// held is the hold admit let through on the last delivery attempt, so
	// that run reports it in a failed result instead of losing it.
	held *hold
	// paced is how long admit waited for a rate-limited account's slot.
	paced time.Duration
	// tried is set once this delivery called Gmail: only such a delivery
	// counts towards MaxSendAttempts.
	tried bool
	// delegated sends through domain-wide delegation; unregistered says
	// the registry did not know the account yet (tokens.go).
	delegated, unregistered bool
	// overQuota is the daily limits' refusal that run answers once the
	// request is claimed.
	overQuota *gmail.Failure
	// reserved is set while the delivery holds a place under the
	// mailbox's daily limits (quota.go), for recipients recipients;
	// mayHaveSent says whether it counts when the delivery ends.
	reserved    bool
	recipients  int
	mayHaveSent bool
}

// admit decides, before the ledger claim and before any token or Gmail
// call, whether the delivery may try now. A held account (Gmail's daily
// cap, persisted in the registry so every instance sees it), the project's
// quota, or a rate limit with no slot within PaceBudget nacks here: the
// request is redelivered with Pub/Sub's backoff and no attempt is counted.
// On the last delivery attempt a hold is let through, so that run records
// it and publishes the failed result rather than Pub/Sub dead-lettering the
// request without a word. A message the mailbox's daily limits do not admit
// is held the same way, or marked for run to answer at once when the hold
// outlasts what redeliveries can wait.
func (j *job) admit(ctx context.Context) error {
	s := j.s
	// run needs the account anyway: reading it here costs no extra read.
	readAt := s.quota.readStarted()
	j.acct, j.acctErr = s.opts.Accounts.Get(ctx, j.account)
	j.read = true
	// An account that cannot send is failed by run at once. One not
	// registered (yet: a delegated user's first send) still waits for the
	// project's quota.
	switch {
	case j.acctErr == nil && j.acct.Status != registry.StatusConnected:
		return nil
	case j.acctErr == nil:
		s.adopt(j.account, j.acct, s.opts.Now())
	}
	sl, h, ok := s.reserve(j.account, s.opts.Now(), s.opts.PaceBudget)
	if !ok {
		return j.heldOff(ctx, h)
	}
	// Checked once Gmail's own holds let the delivery through, so that a
	// delivery those hold keeps no place under the limit meanwhile.
	if j.acctErr == nil {
		j.recipients = len(j.req.Recipients())
		if r := s.quota.admit(j.account, j.acct, readAt, j.recipients, s.opts.Now()); r != nil {
			return j.quotaHeld(ctx, r)
		}
		j.reserved = true
	}
	waited, h, ok, err := j.awaitSlot(ctx, sl, s.opts.PaceBudget)
	j.paced = waited
	switch {
	case err != nil:
		return fmt.Errorf("%w: waiting for the account's next send slot: %v", ErrRetry, err)
	case !ok:
		return j.heldOff(ctx, h)
	}
	return nil
}

// heldOff answers a delivery that admit does not let through: a nack,
// before any claim, so that no attempt is counted; on the last delivery
// attempt it lets the delivery through for run to report the hold.
func (j *job) heldOff(ctx context.Context, h hold) error {
	if j.lastAttempt() {
		j.held = &h
		return nil
	}
	logging.FromContext(ctx).InfoContext(ctx, "account held; redelivering later without a Gmail call or an attempt",
		"error_code", h.code, "retry_at", h.until)
	return fmt.Errorf("%w: %s (held until %s)", ErrRetry, h.msg, h.until.UTC().Format(time.RFC3339))
}

// awaitSlot waits for the account's send slot sl. When the account's pace
// changes meanwhile (Gmail refused another of its sends, or answered the
// probes), the slot is no longer right and it takes a new one, within what
// is left of budget. It returns how long it waited, and !ok with the hold
// when no slot comes within the budget.
func (j *job) awaitSlot(ctx context.Context, sl slot, budget time.Duration) (time.Duration, hold, bool, error) {
	s := j.s
	start := time.Now()
	for {
		wait := sl.at.Sub(s.opts.Now())
		if wait <= 0 {
			return time.Since(start), hold{}, true, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Since(start), hold{}, false, ctx.Err()
		case <-t.C:
			if sl.probe {
				s.pace.probeTimedOut(j.account)
			}
			return time.Since(start), hold{}, true, nil
		case <-sl.changed:
			t.Stop()
		}
		var h hold
		var ok bool
		waited := time.Since(start)
		if sl, h, ok = s.reserve(j.account, s.opts.Now(), budget-waited); !ok {
			return waited, h, false, nil
		}
	}
}

// quotaHeld holds a message the mailbox's daily limits do not admit: it
// is redelivered, unclaimed and without a Gmail call, until older sends
// leave the window. A hold longer than the remaining deliveries can wait
// (Pub/Sub would dead-letter the request first), and a message that can
// never fit, is answered with a failed result instead (answerOverQuota),
// its claim released, so publishing it again once retry_at has passed
// sends it.
func (j *job) quotaHeld(ctx context.Context, r *quotaRefusal) error {
	f := r.failure(j.account)
	log := logging.FromContext(ctx)
	if f.Retryable && j.outlasts(f.RetryAt) {
		log.InfoContext(ctx, "held for the mailbox's daily limit; redelivering later without a claim or a Gmail call",
			"error_code", f.Code, "retry_at", f.RetryAt, "used_messages", r.messages, "limit_messages", r.limits.Messages)
		return fmt.Errorf("%w: %s", ErrRetry, f.Message)
	}
	log.InfoContext(ctx, "the mailbox's daily limit holds this longer than redeliveries can wait; answering it once claimed",
		"error_code", f.Code, "retry_at", f.RetryAt, "used_messages", r.messages, "limit_messages", r.limits.Messages)
	// Claimed first, so that a redelivery of a message already sent is
	// answered as the duplicate it is, not as refused.
	j.overQuota = f
	return nil
}

// answerOverQuota reports a claimed request the daily limits refuse for
// longer than its redeliveries can wait, and releases the claim, so that
// the same request published again after retry_at is sent.
func (j *job) answerOverQuota(ctx context.Context, f *gmail.Failure) error {
	logging.FromContext(ctx).WarnContext(ctx, "not sent: over the mailbox's daily limit", "error_code", f.Code, "retry_at", f.RetryAt)
	if err := j.s.opts.Ledger.Release(ctx, j.id, string(f.Code), f.Message, j.s.opts.Now()); err != nil {
		logging.FromContext(ctx).WarnContext(ctx, "releasing the claim failed; the lease will expire instead", "error", err)
	}
	ev := &results.Event{Status: results.StatusFailed, Error: &results.Error{Code: string(f.Code), Message: f.Message, Retryable: f.Retryable}}
	if !f.RetryAt.IsZero() {
		ev.Error.RetryAt = f.RetryAt.UTC()
	}
	return j.publish(ctx, ev)
}

// outlasts reports whether this delivery's redeliveries can wait until at:
// each waits at most MaxBackoff. Without MaxDeliveryAttempts Pub/Sub never
// dead-letters, so they can.
func (j *job) outlasts(at time.Time) bool {
	max := j.s.opts.MaxDeliveryAttempts
	if max <= 0 {
		return true
	}
	left := max - j.d.DeliveryAttempt
	return at.Sub(j.s.opts.Now()) <= time.Duration(left)*j.s.opts.MaxBackoff
}

// settleQuota ends the delivery's place under the daily limits, counting
// the message if it was, or may have been, sent.
func (j *job) settleQuota(ctx context.Context) {
	if !j.reserved {
		return
	}
	j.reserved = false
	j.s.quota.settle(ctx, j.account, j.recipients, j.mayHaveSent, j.s.opts.Now())
}

func (j *job) run(ctx context.Context) error {
	s := j.s
	now := s.opts.Now()
	acct, err := j.acct, j.acctErr
	if !j.read {
		acct, err = s.opts.Accounts.Get(ctx, j.account)
	}
	delegated, refusal, cause := s.route(j.account, acct, err)
	switch {
	case refusal != nil && refusal.Retryable:
		return j.retry(ctx, refusal, cause)
	case refusal != nil:
		return j.fail(ctx, refusal)
	}
	j.delegated, j.unregistered = delegated, acct == nil
	if acct == nil {
		// First use of a delegated user: registered after its first mint.
		acct = &registry.Account{Email: j.account, Status: registry.StatusConnected, Kind: registry.KindDelegated}
	}

	raw, err := j.compose(ctx, now, acct.Aliases)
	if err != nil {
		return j.composeFailed(ctx, err)
	}

	if f := j.overQuota; f != nil {
		return j.answerOverQuota(ctx, f)
	}
	if h := j.held; h != nil {
		// The last delivery attempt of a held request: every hold is
		// transient, and retry reports it with the time it ends.
		return j.retry(ctx, &gmail.Failure{Code: h.code, Message: h.msg, RetryAt: h.until, Retryable: true}, nil)
	}

	var sent *gmail.Sent
	var f *gmail.Failure
	budget := s.opts.PaceBudget - j.paced
	for {
		started := s.opts.Now()
		sent, f = j.send(ctx, raw)
		if f == nil || f.Code != gmail.CodeRateLimited {
			if j.tried {
				s.pace.answered(j.account, started, s.opts.Now(), f == nil)
			}
			break
		}
		// The account's pace learns from the refusal, and every waiting
		// delivery of the account takes a slot after Gmail's time.
		s.pace.limited(j.account, started, s.opts.Now(), f.RetryAt, f.Message)
		if f.RetryAt.IsZero() || budget <= 0 {
			break
		}
		// Gmail asked for a short pause: wait for the account's next slot
		// within what is left of the budget, then try again.
		sl, h, ok := s.reserve(j.account, s.opts.Now(), budget)
		if !ok {
			return j.retry(ctx, &gmail.Failure{Code: h.code, Message: h.msg, RetryAt: h.until, Retryable: true}, nil)
		}
		waited, h, ok, err := j.awaitSlot(ctx, sl, budget)
		switch {
		case err != nil:
			return j.retry(ctx, &gmail.Failure{Code: gmail.CodeRateLimited, Retryable: true, Message: f.Message, RetryAt: f.RetryAt}, err)
		case !ok:
			return j.retry(ctx, &gmail.Failure{Code: h.code, Message: h.msg, RetryAt: h.until, Retryable: true}, nil)
		}
		budget -= waited
	}
	// From here on the sender records what Gmail did, or may have done. The
	// delivery's context can end at any moment (the push request timed out,
	// the client went away); if that stopped the ledger write, the record
	// would stay "sending" without maybe_duplicate, and a redelivery after
	// the lease would send the message again as if nothing had happened.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if f == nil {
		j.mayHaveSent = true
		if err := s.opts.Ledger.Finish(ctx, j.id, ledger.Finish{State: ledger.StateSent,
			GmailMessageID: sent.ID, GmailThreadID: sent.ThreadID, Now: s.opts.Now()}); err != nil {
			// The message is out. Redelivery finds the lease and waits, then
			// a takeover would send again: keep retrying the write instead.
			logging.FromContext(ctx).ErrorContext(ctx, "recording a sent message failed", "error", err)
			if err := j.finishRetry(ctx, ledger.Finish{State: ledger.StateSent, GmailMessageID: sent.ID, GmailThreadID: sent.ThreadID}); err != nil {
				return fmt.Errorf("%w: ledger: %v", ErrRetry, err)
			}
		}
		logging.FromContext(ctx).InfoContext(ctx, "sent", "gmail_message_id", sent.ID, "attempt", j.rec.Attempts)
		// Recorded sent: the attached objects may go (after the result, which
		// should not wait for them).
		defer j.deleteSent(ctx, raw)
		return j.publish(ctx, &results.Event{Status: results.StatusSent, GmailMessageID: sent.ID,
			GmailThreadID: sent.ThreadID, MaybeDuplicate: j.rec.MaybeDuplicate})
	}

	switch {
	case f.Ambiguous && j.rec.MaybeDuplicate:
		f.Retryable = false
		f.Message += "; an earlier attempt also went unanswered, so the relay stops here rather than risk a third copy"
		return j.fail(ctx, f)
	case f.Ambiguous && j.lastAttempt():
		// Holding it would send it to the dead-letter topic, from where a
		// republish could deliver a second copy: end it here, and say so.
		f.Retryable = false
		f.Message += fmt.Sprintf("; this was delivery attempt %d of %d, so the relay stops here: "+
			"the message may or may not have been delivered, so check the mailbox's Sent folder before publishing it again", j.d.DeliveryAttempt, s.opts.MaxDeliveryAttempts)
		return j.fail(ctx, f)
	case f.Ambiguous:
		if err := s.opts.Ledger.MarkAmbiguous(ctx, j.id, s.opts.Now()); err != nil {
			logging.FromContext(ctx).ErrorContext(ctx, "marking an ambiguous send failed", "error", err)
		}
		logging.FromContext(ctx).WarnContext(ctx, "no answer after the message was sent; holding it until the lease ends", "lease_until", j.rec.LeaseUntil)
		return fmt.Errorf("%w: %s", ErrRetry, f.Message)
	case f.Code == gmail.CodeReauthRequired:
		j.markReauth(ctx, f.Message)
		return j.fail(ctx, f)
	case f.Code == gmail.CodeDailyLimit && !f.RetryAt.IsZero():
		// A rate limit is the account's pace's (above); the daily cap
		// holds the account until Gmail's time, on every instance.
		s.hold(j.account, hold{until: f.RetryAt, code: f.Code, msg: f.Message})
		j.persistHold(ctx, f)
	case f.Code == gmail.CodeProjectQuota:
		// Every mailbox shares the project's quota: an operator must know,
		// and no account should call Gmail before the reset.
		logging.FromContext(ctx).ErrorContext(ctx, "the Cloud project's Gmail API quota is exhausted; every send is held until it resets",
			"alert", "project_quota", "retry_at", f.RetryAt)
		s.hold(projectHold, hold{until: f.RetryAt, code: f.Code, msg: f.Message})
	}
	if f.Retryable {
		return j.retry(ctx, f, nil)
	}
	return j.fail(ctx, f)
}

// send calls Gmail, refreshing once on a 401 to a cached access token and
// re-reading the refresh token once on invalid_grant in case a reconnect
// replaced it.
func (j *job) send(ctx context.Context, raw *payload) (*gmail.Sent, *gmail.Failure) {
	s := j.s
	mb, err := s.boxes.getFor(ctx, j.account, j.delegated, j.unregistered)
	if err != nil {
		if errors.Is(err, tokenstore.ErrNotFound) {
			return nil, &gmail.Failure{Code: gmail.CodeReauthRequired, Message: "no stored token for " + j.account + "; its owner must reconnect"}
		}
		if errors.Is(err, tokenstore.ErrUnavailable) {
			return nil, &gmail.Failure{Code: gmail.CodeInternal, Retryable: true, Message: "Secret Manager unavailable"}
		}
		return nil, &gmail.Failure{Code: gmail.CodeInternal, Message: "reading the token failed: " + err.Error()}
	}
	// Each remedy is tried at most once per delivery. They are independent:
	// a 401 on a cached access token is followed by a refresh, and that
	// refresh is where a revoked grant shows up as invalid_grant, so the
	// re-read must still be possible after a renewal.
	renewed, reread := false, false
	for {
		refreshes := mb.src.refreshes.Load()
		sctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
		j.tried = true
		sent, err := raw.send(sctx, mb.box, j.threadID())
		cancel()
		if err == nil {
			return sent, nil
		}
		if ce := (*composeError)(nil); errors.As(err, &ce) {
			// An attachment failed while Gmail read the message, which
			// therefore never reached it whole.
			return nil, ce.f
		}
		f := s.classify(ctx, j.account, err)
		// A 401 on an access token minted during this call (or after a
		// renewal) follows a refresh that succeeded: the grant is alive and
		// another refresh would mint the same kind of token, so it is
		// transient (Gmail answers such 401s intermittently). Only a cached
		// token that may have expired is worth renewing.
		fresh := renewed || mb.src.refreshes.Load() != refreshes
		switch {
		case f.Unauthorized && fresh:
			f.Message += "; Google had just issued that access token, so the grant is alive and the relay retries"
			return nil, f
		case f.Unauthorized && !reread:
			renewed = true
			if mb, err = s.boxes.renew(ctx, mb); err != nil {
				return nil, &gmail.Failure{Code: gmail.CodeInternal, Message: err.Error()}
			}
		case oauth.IsInvalidGrant(err) && !reread:
			reread = true
			before := mb.src.refreshToken()
			s.boxes.forget(mb)
			if mb, err = s.boxes.get(ctx, j.account); err != nil || mb.src.refreshToken() == before {
				return nil, f
			}
		default:
			return nil, f
		}
	}
}

func (j *job) threadID() string {
	if j.req == nil {
		return ""
	}
	return j.req.ThreadID
}

func (j *job) markReauth(ctx context.Context, reason string) {
	changed, prev, err := j.s.opts.Accounts.SetStatus(ctx, j.account, registry.StatusReauthRequired, reason, j.s.opts.Now())
	if err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "marking the account reauth_required failed", "error", err)
		return
	}
	if changed {
		logging.FromContext(ctx).WarnContext(ctx, "account needs reconnecting",
			"event", "account_status_changed", "status", registry.StatusReauthRequired, "previous_status", prev, "reason", reason)
	}
}

// fail records a final failure and acknowledges.
func (j *job) fail(ctx context.Context, f *gmail.Failure) error {
	// A body that may have reached Gmail counts against the daily limit,
	// as Google counts it if it did.
	j.mayHaveSent = j.mayHaveSent || (f.Ambiguous && j.tried)
	// An ambiguous failure may have reached Gmail: MaybeDuplicate keeps
	// its key from being reused for other content.
	fin := ledger.Finish{State: ledger.StateFailed, ErrorCode: string(f.Code), ErrorMessage: f.Message, MaybeDuplicate: f.Ambiguous, Now: j.s.opts.Now()}
	if err := j.s.opts.Ledger.Finish(ctx, j.id, fin); err != nil {
		if err := j.finishRetry(ctx, fin); err != nil {
			return fmt.Errorf("%w: ledger: %v", ErrRetry, err)
		}
	}
	logging.FromContext(ctx).WarnContext(ctx, "send failed", "error_code", f.Code, "detail", f.Message)
	ev := &results.Event{Status: results.StatusFailed, MaybeDuplicate: j.rec.MaybeDuplicate,
		Error: &results.Error{Code: string(f.Code), Message: f.Message, Retryable: f.Retryable, RetryAt: f.RetryAt.UTC()}}
	if f.Code == gmail.CodeReauthRequired || f.Code == gmail.CodeUnknownAccount {
		ev.Error.ReconnectURL = j.s.reconnectURL(j.account)
	}
	return j.publish(ctx, ev)
}

// persistHold records a daily-cap hold in the registry, so that every
// instance, and this one after a restart, refuses the account's deliveries
// until Gmail's time without calling it. The in-process hold already
// applies, so a failed write only costs other instances one Gmail call.
func (j *job) persistHold(ctx context.Context, f *gmail.Failure) {
	if _, err := j.s.opts.Accounts.SetHold(ctx, j.account, f.RetryAt, f.Message, j.s.opts.Now()); err != nil {
		logging.FromContext(ctx).WarnContext(ctx, "recording the account's hold in the registry failed; other instances learn it from Gmail", "error", err)
	}
}

// retry releases the claim and asks Pub/Sub to redeliver, unless this
// delivery was the request's MaxSendAttempts-th try of Gmail: then it ends
// in a failed result and an ack, so an ordinary transient failure does not
// wait for Pub/Sub's (much higher) max_delivery_attempts.
func (j *job) retry(ctx context.Context, f *gmail.Failure, cause error) error {
	if max := j.s.opts.MaxSendAttempts; j.tried && j.rec.Attempts >= max {
		if cause != nil {
			logging.FromContext(ctx).WarnContext(ctx, "transient failure on the last send attempt", "error", cause)
		}
		f.Message += fmt.Sprintf("; this was send attempt %d of %d (SEND_MAX_ATTEMPTS), so the relay stops here: "+
			"publish the request again, under a new idempotency key, once the cause is fixed", j.rec.Attempts, max)
		return j.fail(ctx, f)
	}
	if err := j.s.opts.Ledger.Release(ctx, j.id, string(f.Code), f.Message, j.s.opts.Now()); err != nil {
		logging.FromContext(ctx).WarnContext(ctx, "releasing the claim failed; the lease will expire instead", "error", err)
	}
	attrs := []any{"error_code", f.Code, "detail", f.Message}
	if !f.RetryAt.IsZero() {
		attrs = append(attrs, "retry_at", f.RetryAt)
	}
	if cause != nil {
		attrs = append(attrs, "error", cause)
	}
	logging.FromContext(ctx).WarnContext(ctx, "transient failure; redelivering", attrs...)
	if j.lastAttempt() {
		// Pub/Sub moves the request to the dead-letter topic after this
		// nack, and no later delivery will report it: report it now. The
		// request itself stays in the dead-letter topic, and the ledger
		// stays released, so republishing it sends it.
		ev := &results.Event{Status: results.StatusFailed, Error: &results.Error{Code: string(f.Code), Retryable: true, RetryAt: f.RetryAt.UTC(),
			Message: fmt.Sprintf("%s; delivery attempt %d of %d failed, so Pub/Sub moves the request to the dead-letter topic "+
				"(the operator can republish it from there once the cause is fixed)", f.Message, j.d.DeliveryAttempt, j.s.opts.MaxDeliveryAttempts)}}
		// Detached: the delivery may be ending because its push request
		// did, and this is the request's last word.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		if err := j.publish(pctx, ev); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: %s", ErrRetry, f.Message)
}

// lastAttempt reports whether Pub/Sub will dead-letter this message if this
// delivery is nacked.
func (j *job) lastAttempt() bool {
	max := j.s.opts.MaxDeliveryAttempts
	return max > 0 && j.d.DeliveryAttempt >= max
}

func (j *job) finishRetry(ctx context.Context, fin ledger.Finish) error {
	var err error
	for i := 0; i < 3; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100<<i) * time.Millisecond):
		}
		fin.Now = j.s.opts.Now()
		if err = j.s.opts.Ledger.Finish(ctx, j.id, fin); err == nil {
			return nil
		}
	}
	return err
}

// publish sends the result event; if Pub/Sub will not take it, the
// delivery is nacked, and its redelivery publishes a duplicate result with
// the same Gmail IDs.
func (j *job) publish(ctx context.Context, ev *results.Event) error {
	ev.IdempotencyKey = j.key
	ev.PubSubMessageID = j.d.MessageID
	ev.Account = j.account
	ev.App = j.d.App
	ev.Attempt = j.rec.Attempts
	ev.FinishedAt = j.s.opts.Now().UTC()
	if err := j.s.opts.Results.Publish(ctx, ev); err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "publishing the result failed; redelivering", "error", err)
		return fmt.Errorf("%w: results: %v", ErrRetry, err)
	}
	return nil
}

func (s *Sender) reconnectURL(account string) string {
	if s.opts.ConnectURL == "" || account == "" {
		return ""
	}
	return s.opts.ConnectURL + "?" + url.Values{"login_hint": {account}}.Encode()
}

// projectHold is the holds key of the project's quota, which holds every
// account; no address is empty.
const projectHold = ""

// reserve decides whether a delivery for account may send, and when. A
// daily-limit or project-quota hold refuses. Otherwise the account's pace
// (pace.go) hands out its next send slot if it comes within budget, so
// that a burst drains at the rate Gmail allows instead of all deliveries
// trying at once; one beyond the budget is refused, and taken by none.
func (s *Sender) reserve(account string, now time.Time, budget time.Duration) (slot, hold, bool) {
	s.mu.Lock()
	for _, key := range []string{projectHold, account} {
		h, ok := s.holds[key]
		if !ok {
			continue
		}
		if now.Before(h.until) {
			s.mu.Unlock()
			return slot{}, h, false
		}
		delete(s.holds, key)
	}
	s.mu.Unlock()
	sl, r := s.pace.reserve(account, now, budget)
	if r == nil {
		return sl, hold{}, true
	}
	msg := "the relay paces the mailbox's sends to the rate Gmail allows it"
	if r.msg != "" {
		msg = r.msg + "; the relay paces the mailbox's sends to it"
	}
	return slot{}, hold{until: r.at, code: gmail.CodeRateLimited,
		msg: msg + fmt.Sprintf(", and its next send slot is further off than a delivery waits (%s)", max(budget, 0).Round(time.Millisecond))}, false
}

// adopt takes a's persisted hold (another instance's, or this one's before
// a restart) into the in-process holds, unless a later one is there.
func (s *Sender) adopt(account string, a *registry.Account, now time.Time) {
	if a == nil || !a.HoldUntil.After(now) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.holds[account]; ok && !cur.until.Before(a.HoldUntil) {
		return
	}
	msg := a.HoldReason
	if msg == "" {
		msg = "Gmail refuses this mailbox's sends for its daily sending limit"
	}
	s.holds[account] = hold{until: a.HoldUntil, code: gmail.CodeDailyLimit, msg: msg}
}

// hold pauses account (or, as projectHold, every account) until h.until.
func (s *Sender) hold(account string, h hold) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds[account] = h
}
