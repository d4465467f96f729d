package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, content := range []string{"first", "second, longer than the first"} {
		if err := Write(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestReadJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "nested", "state.json")
	var v struct{ N int }
	found, err := ReadJSON(p, &v)
	if err != nil || found {
		t.Fatalf("missing file: found %v, err %v; want an empty result", found, err)
	}
	if err := Write(p, []byte(`{"N":7}`), 0o600); err != nil {
		t.Fatalf("the directory ReadJSON made is not writable: %v", err)
	}
	if found, err := ReadJSON(p, &v); err != nil || !found || v.N != 7 {
		t.Fatalf("ReadJSON = %v, %v, %+v", found, err, v)
	}
	if err := Write(p, []byte(`{"N":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadJSON(p, &v); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("corrupt file: err %v, want one naming %s", err, p)
	}
	if _, err := ReadJSON("", &v); err == nil {
		t.Error("empty path accepted")
	}
}
