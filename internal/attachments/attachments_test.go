package attachments_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/attachments"
	"github.com/gmailrelay/gmailrelay/internal/testing/storagetest"
)

const bucket = "gmail-relay-attachments"

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStatOpenDelete: against fake-gcs-server over the network, Stat
// returns the metadata, Open streams the generation asked for, and Delete
// removes only that generation.
func TestStatOpenDelete(t *testing.T) {
	t.Parallel()
	srv, client := storagetest.New(t, bucket)
	g := attachments.New(client)
	ctx := context.Background()
	body := random(t, 300<<10)
	gen := storagetest.Put(t, client, bucket, "default/a.pdf", body, "application/pdf", `attachment; filename="A.pdf"`)

	obj, err := g.Stat(ctx, bucket, "default/a.pdf", 0)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	want := attachments.Object{Bucket: bucket, Name: "default/a.pdf", Size: int64(len(body)), Generation: gen,
		ContentType: "application/pdf", ContentDisposition: `attachment; filename="A.pdf"`}
	if *obj != want {
		t.Errorf("Stat = %+v; want %+v", *obj, want)
	}
	if obj, err := g.Stat(ctx, bucket, "default/a.pdf", gen); err != nil || obj.Generation != gen {
		t.Errorf("Stat at generation %d = %+v, %v", gen, obj, err)
	}

	r, err := g.Open(ctx, bucket, "default/a.pdf", gen, obj.Size)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	got, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes, %v; want the %d uploaded", len(got), err, len(body))
	}

	// A size that is not the object's is a changed object.
	r, err = g.Open(ctx, bucket, "default/a.pdf", gen, obj.Size-1)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, attachments.ErrChanged) {
		t.Errorf("reading with the wrong size: %v; want ErrChanged", err)
	}
	_ = r.Close()

	// fake-gcs-server ignores ifGenerationMatch on delete: a stale
	// generation is TestGoogleAnswers'.
	if err := g.Delete(ctx, bucket, "default/a.pdf", gen); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if _, err := srv.GetObject(bucket, "default/a.pdf"); err == nil {
		t.Error("the object is still there")
	}
	if err := g.Delete(ctx, bucket, "default/a.pdf", gen); err != nil {
		t.Errorf("Delete of a gone object = %v; want nil", err)
	}
}

// TestErrors: each failure maps to its outcome.
func TestErrors(t *testing.T) {
	t.Parallel()
	_, client := storagetest.New(t, bucket)
	g := attachments.New(client)
	ctx := context.Background()
	gen := storagetest.Put(t, client, bucket, "default/a.txt", []byte("first"), "text/plain", "")
	gen2 := storagetest.Put(t, client, bucket, "default/a.txt", []byte("second"), "text/plain", "")
	if gen2 == gen {
		t.Fatalf("overwriting kept generation %d", gen)
	}
	cases := []struct {
		name   string
		do     func() error
		want   error
		detail string
	}{
		{"missing object", func() error { _, err := g.Stat(ctx, bucket, "default/none", 0); return err }, attachments.ErrNotFound, ""},
		{"missing bucket", func() error { _, err := g.Stat(ctx, "no-such-bucket", "default/a.txt", 0); return err }, attachments.ErrNotFound, ""},
		{"missing generation of a gone object", func() error { _, err := g.Stat(ctx, bucket, "default/none", 5); return err }, attachments.ErrNotFound, ""},
		{"overwritten since", func() error { _, err := g.Stat(ctx, bucket, "default/a.txt", gen); return err }, attachments.ErrChanged, "not"},
		{"open a generation replaced", func() error { _, err := g.Open(ctx, bucket, "default/a.txt", gen, 5); return err }, attachments.ErrChanged, "now at generation"},
		{"open a gone object", func() error { _, err := g.Open(ctx, bucket, "default/none", gen, 5); return err }, attachments.ErrNotFound, ""},
		{"open without generation", func() error { _, err := g.Open(ctx, bucket, "default/a.txt", 0, 5); return err }, nil, "generation is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := c.do()
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.detail) {
				t.Errorf("error %v; want %v with %q", err, c.want, c.detail)
			}
		})
	}
}

