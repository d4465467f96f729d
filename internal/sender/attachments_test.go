package sender_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/attachments"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/policy"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
	"github.com/gmailrelay/gmailrelay/internal/testing/storagetest"
)

const (
	ownBucket   = "gmail-relay-attachments"
	extraBucket = "acme-exports"
	otherBucket = "someone-elses"
)

// objects is the real GCS reader with a count of its opens and a hook
// run before each, to change the object between the relay's Stat and its
// read.
type objects struct {
	*attachments.GCS
	opens  atomic.Int32
	before func()
}

func (o *objects) Open(ctx context.Context, bucket, name string, generation, size int64) (io.ReadCloser, error) {
	o.opens.Add(1)
	if o.before != nil {
		o.before()
	}
	return o.GCS.Open(ctx, bucket, name, generation, size)
}

var _ sender.Objects = (*objects)(nil)

// attachEnv is an Env whose sender reads the relay's bucket and one extra
// bucket from a fake Cloud Storage, with alice connected. mutate adjusts
// the configuration.
func attachEnv(t *testing.T, mutate func(*sender.Attachments), pol *policy.Policy) (*sendertest.Env, *storage.Client, *fakestorage.Server, *objects) {
	t.Helper()
	srv, client := storagetest.New(t, ownBucket, extraBucket, otherBucket)
	objs := &objects{GCS: attachments.New(client)}
	a := sender.Attachments{Objects: objs, Bucket: ownBucket, ExtraBuckets: []string{extraBucket}}
	if mutate != nil {
		mutate(&a)
	}
	e := sendertest.New(t, sendertest.Options{Attachments: a, Policy: pol})
	e.Connect(alice)
	return e, client, srv, objs
}

func randomFile(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func byRef(uri string, kv ...any) map[string]any {
	a := map[string]any{"gcs_uri": uri}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i].(string)] = kv[i+1]
	}
	return a
}

// attachmentOf returns the leaf named filename of the last .eml Gmail
// stored.
func attachmentOf(t *testing.T, e *sendertest.Env, filename string) leaf {
	t.Helper()
	out := e.Outbox()
	if len(out) == 0 {
		t.Fatal("the outbox is empty")
	}
	for _, l := range readEML(t, out[len(out)-1].Path).parts(t) {
		if l.filename == filename {
			return l
		}
	}
	var names []string
	for _, l := range readEML(t, out[len(out)-1].Path).parts(t) {
		names = append(names, fmt.Sprintf("%q (%s, %d bytes)", l.filename, l.contentType, len(l.body)))
	}
	t.Fatalf("the message has no part named %q: %v", filename, names)
	return leaf{}
}

