package registry

import (
	"maps"
	"slices"
	"time"
)

// Google's per-mailbox sending limits over a rolling 24 hours
// (support.google.com/a/answer/166852; consumer Gmail: about 500 a day).
// A mailbox that breaks them can be locked for up to 24 hours, so the
// relay holds a request that would go over instead of letting Gmail refuse.
const (
	WorkspaceDailyMessages   = 2000
	WorkspaceDailyRecipients = 10000
	ConsumerDailyMessages    = 500
)

// QuotaWindow is the rolling window of the limits. Usage is counted in
// hour buckets, and a bucket counts until the window has passed its end,
// so the count errs towards holding (it may cover up to 25 hours).
const QuotaWindow = 24 * time.Hour

// Limits are a mailbox's daily limits; zero means no limit of that kind.
type Limits struct {
	Messages   int `json:"messages"`
	Recipients int `json:"recipients,omitempty"`
}

// DailyLimits are the account's limits: Workspace's when Google named a
// hosted domain at connect or the relay acts by delegation (only Workspace
// users can be delegated), else consumer Gmail's; an operator's positive
// DailyLimit replaces the message limit.
func DailyLimits(hostedDomain string, delegated bool, override int) Limits {
	l := Limits{Messages: ConsumerDailyMessages}
	if hostedDomain != "" || delegated {
		l = Limits{Messages: WorkspaceDailyMessages, Recipients: WorkspaceDailyRecipients}
	}
	if override > 0 {
		l.Messages = override
	}
	return l
}

// Bucket is one hour of a mailbox's accepted sends.
type Bucket struct {
	// Hour is the start of the hour, UTC.
	Hour       time.Time `firestore:"hour" json:"hour"`
	Messages   int       `firestore:"messages" json:"messages"`
	Recipients int       `firestore:"recipients" json:"recipients"`
}

// HourOf is the bucket a send at t counts in.
func HourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// hourKeyLayout formats an hour as Usage's key: sortable, and free of the
// dots a Firestore field path would split on.
const hourKeyLayout = "2006010215"

// HourKey is Usage's key for the hour holding t.
func HourKey(t time.Time) string { return HourOf(t).Format(hourKeyLayout) }

// Live reports whether b still counts at now.
func (b Bucket) Live(now time.Time) bool { return b.live(now) }

// live reports whether b still counts at now.
func (b Bucket) live(now time.Time) bool { return now.Before(b.Hour.Add(time.Hour + QuotaWindow)) }

// Usage sums the buckets that still count at now.
func Usage(buckets []Bucket, now time.Time) (messages, recipients int) {
	for _, b := range buckets {
		if b.live(now) {
			messages += b.Messages
			recipients += b.Recipients
		}
	}
	return messages, recipients
}

// Admit decides whether one more message to recipients recipients fits
// the limits at now. When it does not, retryAt is the earliest time it
// would, as old buckets leave the window; a request that can never fit
// (more recipients than the whole limit) gets the zero time.
func Admit(buckets []Bucket, now time.Time, recipients int, l Limits) (ok bool, retryAt time.Time) {
	if l.Recipients > 0 && recipients > l.Recipients {
		return false, time.Time{}
	}
	msgs, rcpts := Usage(buckets, now)
	fits := func() bool {
		return (l.Messages <= 0 || msgs+1 <= l.Messages) && (l.Recipients <= 0 || rcpts+recipients <= l.Recipients)
	}
	if fits() {
		return true, time.Time{}
	}
	live := slices.DeleteFunc(slices.Clone(buckets), func(b Bucket) bool { return !b.live(now) })
	slices.SortFunc(live, func(a, b Bucket) int { return a.Hour.Compare(b.Hour) })
	for _, b := range live {
		msgs -= b.Messages
		rcpts -= b.Recipients
		if fits() {
			return false, b.Hour.Add(time.Hour + QuotaWindow)
		}
	}
	return false, time.Time{}
}

// Count adds one accepted message to recipients recipients at now, and
// drops the buckets that no longer count, so a stored list stays at most
// 25 entries long.
func Count(buckets []Bucket, now time.Time, recipients int) []Bucket {
	out := slices.DeleteFunc(slices.Clone(buckets), func(b Bucket) bool { return !b.live(now) })
	h := HourOf(now)
	for i := range out {
		if out[i].Hour.Equal(h) {
			out[i].Messages++
			out[i].Recipients += recipients
			return out
		}
	}
	return append(out, Bucket{Hour: h, Messages: 1, Recipients: recipients})
}

// mergeBuckets sums buckets of the same hour, in hour order.
func mergeBuckets(bs []Bucket) []Bucket {
	var out []Bucket
	for _, b := range bs {
		h := HourOf(b.Hour)
		i := slices.IndexFunc(out, func(o Bucket) bool { return o.Hour.Equal(h) })
		if i < 0 {
			out = append(out, Bucket{Hour: h})
			i = len(out) - 1
		}
		out[i].Messages += b.Messages
		out[i].Recipients += b.Recipients
	}
	slices.SortFunc(out, func(a, b Bucket) int { return a.Hour.Compare(b.Hour) })
	return out
}

func usageHours(bs []Bucket) map[string]bool {
	m := make(map[string]bool, len(bs))
	for _, b := range bs {
		m[HourKey(b.Hour)] = true
	}
	return m
}

// withUsage is AddUsage applied to a stored Usage: dropped hours go unless
// this same write counts in them, and counted hours add up.
func withUsage(cur map[string]HourCount, add []Bucket, drop []time.Time) map[string]HourCount {
	next := maps.Clone(cur)
	if next == nil {
		next = map[string]HourCount{}
	}
	counted := usageHours(add)
	for _, h := range drop {
		if k := HourKey(h); !counted[k] {
			delete(next, k)
		}
	}
	for _, b := range mergeBuckets(add) {
		k := HourKey(b.Hour)
		c := next[k]
		c.Messages += b.Messages
		c.Recipients += b.Recipients
		next[k] = c
	}
	if len(next) == 0 {
		return nil
	}
	return next
}