// googleError403 is the JSON body Cloud Storage answers when the caller
// lacks storage.objects.get: Google's JSON error format with reason
// "forbidden" ("HTTP status and error codes for JSON",
// cloud.google.com/storage/docs/json_api/v1/status-codes, 403 Forbidden),
// and the message Cloud Storage gives, as gcloud prints it ("... does not
// have storage.objects.list access to the Google Cloud Storage bucket.
// Permission 'storage.objects.list' denied on resource (or it may not
// exist).", quoted at devopsaitoolkit.com/blog/gcp-error-storage-objects-403-bucket-access-denied),
// for an object read.
const googleError403 = `{
  "error": {
    "code": 403,
    "message": "sender@relay.iam.gserviceaccount.com does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).",
    "errors": [
      {
        "message": "sender@relay.iam.gserviceaccount.com does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).",
        "domain": "global",
        "reason": "forbidden"
      }
    ]
  }
}`

// TestGoogleAnswers: fake-gcs-server does not model IAM or outages, so a
// handler answers as Cloud Storage does, and the real client reads it.
func TestGoogleAnswers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"403", http.StatusForbidden, googleError403, attachments.ErrDenied},
		{"401", http.StatusUnauthorized, `{"error":{"code":401,"message":"Anonymous caller does not have storage.objects.get access.","errors":[{"reason":"required","domain":"global","message":"Anonymous caller does not have storage.objects.get access."}]}}`, attachments.ErrDenied},
		{"412", http.StatusPreconditionFailed, `{"error":{"code":412,"message":"At least one of the pre-conditions you specified did not hold.","errors":[{"reason":"conditionNotMet","domain":"global","message":"At least one of the pre-conditions you specified did not hold.","locationType":"header","location":"If-Match"}]}}`, attachments.ErrChanged},
		{"503", http.StatusServiceUnavailable, `{"error":{"code":503,"message":"Backend Error","errors":[{"reason":"backendError","domain":"global","message":"Backend Error"}]}}`, attachments.ErrUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			var deleteQuery atomic.Value
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if r.Method == http.MethodDelete {
					deleteQuery.Store(r.URL.RawQuery)
				}
				w.Header().Set("Content-Type", "application/json; charset=UTF-8")
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.body)
			}))
			t.Cleanup(ts.Close)
			client, err := storage.NewClient(context.Background(), option.WithEndpoint(ts.URL+"/storage/v1/"), option.WithoutAuthentication())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = client.Close() })
			// One try: the library retries a 503 with backoff for long.
			client.SetRetry(storage.WithPolicy(storage.RetryNever))
			g := attachments.New(client)
			ctx := context.Background()
			_, err = g.Stat(ctx, bucket, "default/a.pdf", 0)
			if !errors.Is(err, c.want) {
				t.Errorf("Stat: %v; want %v", err, c.want)
			}
			_, err = g.Open(ctx, bucket, "default/a.pdf", 7, 10)
			if !errors.Is(err, c.want) {
				t.Errorf("Open: %v; want %v", err, c.want)
			}
			err = g.Delete(ctx, bucket, "default/a.pdf", 7)
			if !errors.Is(err, c.want) {
				t.Errorf("Delete: %v; want %v", err, c.want)
			}
			if q, _ := deleteQuery.Load().(string); !strings.Contains(q, "ifGenerationMatch=7") {
				t.Errorf("Delete sent the query %q; want ifGenerationMatch=7", q)
			}
			if calls.Load() == 0 {
				t.Error("the handler was never called")
			}
		})
	}
}

// TestNetworkDown: no answer at all is unavailable, worth a retry.
func TestNetworkDown(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	client, err := storage.NewClient(context.Background(), option.WithEndpoint(url+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	client.SetRetry(storage.WithPolicy(storage.RetryNever))
	if _, err := attachments.New(client).Stat(context.Background(), bucket, "default/a", 0); !errors.Is(err, attachments.ErrUnavailable) {
		t.Errorf("Stat: %v; want ErrUnavailable", err)
	}
}