// TestAttachmentByReference: an object sent by gcs_uri arrives byte for
// byte, with the request's filename and content type or else the
// object's, from the relay's bucket under the app's prefix and from an
// extra bucket, next to an attachment sent as data.
func TestAttachmentByReference(t *testing.T) {
	t.Parallel()
	size := 300 << 10
	if !testing.Short() {
		size = 20 << 20 // the 20 MB: a resumable upload of 5 pieces
	}
	cases := []struct {
		name, bucket, object string
		ctype, disposition   string
		attach               map[string]any // beyond gcs_uri
		wantName, wantType   string
	}{
		{name: "metadata from the object", bucket: ownBucket, object: "default/reports/q3.pdf", ctype: "application/pdf",
			disposition: `attachment; filename="Q3 Report.pdf"`, wantName: "Q3 Report.pdf", wantType: "application/pdf"},
		{name: "name from the object's name", bucket: ownBucket, object: "default/scans/receipts.zip", ctype: "application/zip",
			wantName: "receipts.zip", wantType: "application/zip"},
		{name: "request wins", bucket: ownBucket, object: "default/x.bin", ctype: "application/pdf", disposition: `attachment; filename="obj.pdf"`,
			attach: map[string]any{"filename": "invoice.csv", "content_type": "text/csv"}, wantName: "invoice.csv", wantType: "text/csv"},
		{name: "extra bucket, any prefix", bucket: extraBucket, object: "exports/2026/data.json", ctype: "application/json",
			wantName: "data.json", wantType: "application/json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e, client, _, objs := attachEnv(t, nil, nil)
			file := randomFile(t, size)
			gen := storagetest.Put(t, client, c.bucket, c.object, file, c.ctype, c.disposition)
			att := byRef("gs://"+c.bucket+"/"+c.object, "generation", gen)
			for k, v := range c.attach {
				att[k] = v
			}
			req := sendertest.NewRequest(alice, "ref-1").With("attachments", []any{
				att, map[string]any{"filename": "small.txt", "content_type": "text/plain", "data": []byte("inline data")},
			})
			wantAck(t, e.Deliver(delivery("ps-1", req)))
			if r := oneResult(t, e); r.Event.Status != results.StatusSent {
				t.Fatalf("result %+v", r.Event)
			}
			wantOutbox(t, e, 1)
			got := attachmentOf(t, e, c.wantName)
			if sha256.Sum256(got.body) != sha256.Sum256(file) {
				t.Errorf("the attachment is %d bytes that differ from the %d-byte object", len(got.body), len(file))
			}
			if got.contentType != c.wantType {
				t.Errorf("content type %q; want %q", got.contentType, c.wantType)
			}
			if small := attachmentOf(t, e, "small.txt"); string(small.body) != "inline data" {
				t.Errorf("the data attachment reads %q", small.body)
			}
			if n := objs.opens.Load(); n != 1 {
				t.Errorf("the object was opened %d times for one Gmail call", n)
			}
		})
	}
}

// TestAttachmentReopenedPerCall: when the sender calls Gmail again in one
// delivery (a 401 on a cached token, renewed), it reads the object again
// at the same generation rather than keep the message in memory.
func TestAttachmentReopenedPerCall(t *testing.T) {
	t.Parallel()
	e, client, _, objs := attachEnv(t, nil, nil)
	// A first send caches the access token, so that the 401 is renewed.
	wantAck(t, e.Deliver(delivery("ps-0", sendertest.NewRequest(alice, "warm-up"))))
	_ = e.Results()
	file := randomFile(t, 5<<20)
	storagetest.Put(t, client, ownBucket, "default/big.bin", file, "application/octet-stream", "")
	if err := e.Sandbox.InjectGmailErrors(alice, sandbox.Unauthenticated401, 1); err != nil {
		t.Fatal(err)
	}
	wantAck(t, e.Deliver(delivery("ps-1", sendertest.NewRequest(alice, "ref-2").With("attachments", []any{byRef("gs://" + ownBucket + "/default/big.bin")}))))
	if r := oneResult(t, e); r.Event.Status != results.StatusSent {
		t.Fatalf("result %+v", r.Event)
	}
	if got := attachmentOf(t, e, "big.bin"); !bytes.Equal(got.body, file) {
		t.Errorf("the attachment differs from the object")
	}
	if n := objs.opens.Load(); n != 2 {
		t.Errorf("the object was opened %d times for two Gmail calls", n)
	}
}

// googleError403 is Cloud Storage's answer to a caller without
// storage.objects.get (see internal/attachments' test for its source).
const googleError403 = `{"error":{"code":403,"message":"sender@relay.iam.gserviceaccount.com does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).","errors":[{"message":"sender@relay.iam.gserviceaccount.com does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).","domain":"global","reason":"forbidden"}]}}`

