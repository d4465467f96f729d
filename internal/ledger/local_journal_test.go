package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
)

// journal reads the file at path as the journal: each line must be one
// {"id":…,"rec":…} object whose ID is its record's DocID.
func journal(t *testing.T, path string) []*ledger.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end in a newline: %q", path, b)
	}
	var recs []*ledger.Record
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(b) == 0 {
			break // Split returns one empty line
		}
		var jl struct {
			ID  string         `json:"id"`
			Rec *ledger.Record `json:"rec"`
		}
		if err := json.Unmarshal(line, &jl); err != nil {
			t.Fatalf("%s:%d: %v: %q", path, i+1, err, line)
		}
		if jl.Rec == nil || jl.ID != ledger.DocID(jl.Rec.Scope().ID()) {
			t.Fatalf("%s:%d: not a journal line: %q", path, i+1, line)
		}
		recs = append(recs, jl.Rec)
	}
	return recs
}

func lineCount(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func openLocal(t *testing.T, path string) *ledger.Local {
	t.Helper()
	l, err := ledger.NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func finish(t *testing.T, l ledger.Store, key string, now time.Time) {
	t.Helper()
	if err := l.Finish(context.Background(), id(key), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g-" + key, Now: now}); err != nil {
		t.Fatal(err)
	}
}

func TestLocalAppendsOneLinePerWrite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sends.json")
	l := openLocal(t, path)
	now := time.Now()
	claim(t, l, "a", now)
	finish(t, l, "a", now)
	claim(t, l, "b", now)
	claim(t, l, "a", now) // ClaimDone: no write
	recs := journal(t, path)
	var keys []string
	for _, r := range recs {
		keys = append(keys, r.Key+":"+string(r.State))
	}
	if got, want := strings.Join(keys, " "), "a:sending a:sent b:sending"; got != want {
		t.Fatalf("journal = %s, want %s", got, want)
	}
	sameRecord(t, "last line of a", recs[1], get(t, l, "a"))
	if got := l.Stats().Writes; got != 3 {
		t.Errorf("Stats().Writes = %d, want 3", got)
	}
}

func TestLocalReopenKeepsFileWhenCompact(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sends.json")
	now := time.Now()
	l := openLocal(t, path)
	claim(t, l, "a", now)
	claim(t, l, "b", now)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	openLocal(t, path)
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("reopening a compact journal rewrote it")
	}

	// A superseded line makes the next open compact.
	finish(t, l, "a", now)
	reopened := openLocal(t, path)
	if recs := journal(t, path); len(recs) != 2 {
		t.Errorf("journal after reopen holds %d lines, want 2 (one per record)", len(recs))
	}
	sameRecord(t, "a after compaction", get(t, reopened, "a"), get(t, l, "a"))
	sameRecord(t, "b after compaction", get(t, reopened, "b"), get(t, l, "b"))
}

func TestLocalIgnoresTornFinalLine(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for name, tail := range map[string]string{
		"half line":        `{"id":"0123","rec":{"key":"torn","sta`,
		"zeros":            "\x00\x00\x00\x00\x00\x00",
		"garbage line":     "{garbage}\n",
		"garbage and gaps": "{garbage}\n\n  \n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "sends.json")
			l := openLocal(t, path)
			// One line per record, so that only the tail makes the
			// journal need rewriting.
			claim(t, l, "a", now)
			claim(t, l, "b", now)
			want := map[string]*ledger.Record{"a": get(t, l, "a"), "b": get(t, l, "b")}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(tail); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			reopened := reopenHolds(t, path, "reopened", want)
			claim(t, reopened, "c", now)
			want["c"] = get(t, reopened, "c")
			if recs := journal(t, path); len(recs) != 3 {
				t.Fatalf("journal holds %d records, want 3", len(recs))
			}
			reopenHolds(t, path, "reopened again", want)
		})
	}
}

