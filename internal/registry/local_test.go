package registry_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/registry"
)

func TestLocalContract(t *testing.T) {
	t.Parallel()
	runContract(t, func(t *testing.T) store {
		l, err := registry.NewLocal(filepath.Join(t.TempDir(), "accounts.json"))
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestLocalPersistsAcrossReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "accounts.json")
	l, err := registry.NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	upsert(t, l, account(alice, registry.StatusConnected))
	upsert(t, l, account("bob@example.com", registry.StatusConnected))
	if _, _, err := l.SetStatus(ctx, "bob@example.com", registry.StatusReauthRequired, "invalid_grant", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkRefreshed(ctx, alice, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	want, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("file mode = %v, want 0600", mode)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Errorf("state dir holds %d entries (%v), want only accounts.json", len(entries), err)
	}

	reopened, err := registry.NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := reopened.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("reopened registry lists %d accounts, want %d", len(got), len(want))
	}
	for i := range want {
		sameAccount(t, "reopened "+want[i].Email, got[i], want[i])
	}
}

func TestLocalRejectsBadFiles(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"not json":   "{not json",
		"no address": `{"accounts":[{"email":"","status":"connected"}]}`,
		"null entry": `{"accounts":[null]}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "accounts.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := registry.NewLocal(path); err == nil {
				t.Fatal("NewLocal accepted a bad file; it must refuse rather than forget accounts")
			}
		})
	}
	if _, err := registry.NewLocal(""); err == nil {
		t.Fatal(`NewLocal("") succeeded`)
	}
}

func TestLocalSaveFailureIsUnavailableAndUndone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "accounts.json")
	l, err := registry.NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	upsert(t, l, account(alice, registry.StatusConnected))
	// A directory where the file should be makes the rename fail, even for
	// root, which file permissions would not stop.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.SetStatus(ctx, alice, registry.StatusDisconnected, "by operator", t0); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("SetStatus with an unwritable file: err = %v, want ErrUnavailable", err)
	}
	if err := l.Upsert(ctx, account("bob@example.com", registry.StatusConnected)); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Upsert with an unwritable file: err = %v, want ErrUnavailable", err)
	}
	if a := get(t, l, alice); a.Status != registry.StatusConnected {
		t.Errorf("status = %q after a failed save, want the change undone", a.Status)
	}
	if _, err := l.Get(ctx, "bob@example.com"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get(bob) after a failed save: err = %v, want ErrNotFound", err)
	}
}
