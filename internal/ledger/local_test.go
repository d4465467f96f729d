package ledger_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
)

func TestLocalContract(t *testing.T) {
	t.Parallel()
	runContract(t, func(t *testing.T) store {
		l, err := ledger.NewLocal(filepath.Join(t.TempDir(), "ledger.json"))
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestLocalPersistsAcrossReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state", "nested")
	path := filepath.Join(dir, "ledger.json")
	// Real time: reopening drops records whose TTL has passed by the clock.
	now := time.Now()

	l, err := ledger.NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	claim(t, l, "sent", now)
	if err := l.Finish(ctx, id("sent"), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g1", GmailThreadID: "t1", Now: now}); err != nil {
		t.Fatal(err)
	}
	claim(t, l, "ambiguous/key", now)
	if err := l.MarkAmbiguous(ctx, id("ambiguous/key"), now); err != nil {
		t.Fatal(err)
	}
	claim(t, l, "stale", now.Add(-ledger.TTL-time.Hour))
	want := map[string]*ledger.Record{"sent": get(t, l, "sent"), "ambiguous/key": get(t, l, "ambiguous/key")}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("file mode = %v, want 0600", mode)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only ledger.json (no temp files left)", len(entries))
	}

	reopened, err := ledger.NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	for key, rec := range want {
		sameRecord(t, "reopened "+key, get(t, reopened, key), rec)
	}
	if _, err := reopened.Get(ctx, id("stale")); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Get(stale) after reopen: err = %v, want ErrNotFound: expired records are dropped on load", err)
	}
	_, out := claim(t, reopened, "sent", now.Add(time.Second))
	wantOutcome(t, out, ledger.ClaimDone)
	_, out = claim(t, reopened, "ambiguous/key", now.Add(time.Second))
	wantOutcome(t, out, ledger.ClaimBusy)
}

func TestLocalRejectsCorruptFile(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		// A legacy file is written whole by rename, so it has no crash tail.
		"legacy":      "{\n  \"records\": [\n    {not json\n  ]\n}\n",
		"legacyShape": `{"records": {"key": "k"}}`,
	} {
		path := filepath.Join(t.TempDir(), "ledger.json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.NewLocal(path); err == nil {
			t.Errorf("%s: NewLocal on a corrupt file succeeded; it must refuse rather than forget sends", name)
		}
	}
	if _, err := ledger.NewLocal(""); err == nil {
		t.Fatal("NewLocal(\"\") succeeded")
	}
}

func TestLocalHonoursCanceledContext(t *testing.T) {
	t.Parallel()
	l, err := ledger.NewLocal(filepath.Join(t.TempDir(), "ledger.json"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := l.Claim(ctx, id("k"), ledger.ClaimRequest{Lease: lease, Now: t0}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Claim with a canceled context: err = %v, want context.Canceled", err)
	}
}
