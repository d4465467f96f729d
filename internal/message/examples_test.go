package message

import (
	"bytes"
	"cmp"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestExamples: every sample request README points publishers to is valid
// against the published schema, is accepted by Decode, and becomes a
// message (composed, or a raw message that passes the raw checks).
func TestExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../scripts/examples/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in scripts/examples (%v)", err)
	}
	sch := compileSchema(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if err := sch.Validate(doc); err != nil {
				t.Errorf("the schema refuses it: %v", err)
			}
			req, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(req.Raw) > 0 {
				if err := CheckRaw(req.Raw, req.Account); err != nil {
					t.Errorf("CheckRaw: %v", err)
				}
				return
			}
			// An example sent as an alias needs the alias registered at
			// send time; unregistered, the same request is refused.
			var aliases []string
			if req.From != "" {
				aliases = []string{req.From}
				if _, err := Compose(req, ComposeOptions{Now: time.Now(), MessageIDKey: "example"}); err == nil {
					t.Errorf("Compose without the alias %s registered accepted it", req.From)
				}
			}
			// Attachments by reference get what the sender fills in from
			// the object, and a file of a few bytes.
			opts := ComposeOptions{Now: time.Now(), MessageIDKey: "example", Aliases: aliases,
				Open: func(int, Attachment) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("file")), nil }}
			for i := range req.Attachments {
				if a := &req.Attachments[i]; a.ByReference() {
					_, object, err := ParseGCSURI(a.GCSURI)
					if err != nil {
						t.Fatal(err)
					}
					fn, ct := ObjectDefaults(object, "", "")
					a.Filename, a.ContentType, a.Size = cmp.Or(a.Filename, fn), cmp.Or(a.ContentType, ct), 4
				}
			}
			if _, err := Compose(req, opts); err != nil {
				t.Errorf("Compose: %v", err)
			}
		})
	}
}
