// Package atomicfile replaces a file so that a reader, or a crash, sees
// either the old contents or the new, never half of each. The local stores,
// the sandbox's state and outbox, and the Secret Manager fake all persist
// through it.
package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data, with permissions perm. The data goes to a
// temporary file in the same directory (a rename is atomic only within one
// filesystem), is synced, and is renamed over path.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
			err = fmt.Errorf("atomicfile: %w", err)
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename is durable only once the directory is synced. Some
	// filesystems refuse to sync a directory; the file is then as durable as
	// that filesystem allows, which is enough for local state.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// ReadJSON decodes the JSON file at path into v, creating path's directory
// (mode 0700) so a later Write can succeed. A missing file is not an error:
// found is false and v is untouched, which the local stores take as empty.
func ReadJSON(path string, v any) (found bool, err error) {
	if path == "" {
		return false, errors.New("atomicfile: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("atomicfile: %w", err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("atomicfile: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("atomicfile: parsing %s: %w", path, err)
	}
	return true, nil
}