func TestLocalRejectsCorruptMiddleLine(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for name, corrupt := range map[string]func(line string) string{
		"garbage": func(string) string { return "{garbage}" },
		"wrong id": func(line string) string {
			return strings.Replace(line, `"id":"`+ledger.DocID(id("b")), `"id":"`+ledger.DocID(id("x")), 1)
		},
		"no record": func(string) string { return `{"id":"` + ledger.DocID(id("b")) + `"}` },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "sends.json")
			l := openLocal(t, path)
			claim(t, l, "a", now)
			claim(t, l, "b", now)
			claim(t, l, "c", now)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			lines[1] = corrupt(lines[1])
			if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = ledger.NewLocal(path)
			if err == nil {
				t.Fatal("NewLocal with a corrupt middle line succeeded; it must refuse rather than forget sends")
			}
			if !strings.Contains(err.Error(), path+":2:") {
				t.Errorf("error %q does not name %s:2", err, path)
			}
		})
	}
}

func TestLocalMigratesLegacyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sends.json")
	now := time.Now().UTC().Truncate(time.Microsecond)
	// Written before scoping: no app, and an account in any case.
	sent := &ledger.Record{
		Key: "order/1", State: ledger.StateSent, Account: "Alice@Example.com", GmailMessageID: "g1",
		Attempts: 2, MaybeDuplicate: true, CreatedAt: now, UpdatedAt: now, ExpireAt: now.Add(ledger.TTL),
	}
	sending := &ledger.Record{
		Key: "order/2", State: ledger.StateSending, Account: "alice@example.com", Attempts: 1, LeaseUntil: now.Add(time.Hour),
		CreatedAt: now, UpdatedAt: now, ExpireAt: now.Add(ledger.TTL),
	}
	stale := &ledger.Record{Key: "old", State: ledger.StateSent, CreatedAt: now, UpdatedAt: now, ExpireAt: now.Add(-time.Hour)}
	b, err := json.MarshalIndent(map[string]any{"records": []*ledger.Record{sent, sending, stale, nil}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Migrated into the default app, under the normalised account.
	wantSent, wantSending := *sent, *sending
	wantSent.App, wantSent.Account = ledger.DefaultApp, "alice@example.com"
	wantSending.App = ledger.DefaultApp

	l := openLocal(t, path)
	sameRecord(t, "migrated order/1", get(t, l, "order/1"), &wantSent)
	sameRecord(t, "migrated order/2", get(t, l, "order/2"), &wantSending)
	if _, err := l.Get(context.Background(), id("old")); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Get(old) after migration: err = %v, want ErrNotFound", err)
	}
	if recs := journal(t, path); len(recs) != 2 {
		t.Fatalf("migrated journal holds %d records, want 2", len(recs))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("file mode = %v, want 0600", mode)
	}

	finish(t, l, "order/2", now)
	reopened := openLocal(t, path)
	sameRecord(t, "reopened order/1", get(t, reopened, "order/1"), &wantSent)
	sameRecord(t, "reopened order/2", get(t, reopened, "order/2"), get(t, l, "order/2"))
}

