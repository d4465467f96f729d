package registry_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/registry"
)

func TestDailyLimits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		hd        string
		delegated bool
		override  int
		want      registry.Limits
	}{
		{"consumer", "", false, 0, registry.Limits{Messages: 500}},
		{"workspace by hd", "example.com", false, 0, registry.Limits{Messages: 2000, Recipients: 10000}},
		{"delegated is workspace", "", true, 0, registry.Limits{Messages: 2000, Recipients: 10000}},
		{"override consumer", "", false, 2, registry.Limits{Messages: 2}},
		{"override workspace keeps recipients", "example.com", false, 1500, registry.Limits{Messages: 1500, Recipients: 10000}},
		{"negative override ignored", "", false, -1, registry.Limits{Messages: 500}},
	} {
		if got := registry.DailyLimits(c.hd, c.delegated, c.override); got != c.want {
			t.Errorf("%s: DailyLimits = %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestAdmitAndCount(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 3, 10, 20, 0, 0, time.UTC)
	two := registry.Limits{Messages: 2}

	var b []registry.Bucket
	for i := range 2 {
		now := start.Add(time.Duration(i) * time.Minute)
		if ok, _ := registry.Admit(b, now, 1, two); !ok {
			t.Fatalf("message %d refused under a limit of 2", i+1)
		}
		b = registry.Count(b, now, 1)
	}
	if m, r := registry.Usage(b, start.Add(2*time.Minute)); m != 2 || r != 2 {
		t.Fatalf("Usage = %d messages %d recipients, want 2 and 2", m, r)
	}
	ok, retry := registry.Admit(b, start.Add(2*time.Minute), 1, two)
	// Both sends are in the 10:00 bucket, which counts until 11:00 the next day.
	if want := time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC); ok || !retry.Equal(want) {
		t.Fatalf("third message: ok=%v retry_at=%v, want held until %v", ok, retry, want)
	}
	if ok, _ := registry.Admit(b, time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC), 1, two); !ok {
		t.Fatal("refused after the window passed")
	}
	// Count drops buckets that no longer count.
	later := registry.Count(b, time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), 3)
	if len(later) != 1 || later[0].Messages != 1 || later[0].Recipients != 3 {
		t.Fatalf("Count after the window = %+v, want one fresh bucket", later)
	}
	if len(b) != 1 || b[0].Messages != 2 {
		t.Fatalf("Count changed its input: %+v", b)
	}
}

func TestAdmitRecipients(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ws := registry.Limits{Messages: 2000, Recipients: 10000}
	b := []registry.Bucket{
		{Hour: time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC), Messages: 50, Recipients: 5000},
		{Hour: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), Messages: 50, Recipients: 4950},
		{Hour: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), Messages: 5000, Recipients: 99999}, // gone
	}
	for _, c := range []struct {
		name  string
		n     int
		ok    bool
		retry time.Time
	}{
		{"fits exactly", 50, true, time.Time{}},
		{"over by one waits for the oldest live bucket", 51, false, time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)},
		{"over the whole limit never fits", 10001, false, time.Time{}},
	} {
		ok, retry := registry.Admit(b, now, c.n, ws)
		if ok != c.ok || !retry.Equal(c.retry) {
			t.Errorf("%s: Admit = %v %v, want %v %v", c.name, ok, retry, c.ok, c.retry)
		}
	}
}