// answering is a storage client whose every request gets status and body.
func answering(t *testing.T, status int, body string) *storage.Client {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	c, err := storage.NewClient(context.Background(), option.WithEndpoint(ts.URL+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	c.SetRetry(storage.WithPolicy(storage.RetryNever))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestAttachmentFailures: every way a reference fails is a final result
// with its code and fix, before any Gmail call, except Cloud Storage
// failing, which is redelivered.
func TestAttachmentFailures(t *testing.T) {
	t.Parallel()
	own := func(object string) string { return "gs://" + ownBucket + "/" + object }
	cases := []struct {
		name    string
		config  func(*sender.Attachments)
		setup   func(t *testing.T, c *storage.Client, o *objects) []any // the attachments
		app     string
		code    string
		nack    bool
		sent    bool // Gmail was called (a read failed mid-upload)
		message []string
	}{
		{name: "missing", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			return []any{byRef(own("default/none.pdf"))}
		}, code: "attachment_not_found", message: []string{"attachments[0].gcs_uri", "does not exist", "upload it before"}},
		{name: "denied by IAM", config: func(a *sender.Attachments) {
			a.Objects = attachments.New(answering(t, http.StatusForbidden, googleError403))
		}, setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			return []any{byRef(own("default/a.pdf"))}
		}, code: "attachment_denied", message: []string{"roles/storage.objectViewer", "sender's service account"}},
		{name: "Cloud Storage unavailable", config: func(a *sender.Attachments) {
			a.Objects = attachments.New(answering(t, http.StatusServiceUnavailable, `{"error":{"code":503,"message":"Backend Error","errors":[{"reason":"backendError","domain":"global","message":"Backend Error"}]}}`))
		}, setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			return []any{byRef(own("default/a.pdf"))}
		}, nack: true},
		{name: "generation changed since publish", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			gen := storagetest.Put(t, c, ownBucket, "default/a.pdf", []byte("first"), "application/pdf", "")
			storagetest.Put(t, c, ownBucket, "default/a.pdf", []byte("second"), "application/pdf", "")
			return []any{byRef(own("default/a.pdf"), "generation", gen)}
		}, code: "attachment_changed", message: []string{"changed since the request was published", "current generation"}},
		{name: "replaced while being read", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			storagetest.Put(t, c, ownBucket, "default/a.pdf", []byte("first"), "application/pdf", "")
			o.before = func() { storagetest.Put(t, c, ownBucket, "default/a.pdf", []byte("second"), "application/pdf", "") }
			return []any{byRef(own("default/a.pdf"))}
			// Gmail sees the upload session opened, and none of the message.
		}, code: "attachment_changed", sent: true, message: []string{"attachments[0].gcs_uri", "now at generation"}},
		{name: "too large, from the sizes alone", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			// 14 MB twice is 37.4 MB in base64, over Gmail's 36,700,160.
			storagetest.Put(t, c, ownBucket, "default/half.bin", make([]byte, 14<<20), "application/octet-stream", "")
			return []any{byRef(own("default/half.bin")), byRef(own("default/half.bin"), "filename", "again.bin")}
		}, code: "invalid_request", message: []string{"over Gmail's limit of 36700160 bytes", "Send smaller files, or links"}},
		{name: "another app's prefix", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			storagetest.Put(t, c, ownBucket, "billing/a.pdf", []byte("x"), "application/pdf", "")
			return []any{byRef(own("billing/a.pdf"))}
		}, code: "attachment_denied", message: []string{"prefix of the app", `app "default"`, "gs://" + ownBucket + "/default/a.pdf"}},
		{name: "no prefix", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			storagetest.Put(t, c, ownBucket, "a.pdf", []byte("x"), "application/pdf", "")
			return []any{byRef(own("a.pdf"))}
		}, code: "attachment_denied", message: []string{"prefix of the app"}},
		{name: "prefix of the app it came from", app: "billing", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			storagetest.Put(t, c, ownBucket, "default/a.pdf", []byte("x"), "application/pdf", "")
			return []any{byRef(own("default/a.pdf"))}
		}, code: "attachment_denied", message: []string{`app "billing"`, "gs://" + ownBucket + "/billing/a.pdf"}},
		{name: "bucket not allowed", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			storagetest.Put(t, c, otherBucket, "default/a.pdf", []byte("x"), "application/pdf", "")
			return []any{byRef("gs://" + otherBucket + "/default/a.pdf")}
		}, code: "attachment_denied", message: []string{`does not read the bucket "` + otherBucket + `"`, "ATTACHMENTS_EXTRA_BUCKETS", "gs://" + extraBucket}},
		{name: "turned off", config: func(a *sender.Attachments) { a.Bucket, a.ExtraBuckets = "", nil }, setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			return []any{byRef(own("default/a.pdf"))}
		}, code: "attachment_denied", message: []string{"turned off", "ATTACHMENTS_BUCKET is not set", "Send the file as data"}},
		{name: "gzip-encoded object", setup: func(t *testing.T, c *storage.Client, o *objects) []any {
			w := c.Bucket(ownBucket).Object("default/a.txt.gz").NewWriter(context.Background())
			w.ContentEncoding = "gzip"
			_, _ = w.Write([]byte("\x1f\x8b not really gzip"))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return []any{byRef(own("default/a.txt.gz"))}
		}, code: "invalid_request", message: []string{"Content-Encoding gzip"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var pol *policy.Policy
			if c.app != "" {
				apps, errs := policy.ParseApps(`{"` + c.app + `":{"accounts":["*"]}}`)
				if len(errs) > 0 {
					t.Fatalf("ParseApps: %v", errs)
				}
				pol = &policy.Policy{Apps: apps}
			}
			e, client, _, objs := attachEnv(t, c.config, pol)
			atts := c.setup(t, client, objs)
			d := delivery("ps-1", sendertest.NewRequest(alice, "bad-1").With("attachments", atts))
			d.App = c.app
			err := e.Deliver(d)
			if c.nack {
				wantNack(t, err)
				noResult(t, e)
			} else {
				wantAck(t, err)
				wantFailed(t, oneResult(t, e), c.code, false, c.message...)
			}
			wantOutbox(t, e, 0)
			if n := e.Requests.Gmail(); (n > 0) != c.sent {
				t.Errorf("Gmail saw %d requests; want some: %v", n, c.sent)
			}
		})
	}
}