// TestLocalMigratesUnscopedJournal: a journal written before idempotency was
// scoped files each record under hex(sha256(key)) and has no app. It loads
// into the default app under the record's account, and is rewritten with
// scoped IDs; a line that claims another key's old ID is still corruption.
func TestLocalMigratesUnscopedJournal(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := func(key, account string) string {
		rec := &ledger.Record{Key: key, State: ledger.StateSent, Account: account, GmailMessageID: "g-" + key, Attempts: 1,
			CreatedAt: now, UpdatedAt: now, ExpireAt: now.Add(ledger.TTL)}
		b, err := json.Marshal(map[string]any{"id": ledger.Fingerprint([]byte(key)), "rec": rec})
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	path := filepath.Join(t.TempDir(), "sends.json")
	if err := os.WriteFile(path, []byte(old("a", "Alice@Example.com")+old("b", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	l := openLocal(t, path)
	if rec := get(t, l, "a"); rec.App != ledger.DefaultApp || rec.Account != "alice@example.com" || rec.GmailMessageID != "g-a" {
		t.Errorf("migrated a = %+v; want app default, account alice@example.com", rec)
	}
	if rec, err := l.Get(context.Background(), ledger.Scope{Key: "b"}.ID()); err != nil || rec.GmailMessageID != "g-b" {
		t.Errorf("migrated b (no account) = %+v, %v", rec, err)
	}
	_, out := claim(t, l, "a", now.Add(time.Second))
	wantOutcome(t, out, ledger.ClaimDone)
	if recs := journal(t, path); len(recs) != 2 {
		t.Fatalf("rewritten journal holds %d records, want 2", len(recs))
	}

	forged := strings.Replace(old("a", ""), ledger.Fingerprint([]byte("a")), ledger.Fingerprint([]byte("x")), 1)
	bad := filepath.Join(t.TempDir(), "sends.json")
	if err := os.WriteFile(bad, []byte(forged+old("b", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.NewLocal(bad); err == nil {
		t.Fatal("NewLocal accepted an unscoped line filed under another key's ID")
	}
}

func TestLocalCompactsJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sends.json")
	now := time.Now()
	l := openLocal(t, path)
	// Expired by the wall clock, which is what compaction goes by.
	claim(t, l, "stale", now.Add(-ledger.TTL-time.Hour))
	claim(t, l, "k", now)
	maxLines, writes := 0, 2
	for range 1500 {
		if err := l.MarkAmbiguous(ctx, id("k"), now); err != nil {
			t.Fatal(err)
		}
		writes++
		maxLines = max(maxLines, lineCount(t, path))
	}
	recs := journal(t, path)
	if maxLines >= writes || len(recs) >= maxLines {
		t.Fatalf("journal never shrank: %d writes, at most %d lines, %d now", writes, maxLines, len(recs))
	}
	if maxLines > 4*2+1024+1 {
		t.Errorf("journal reached %d lines for 2 records", maxLines)
	}
	for _, r := range recs {
		if r.Key == "stale" {
			t.Fatal("compaction kept the expired record")
		}
	}
	if _, err := l.Get(ctx, id("stale")); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Get(stale) after compaction: err = %v, want ErrNotFound: memory must not keep what the disk dropped", err)
	}
	want := get(t, l, "k")
	if !want.MaybeDuplicate {
		t.Fatal("k lost MaybeDuplicate")
	}
	sameRecord(t, "k after reopen", get(t, openLocal(t, path), "k"), want)
	if got := l.Stats().Writes; got != int64(writes) {
		t.Errorf("Stats().Writes = %d, want %d: compaction is not a write", got, writes)
	}
}

func TestLocalAppendFailureIsUnavailableAndUndone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sends.json")
	now := time.Now()
	l := openLocal(t, path)
	claim(t, l, "a", now)
	before := get(t, l, "a")

	if err := ledger.BreakJournal(l); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Claim(ctx, id("b"), ledger.ClaimRequest{Lease: lease, Now: now}); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Claim with a broken journal: err = %v, want ErrUnavailable", err)
	}
	if _, err := l.Get(ctx, id("b")); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Get(b) after a failed append: err = %v, want ErrNotFound: the claim must be undone in memory", err)
	}

	// The next write rewrites the journal; a directory where the file
	// should be makes that fail too, even for root.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, id("a"), ledger.Finish{State: ledger.StateSent, Now: now}); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Finish with an unwritable journal: err = %v, want ErrUnavailable", err)
	}
	sameRecord(t, "a after a failed Finish", get(t, l, "a"), before)
	if got := l.Stats().Writes; got != 1 {
		t.Errorf("Stats().Writes = %d, want 1: failed writes are not counted", got)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, out := claim(t, l, "b", now)
	wantOutcome(t, out, ledger.ClaimNew)
	finish(t, l, "a", now)
	claim(t, l, "c", now) // appended again, not rewritten
	want := map[string]*ledger.Record{"a": get(t, l, "a"), "b": get(t, l, "b"), "c": get(t, l, "c")}
	// The failed append left the next write to rewrite the journal (a, b);
	// the two after it appended.
	if recs := journal(t, path); len(recs) != 4 {
		t.Errorf("journal holds %d lines, want 4", len(recs))
	}
	reopenHolds(t, path, "reopened", want)
}

// reopenHolds opens the journal at path afresh and checks that it holds
// want's records.
func reopenHolds(t *testing.T, path, label string, want map[string]*ledger.Record) *ledger.Local {
	t.Helper()
	l := openLocal(t, path)
	for key, rec := range want {
		sameRecord(t, label+" "+key, get(t, l, key), rec)
	}
	return l
}

func TestLocalClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sends.json")
	l := openLocal(t, path)
	claim(t, l, "a", time.Now())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Claim(context.Background(), id("b"), ledger.ClaimRequest{Lease: lease}); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Claim after Close: err = %v, want ErrUnavailable", err)
	}
	if _, err := l.Get(context.Background(), id("b")); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Get(b) after a Claim on a closed store: err = %v, want ErrNotFound", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
