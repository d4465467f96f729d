// Package attachments reads the Cloud Storage objects that a send request
// attaches by reference (attachments[].gcs_uri), with the sender's own
// identity, through cloud.google.com/go/storage. It pins every read to one
// object generation, so that the bytes sent are those whose size was
// checked, and it turns the library's errors into the few outcomes the
// sender reports: missing, denied, changed since publish, or unavailable
// for now (worth a redelivery).
package attachments

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
)

// The outcomes Stat, Open and Delete report, matched with errors.Is; each
// error also carries the library's own.
var (
	// ErrNotFound: the bucket or object (or the generation asked for)
	// does not exist.
	ErrNotFound = errors.New("attachments: object not found")
	// ErrDenied: Cloud Storage refused the sender's identity (401, 403).
	ErrDenied = errors.New("attachments: access denied")
	// ErrChanged: the object is no longer the generation asked for (412,
	// or its bytes do not match its size).
	ErrChanged = errors.New("attachments: object changed")
	// ErrUnavailable: a 5xx, 429, a timeout or a network failure, which
	// a later try may not meet.
	ErrUnavailable = errors.New("attachments: Cloud Storage unavailable")
)

// Object is what the relay needs of an object's metadata.
type Object struct {
	Bucket, Name string
	// Size is the object's length in bytes as stored.
	Size       int64
	Generation int64
	// ContentType, ContentDisposition and ContentEncoding are the
	// object's metadata of those names ("" when unset).
	ContentType        string
	ContentDisposition string
	ContentEncoding    string
}

// GCS reads objects through a storage.Client.
type GCS struct {
	c *storage.Client
}

// New returns a GCS on c, which the caller keeps and closes.
func New(c *storage.Client) *GCS { return &GCS{c: c} }

// Stat returns the metadata of bucket/name: of generation when it is not
// 0, else of the live object. A generation that no longer exists while the
// object does (it was overwritten after the request named it) is
// ErrChanged, not ErrNotFound.
func (g *GCS) Stat(ctx context.Context, bucket, name string, generation int64) (*Object, error) {
	o := g.c.Bucket(bucket).Object(name)
	if generation != 0 {
		o = o.Generation(generation)
	}
	a, err := o.Attrs(ctx)
	if err != nil && generation != 0 && errors.Is(err, storage.ErrObjectNotExist) {
		if live, lerr := g.c.Bucket(bucket).Object(name).Attrs(ctx); lerr == nil {
			return nil, fmt.Errorf("attachments.Stat gs://%s/%s: %w: it is at generation %d, not %d", bucket, name, ErrChanged, live.Generation, generation)
		}
	}
	if err != nil {
		return nil, wrap("attachments.Stat", bucket, name, err)
	}
	return &Object{Bucket: a.Bucket, Name: a.Name, Size: a.Size, Generation: a.Generation,
		ContentType: a.ContentType, ContentDisposition: a.ContentDisposition, ContentEncoding: a.ContentEncoding}, nil
}

// Open streams generation (which must not be 0) of bucket/name. The reader
// reports ErrChanged if the object's length differs from size: the
// composed message's size was computed from it.
func (g *GCS) Open(ctx context.Context, bucket, name string, generation, size int64) (io.ReadCloser, error) {
	if generation <= 0 {
		return nil, fmt.Errorf("attachments.Open gs://%s/%s: a generation is required, so that the bytes read are those stat'ed", bucket, name)
	}
	// ReadCompressed keeps the bytes as stored, so that their number is
	// Size: an object stored with Content-Encoding gzip would otherwise be
	// decompressed on the way (the sender refuses those before it opens).
	r, err := g.c.Bucket(bucket).Object(name).Generation(generation).ReadCompressed(true).NewReader(ctx)
	if err != nil && errors.Is(err, storage.ErrObjectNotExist) {
		// The generation stat'ed is gone: replaced, unless the object is.
		if live, lerr := g.c.Bucket(bucket).Object(name).Attrs(ctx); lerr == nil {
			return nil, fmt.Errorf("attachments.Open gs://%s/%s: %w: it is now at generation %d, not %d", bucket, name, ErrChanged, live.Generation, generation)
		}
	}
	if err != nil {
		return nil, wrap("attachments.Open", bucket, name, err)
	}
	return &sized{r: r, bucket: bucket, name: name, want: size}, nil
}

// Delete deletes generation of bucket/name, and nothing if the object has
// since become another generation. An object already gone is no error.
func (g *GCS) Delete(ctx context.Context, bucket, name string, generation int64) error {
	err := g.c.Bucket(bucket).Object(name).If(storage.Conditions{GenerationMatch: generation}).Delete(ctx)
	if err == nil || errors.Is(err, storage.ErrObjectNotExist) {
		return nil
	}
	return wrap("attachments.Delete", bucket, name, err)
}

// sized checks that a reader yields exactly want bytes.
type sized struct {
	r            *storage.Reader
	bucket, name string
	want, n      int64
}

func (s *sized) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	switch {
	case s.n > s.want:
		return n, fmt.Errorf("attachments: reading gs://%s/%s: %w: more than its %d bytes", s.bucket, s.name, ErrChanged, s.want)
	case errors.Is(err, io.EOF) && s.n != s.want:
		return n, fmt.Errorf("attachments: reading gs://%s/%s: %w: %d bytes, not its %d", s.bucket, s.name, ErrChanged, s.n, s.want)
	case err != nil && !errors.Is(err, io.EOF):
		return n, wrap("attachments: reading", s.bucket, s.name, err)
	}
	return n, err
}

func (s *sized) Close() error { return s.r.Close() }

// wrap classifies a storage error under one of the package's errors.
func wrap(op, bucket, name string, err error) error {
	kind := classify(err)
	if kind == nil {
		return fmt.Errorf("%s gs://%s/%s: %w", op, bucket, name, err)
	}
	return fmt.Errorf("%s gs://%s/%s: %w: %w", op, bucket, name, kind, err)
}

func classify(err error) error {
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return ErrNotFound
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		switch {
		case ge.Code == http.StatusNotFound:
			return ErrNotFound
		case ge.Code == http.StatusUnauthorized || ge.Code == http.StatusForbidden:
			return ErrDenied
		case ge.Code == http.StatusPreconditionFailed:
			return ErrChanged
		case ge.Code == http.StatusTooManyRequests || ge.Code >= 500, ge.Code == http.StatusRequestTimeout:
			return ErrUnavailable
		}
		return nil
	}
	var ue *url.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF) {
		// No answer, or an answer cut short: the network, not the object.
		return ErrUnavailable
	}
	return nil
}