// TestDeleteAfterSend: once sent, the relay's own objects are deleted,
// the extra bucket's never; without the setting nothing is.
func TestDeleteAfterSend(t *testing.T) {
	t.Parallel()
	for _, del := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[del], func(t *testing.T) {
			t.Parallel()
			e, client, srv, _ := attachEnv(t, func(a *sender.Attachments) { a.DeleteAfterSend = del }, nil)
			storagetest.Put(t, client, ownBucket, "default/a.pdf", []byte("own"), "application/pdf", "")
			storagetest.Put(t, client, extraBucket, "x/b.pdf", []byte("extra"), "application/pdf", "")
			req := sendertest.NewRequest(alice, "del-1").With("attachments", []any{
				byRef("gs://" + ownBucket + "/default/a.pdf"), byRef("gs://" + extraBucket + "/x/b.pdf"),
			})
			wantAck(t, e.Deliver(delivery("ps-1", req)))
			if r := oneResult(t, e); r.Event.Status != results.StatusSent {
				t.Fatalf("result %+v", r.Event)
			}
			if _, err := srv.GetObject(ownBucket, "default/a.pdf"); (err == nil) == del {
				t.Errorf("delete_after_send %v: the relay's object exists: %v", del, err == nil)
			}
			if _, err := srv.GetObject(extraBucket, "x/b.pdf"); err != nil {
				t.Errorf("the extra bucket's object was deleted")
			}
			// A redelivery is a duplicate, answered without the objects.
			wantAck(t, e.Deliver(delivery("ps-1", req)))
			if r := oneResult(t, e); r.Event.Status != results.StatusDuplicate {
				t.Errorf("redelivery: %+v", r.Event)
			}
		})
	}
}
