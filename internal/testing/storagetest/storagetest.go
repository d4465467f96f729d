// Package storagetest runs fake-gcs-server's fakestorage in-process, over a
// real listener, and points the real cloud.google.com/go/storage client at
// it, the way STORAGE_EMULATOR_HOST does: tests fake Cloud Storage's
// network, never the client library.
package storagetest

import (
	"bytes"
	"context"
	"io"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"
)

// New starts a fake with the given buckets, and returns it with a client
// pointed at it; both are closed when t ends.
func New(t testing.TB, buckets ...string) (*fakestorage.Server, *storage.Client) {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1",
		// The client reads objects with the XML API at the endpoint's
		// host: the fake serves those paths for its public host, and
		// compares a host:port on its host part.
		PublicHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatalf("fakestorage: %v", err)
	}
	t.Cleanup(srv.Stop)
	for _, b := range buckets {
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	client, err := Client(context.Background(), srv.URL())
	if err != nil {
		t.Fatalf("storage client: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return srv, client
}

// Client is a storage client for the fake at url (http://127.0.0.1:PORT),
// without credentials.
func Client(ctx context.Context, url string) (*storage.Client, error) {
	return storage.NewClient(ctx, option.WithEndpoint(url+"/storage/v1/"), option.WithoutAuthentication())
}

// Put uploads body as bucket/name through the client, as a publisher
// would, and returns the new generation.
func Put(t testing.TB, c *storage.Client, bucket, name string, body []byte, contentType, disposition string) int64 {
	t.Helper()
	w := c.Bucket(bucket).Object(name).NewWriter(context.Background())
	w.ContentType = contentType
	w.ContentDisposition = disposition
	// One request whatever the size: fake-gcs-server v1.52.3 drops
	// Content-Disposition from a resumable upload (the client's form from
	// 16 MiB).
	w.ChunkSize = 0
	if _, err := io.Copy(w, bytes.NewReader(body)); err != nil {
		t.Fatalf("uploading gs://%s/%s: %v", bucket, name, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("uploading gs://%s/%s: %v", bucket, name, err)
	}
	return w.Attrs().Generation
}
