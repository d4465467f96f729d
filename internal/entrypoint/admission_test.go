package entrypoint

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/push"
)

// TestMemoryLimit: without GOMEMLIMIT the budget is 450 MiB and becomes
// the runtime's soft limit; with one, it is that limit, untouched.
func TestMemoryLimit(t *testing.T) {
	// Not parallel: it sets the process's memory limit, and restores it.
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)

	debug.SetMemoryLimit(math.MaxInt64) // as when GOMEMLIMIT is unset
	if got := MemoryLimit(); got != 450<<20 {
		t.Errorf("MemoryLimit() without GOMEMLIMIT = %d, want 450 MiB", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 450<<20 {
		t.Errorf("the runtime's limit is %d after MemoryLimit(), want 450 MiB", got)
	}
	debug.SetMemoryLimit(460 << 20) // GOMEMLIMIT=460MiB, as deployed
	if got := MemoryLimit(); got != 460<<20 {
		t.Errorf("MemoryLimit() with GOMEMLIMIT=460MiB = %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 460<<20 {
		t.Errorf("MemoryLimit() changed a set limit to %d", got)
	}
	if got := AdmitWithin(460 << 20).capacity; got != 460<<20-IdleReserve {
		t.Errorf("capacity %d, want the limit less the idle reserve", got)
	}
}

func TestAdmissionCost(t *testing.T) {
	t.Parallel()
	a := NewAdmission(100<<20, time.Second)
	cases := []struct {
		name          string
		contentLength int64
		want          int64
	}{
		{"small", 8 << 10, 8<<10*CostFactor + CostOverhead},
		{"10 MB of data", 13_400_000, 13_400_000*CostFactor + CostOverhead},
		{"chunked: the largest push", -1, min(MaxPushBody*CostFactor+CostOverhead, 100<<20)},
		{"over MaxPushBody: refused unread", MaxPushBody + 1, CostOverhead},
	}
	for _, tc := range cases {
		if got := a.Cost(tc.contentLength); got != tc.want {
			t.Errorf("%s: Cost(%d) = %d, want %d", tc.name, tc.contentLength, got, tc.want)
		}
	}
	if got := NewAdmission(10<<20, time.Second).Cost(MaxPushBody); got != 10<<20 {
		t.Errorf("a push over the whole capacity costs %d, want the capacity (10 MiB), so that it runs alone", got)
	}
}

// gate is a handler whose requests each announce themselves and block
// until released; a body "panic" panics once released.
type gate struct {
	started chan string
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan string, 10), release: make(chan struct{})} }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	name, _, _ := strings.Cut(string(b), ":")
	g.started <- name
	<-g.release
	if name == "panic" {
		panic("handler bug")
	}
	w.WriteHeader(http.StatusOK)
}

// body is a push body named name, of n bytes.
func body(name string, n int) []byte {
	return append([]byte(name+":"), bytes.Repeat([]byte("x"), n-len(name)-1)...)
}

// serve runs h on a push body in the background; the recorder is ready
// once done is closed.
func serve(h http.Handler, b []byte) (*httptest.ResponseRecorder, chan struct{}) {
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }() // net/http recovers a handler's panic; so does this
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(b)))
	}()
	return rec, done
}

// TestAdmission: with room for one large push and a small one, a second
// large push waits and then is refused with 429 and Retry-After, without
// its handler running; a small one still fits; the weight comes back when
// a handler returns, panicking or not; a push over the whole capacity runs
// alone.
func TestAdmission(t *testing.T) {
	t.Parallel()
	const large, small = 1 << 20, 1 << 10
	g := newGate()
	probe := NewAdmission(1<<30, 0)
	a := NewAdmission(probe.Cost(large)+probe.Cost(small), 20*time.Millisecond)
	h := a.Handler(g)

	rec1, done1 := serve(h, body("large-1", large))
	if got := <-g.started; got != "large-1" {
		t.Fatalf("started %q", got)
	}
	recSmall, doneSmall := serve(h, body("small", small))
	if got := <-g.started; got != "small" {
		t.Fatalf("started %q, want the small push beside the large one", got)
	}
	rec2, done2 := serve(h, body("large-2", large))
	<-done2
	if rec2.Code != http.StatusTooManyRequests || rec2.Header().Get("Retry-After") != "10" {
		t.Errorf("a second large push over budget: %d, Retry-After %q; want 429 with Retry-After 10", rec2.Code, rec2.Header().Get("Retry-After"))
	}
	select {
	case got := <-g.started:
		t.Fatalf("the refused push's handler ran (%s)", got)
	default:
	}

	// The panicking handler returns its weight too.
	g.release <- struct{}{}
	g.release <- struct{}{}
	<-done1
	<-doneSmall
	if rec1.Code != http.StatusOK || recSmall.Code != http.StatusOK {
		t.Fatalf("admitted pushes answered %d and %d", rec1.Code, recSmall.Code)
	}
	recP, doneP := serve(h, body("panic", large))
	select {
	case <-g.started:
		g.release <- struct{}{}
		<-doneP
	case <-doneP:
		t.Fatalf("a large push after the first ones returned: %d, want it admitted (their weight released)", recP.Code)
	}
	if !a.sem.TryAcquire(a.capacity) {
		t.Fatal("weight still held after the handlers returned (one of them by panicking)")
	}
	a.sem.Release(a.capacity)

	// Over the whole capacity: admitted alone; meanwhile a small push is
	// refused.
	recHuge, doneHuge := serve(h, body("huge", 4*large))
	if got := <-g.started; got != "huge" {
		t.Fatalf("started %q", got)
	}
	recS2, doneS2 := serve(h, body("small-2", small))
	<-doneS2
	if recS2.Code != http.StatusTooManyRequests {
		t.Errorf("a small push beside one that takes the whole capacity: %d, want 429", recS2.Code)
	}
	g.release <- struct{}{}
	<-doneHuge
	if recHuge.Code != http.StatusOK {
		t.Errorf("the push over the whole capacity: %d, want it served", recHuge.Code)
	}
}