// runQuotaContract: both stores keep the hosted domain and the operator's
// daily limit, and a reconnect (an Upsert without a limit) keeps the limit.
func runQuotaContract(t *testing.T, open func(t *testing.T) store) {
	t.Run("SetDailyLimit", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := open(t)
		upsert(t, s, account(alice, registry.StatusConnected))
		t1 := t0.Add(time.Minute)
		got, err := s.SetDailyLimit(ctx, " Alice@Example.com", 2, t1)
		if err != nil || got.DailyLimit != 2 || !got.UpdatedAt.Equal(us(t1)) {
			t.Fatalf("SetDailyLimit = %+v, %v; want limit 2 at %v", got, err, us(t1))
		}
		sameAccount(t, "Get after SetDailyLimit", get(t, s, alice), got)
		writes := s.Stats().Writes
		if _, err := s.SetDailyLimit(ctx, alice, 2, t1.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if n := s.Stats().Writes - writes; n != 0 {
			t.Errorf("setting the same limit wrote %d times", n)
		}
		for _, bad := range []int{-1, registry.MaxDailyLimit + 1} {
			if _, err := s.SetDailyLimit(ctx, alice, bad, t1); err == nil {
				t.Errorf("SetDailyLimit(%d) accepted", bad)
			}
		}
		if _, err := s.SetDailyLimit(ctx, "nobody@example.com", 2, t1); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("SetDailyLimit of an unknown account = %v, want ErrNotFound", err)
		}
		if got, err := s.SetDailyLimit(ctx, alice, 0, t1.Add(2*time.Minute)); err != nil || got.DailyLimit != 0 || get(t, s, alice).Limits().Messages != registry.ConsumerDailyMessages {
			t.Fatalf("SetDailyLimit(0) = %+v, %v; want the default back", got, err)
		}
	})
	t.Run("DailyLimitSurvivesReconnect", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a := account(alice, registry.StatusConnected)
		a.HostedDomain = " Example.COM "
		a.DailyLimit = 2
		upsert(t, s, a)
		got := get(t, s, alice)
		if got.HostedDomain != "example.com" || got.DailyLimit != 2 {
			t.Fatalf("stored hd %q limit %d, want example.com and 2", got.HostedDomain, got.DailyLimit)
		}
		if l := got.Limits(); l != (registry.Limits{Messages: 2, Recipients: registry.WorkspaceDailyRecipients}) {
			t.Fatalf("Limits = %+v", l)
		}
		again := account(alice, registry.StatusConnected)
		again.UpdatedAt = t0.Add(time.Minute)
		upsert(t, s, again)
		got = get(t, s, alice)
		if got.DailyLimit != 2 || got.HostedDomain != "" {
			t.Fatalf("after a consumer reconnect: hd %q limit %d, want empty and 2", got.HostedDomain, got.DailyLimit)
		}
		if l := got.Limits(); l != (registry.Limits{Messages: 2}) {
			t.Fatalf("Limits after reconnect = %+v", l)
		}
	})
	t.Run("AddUsage", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := open(t)
		upsert(t, s, account(alice, registry.StatusConnected))
		h0 := registry.HourOf(t0)
		h1 := h0.Add(time.Hour)
		writes, reads := s.Stats().Writes, s.Stats().Reads
		// Two hours counted in one write, the first in two parts.
		if err := s.AddUsage(ctx, " Alice@Example.com", []registry.Bucket{
			{Hour: h0, Messages: 2, Recipients: 3}, {Hour: h1, Messages: 1, Recipients: 1}, {Hour: h0.Add(10 * time.Minute), Messages: 1, Recipients: 4},
		}, nil); err != nil {
			t.Fatal(err)
		}
		if w, r := s.Stats().Writes-writes, s.Stats().Reads-reads; w != 1 || r != 0 {
			t.Errorf("AddUsage cost %d writes and %d reads, want 1 and 0", w, r)
		}
		// Concurrent adds sum rather than overwrite.
		done := make(chan error, 4)
		for range 4 {
			go func() { done <- s.AddUsage(ctx, alice, []registry.Bucket{{Hour: h1, Messages: 1, Recipients: 2}}, nil) }()
		}
		for range 4 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		got := get(t, s, alice)
		want := map[string]registry.HourCount{
			registry.HourKey(h0): {Messages: 3, Recipients: 7},
			registry.HourKey(h1): {Messages: 5, Recipients: 9},
		}
		if !maps.Equal(got.Usage, want) {
			t.Fatalf("Usage = %v, want %v", got.Usage, want)
		}
		if m, r := got.Used(h1.Add(30 * time.Minute)); m != 8 || r != 16 {
			t.Errorf("Used = %d messages %d recipients, want 8 and 16", m, r)
		}
		// A reconnect keeps the count; dropping an hour removes it, unless
		// the same write counts in it.
		upsert(t, s, account(alice, registry.StatusConnected))
		if err := s.AddUsage(ctx, alice, []registry.Bucket{{Hour: h1, Messages: 1, Recipients: 1}}, []time.Time{h0, h1}); err != nil {
			t.Fatal(err)
		}
		want = map[string]registry.HourCount{registry.HourKey(h1): {Messages: 6, Recipients: 10}}
		if got := get(t, s, alice).Usage; !maps.Equal(got, want) {
			t.Fatalf("after a reconnect and a drop, Usage = %v, want %v", got, want)
		}
		if err := s.AddUsage(ctx, "nobody@example.com", []registry.Bucket{{Hour: h1, Messages: 1}}, nil); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("AddUsage of an unknown account = %v, want ErrNotFound", err)
		}
	})
}
