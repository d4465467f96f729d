package ledger

import (
	"testing"
	"time"
)

// TestDecide is Claim's logic as a table: what each current record becomes
// for a new delivery, before either store writes it.
func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)
	const lease = time.Minute
	scope := Scope{App: "billing", Account: "Alice@Example.com", Key: "order-42"}
	base := func(mod func(r *Record)) *Record {
		r := &Record{Key: "order-42", App: "billing", Account: "alice@example.com", State: StateSending, Fingerprint: "fp-1",
			PubSubMessageID: "p1", Attempts: 1, LeaseUntil: now.Add(-time.Second), CreatedAt: now.Add(-time.Hour),
			UpdatedAt: now.Add(-time.Hour), ExpireAt: now.Add(TTL - time.Hour)}
		if mod != nil {
			mod(r)
		}
		return r
	}
	type want struct {
		out        ClaimOutcome
		write      bool
		attempts   int
		maybeDup   bool
		lapsed     int
		state      State
		fp         string
		errorCode  string
		sameAsCur  bool
		wantsError bool
	}
	cases := []struct {
		name string
		cur  *Record
		fp   string
		want want
	}{
		{"absent", nil, "fp-2", want{out: ClaimNew, write: true, attempts: 1, state: StateSending, fp: "fp-2"}},
		{"expired", base(func(r *Record) { r.State = StateSent; r.ExpireAt = now }), "fp-1",
			want{out: ClaimNew, write: true, attempts: 1, state: StateSending, fp: "fp-1"}},
		{"live lease", base(func(r *Record) { r.LeaseUntil = now.Add(time.Second) }), "fp-1",
			want{out: ClaimBusy, sameAsCur: true}},
		{"lapsed lease: the holder may have died mid-send", base(nil), "fp-1",
			want{out: ClaimTakeover, write: true, attempts: 2, maybeDup: true, lapsed: 1, state: StateSending, fp: "fp-1"}},
		{"lease ending exactly now has lapsed", base(func(r *Record) { r.LeaseUntil = now }), "fp-1",
			want{out: ClaimTakeover, write: true, attempts: 2, maybeDup: true, lapsed: 1, state: StateSending, fp: "fp-1"}},
		{"lapsed a second time", base(func(r *Record) { r.Attempts, r.Lapsed, r.MaybeDuplicate = 2, 1, true }), "fp-1",
			want{out: ClaimTakeover, write: true, attempts: 3, maybeDup: true, lapsed: 2, state: StateSending, fp: "fp-1"}},
		{"released: nothing was sent", base(func(r *Record) { r.LeaseUntil = time.Time{}; r.ErrorCode = "rate_limited" }), "fp-1",
			want{out: ClaimTakeover, write: true, attempts: 2, state: StateSending, fp: "fp-1", errorCode: "rate_limited"}},
		{"released after an ambiguous send keeps the flag", base(func(r *Record) { r.LeaseUntil = time.Time{}; r.MaybeDuplicate = true }), "fp-1",
			want{out: ClaimTakeover, write: true, attempts: 2, maybeDup: true, state: StateSending, fp: "fp-1"}},
		{"takeover records the content it sends", base(func(r *Record) { r.LeaseUntil = time.Time{} }), "fp-2",
			want{out: ClaimTakeover, write: true, attempts: 2, state: StateSending, fp: "fp-2"}},
		{"sent, same content", base(func(r *Record) { r.State, r.LeaseUntil = StateSent, time.Time{} }), "fp-1",
			want{out: ClaimDone, sameAsCur: true}},
		{"sent, other content: still a duplicate", base(func(r *Record) { r.State, r.LeaseUntil = StateSent, time.Time{} }), "fp-2",
			want{out: ClaimDone, sameAsCur: true}},
		{"failed permanently, same content", base(func(r *Record) { r.State, r.LeaseUntil, r.ErrorCode = StateFailed, time.Time{}, "invalid_request" }), "fp-1",
			want{out: ClaimDone, sameAsCur: true}},
		{"failed permanently, other content: a new send",
			base(func(r *Record) {
				r.State, r.LeaseUntil, r.ErrorCode, r.Attempts, r.Lapsed = StateFailed, time.Time{}, "invalid_request", 3, 1
			}), "fp-2",
			want{out: ClaimNew, write: true, attempts: 1, state: StateSending, fp: "fp-2"}},
		{"failed, maybe sent, other content", base(func(r *Record) {
			r.State, r.LeaseUntil, r.ErrorCode, r.MaybeDuplicate = StateFailed, time.Time{}, "gmail_error", true
		}), "fp-2", want{out: ClaimDone, sameAsCur: true}},
		{"failed without a fingerprint (before fingerprints)", base(func(r *Record) { r.State, r.LeaseUntil, r.Fingerprint = StateFailed, time.Time{}, "" }), "fp-2",
			want{out: ClaimDone, sameAsCur: true}},
		{"failed, delivery without a fingerprint", base(func(r *Record) { r.State, r.LeaseUntil = StateFailed, time.Time{} }), "",
			want{out: ClaimDone, sameAsCur: true}},
		{"unknown state", base(func(r *Record) { r.State = "lost" }), "fp-1", want{wantsError: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var before *Record
			if c.cur != nil {
				before = c.cur.clone()
			}
			got, out, write, err := decide(c.cur, scope, ClaimRequest{PubSubMessageID: "p2", Fingerprint: c.fp, Lease: lease}, now)
			if c.want.wantsError {
				if err == nil {
					t.Fatalf("decide = %v, %+v; want an error", out, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if before != nil && *c.cur != *before {
				t.Fatalf("decide changed the current record: %+v, was %+v", c.cur, before)
			}
			if out != c.want.out || write != c.want.write {
				t.Fatalf("decide = %v (write %v); want %v (write %v)", out, write, c.want.out, c.want.write)
			}
			if c.want.sameAsCur {
				if got != c.cur {
					t.Fatalf("decide answered %+v; want the current record unchanged", got)
				}
				return
			}
			w := c.want
			if got.Attempts != w.attempts || got.MaybeDuplicate != w.maybeDup || got.Lapsed != w.lapsed || got.State != w.state ||
				got.Fingerprint != w.fp || got.ErrorCode != w.errorCode || !got.LeaseUntil.Equal(now.Add(lease)) {
				t.Fatalf("decide record = %+v; want attempts %d, maybe_duplicate %v, lapsed %d, %s, fingerprint %q, error %q, lease until %v",
					got, w.attempts, w.maybeDup, w.lapsed, w.state, w.fp, w.errorCode, now.Add(lease))
			}
			if got.Scope() != (Scope{App: "billing", Account: "alice@example.com", Key: "order-42"}) {
				t.Fatalf("record scope = %+v; want the normalised scope", got.Scope())
			}
			if out == ClaimNew && (got.PubSubMessageID != "p2" || !got.CreatedAt.Equal(now) || got.GmailMessageID != "" || got.ErrorMessage != "") {
				t.Fatalf("new record = %+v; want a fresh one for delivery p2", got)
			}
		})
	}
}

func TestParseID(t *testing.T) {
	t.Parallel()
	for _, s := range []Scope{
		{Account: "alice@example.com", Key: "k"},
		{App: "crm", Account: "", Key: "a,b:c"},
		{App: "x", Account: "dan@example.org", Key: "9:evil,"},
		{App: "ключ", Account: "a@b.c", Key: "🔑"},
	} {
		got, err := ParseID(s.ID())
		if err != nil || got != s.normalized() {
			t.Errorf("ParseID(%q) = %+v, %v; want %+v", s.ID(), got, err, s.normalized())
		}
	}
	for _, id := range []string{
		"", "k", "order-42", "7:default,17:alice@example.com,", "7:default,17:alice@example.com,0:,",
		"7:default,17:Alice@example.com,1:k,", "0:,17:alice@example.com,1:k,", "07:default,17:alice@example.com,1:k,",
		"7:default,17:alice@example.com,1:k,x", "7:default,17:alice@example.com,2:k,", "-1:x,", "7:default;17:alice@example.com;1:k;",
	} {
		if s, err := ParseID(id); err == nil {
			t.Errorf("ParseID(%q) = %+v; want an error", id, s)
		}
	}
	// Parts that hold the encoding's own characters cannot make two scopes
	// share an ID.
	a := Scope{App: "a", Account: "1:b,", Key: "c"}.ID()
	b := Scope{App: "a,1:b", Account: "", Key: "c"}.ID()
	if a == b {
		t.Fatalf("two scopes share the ID %q", a)
	}
}