// TestPushWithAdmission: through Push's shell, an admitted push reaches
// the handler, and one over budget is answered 429 unread.
func TestPushWithAdmission(t *testing.T) {
	t.Parallel()
	probe := NewAdmission(1<<30, 0)
	b := pushBody("m-1", strings.Repeat("y", 1000))
	a := NewAdmission(probe.Cost(int64(len(b))), 10*time.Millisecond)
	entered, release := make(chan string, 2), make(chan struct{})
	h, _, err := Push[testConfig](context.Background(), "test-push", env("GOOGLE_CLOUD_PROJECT", "p"), io.Discard,
		func(context.Context, *testConfig) (PushHandler, io.Closer, error) {
			return func(_ context.Context, m *push.Message) error { entered <- m.ID; <-release; return nil }, &closeFlag{}, nil
		}, WithAdmission(a))
	if err != nil {
		t.Fatal(err)
	}
	rec1, done1 := serve(h, b)
	if got := <-entered; got != "m-1" {
		t.Fatalf("handler saw %q", got)
	}
	rec2, done2 := serve(h, pushBody("m-2", "z"))
	<-done2
	if rec2.Code != http.StatusTooManyRequests || rec2.Header().Get("Retry-After") == "" {
		t.Errorf("over budget through Push: %d %v", rec2.Code, rec2.Header())
	}
	close(release)
	<-done1
	if rec1.Code != http.StatusOK {
		t.Errorf("admitted push: %d", rec1.Code)
	}
}

// TestPushChargesReferences: a push whose request attaches Cloud Storage
// objects is charged ReferenceCost once decoded, on top of its body: with
// room for the body alone it is refused with 429 before its handler runs,
// while a push of the same size without references is served; with room
// for both it is served, and every weight comes back.
func TestPushChargesReferences(t *testing.T) {
	t.Parallel()
	ref := pushBody("m-ref", `{"attachments":[{"gcs_uri":"gs://b-1/default/a.pdf"}]}`)
	plain := pushBody("m-plain", `{"attachments":[{"gcs_url":"gs://b-1/default/a.pdf"}]}`)
	probe := NewAdmission(1<<30, 0)
	for _, tc := range []struct {
		name     string
		capacity int64
		body     []byte
		want     int
	}{
		{"reference without room", probe.Cost(int64(len(ref))) + ReferenceCost - 1, ref, http.StatusTooManyRequests},
		{"same size without reference", probe.Cost(int64(len(ref))) + ReferenceCost - 1, plain, http.StatusOK},
		{"reference with room", probe.Cost(int64(len(ref))) + ReferenceCost, ref, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := NewAdmission(tc.capacity, 10*time.Millisecond)
			var ran bool
			h, _, err := Push[testConfig](context.Background(), "test-push", env("GOOGLE_CLOUD_PROJECT", "p"), io.Discard,
				func(context.Context, *testConfig) (PushHandler, io.Closer, error) {
					return func(context.Context, *push.Message) error { ran = true; return nil }, &closeFlag{}, nil
				}, WithAdmission(a))
			if err != nil {
				t.Fatal(err)
			}
			rec, done := serve(h, tc.body)
			<-done
			if rec.Code != tc.want || ran != (tc.want == http.StatusOK) {
				t.Errorf("answered %d, handler ran %v; want %d", rec.Code, ran, tc.want)
			}
			if tc.want == http.StatusTooManyRequests && rec.Header().Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			if !a.sem.TryAcquire(a.capacity) {
				t.Error("weight still held after the push")
			}
		})
	}
}
