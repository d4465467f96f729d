package gmail

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// maxSizedBody is the largest streamed body sizedTransport buffers: a
// multipart send of ResumableAbove plus its metadata and boundaries.
const maxSizedBody = ResumableAbove + 64<<10

// sizedTransport sends a request whose body has no known length (the client
// library streams a multipart upload through a pipe) with a Content-Length.
//
// Without one, net/http uses chunked encoding and flushes after every chunk,
// and every read from the library's pipe is a chunk: five or more write
// system calls for a 10 KB message, the largest CPU cost of a send after the
// JSON encoding this package no longer uses. Buffered, the request goes in
// one or two writes. The message is already in memory, so the copy costs
// at most ResumableAbove per send in flight.
type sizedTransport struct {
	base http.RoundTripper
}

var _ http.RoundTripper = sizedTransport{}

// bodyPool recycles the buffers; each goes back when the transport closes
// the request body, which it does once it has no further use for it.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// RoundTrip implements http.RoundTripper.
func (t sizedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength != 0 {
		return t.base.RoundTrip(req)
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := buf.ReadFrom(io.LimitReader(req.Body, maxSizedBody+1))
	if err != nil {
		_ = req.Body.Close()
		putBody(buf)
		return nil, fmt.Errorf("gmail: reading the request body: %w", err)
	}
	r2 := *req // a RoundTripper must not change the caller's request
	if buf.Len() > maxSizedBody {
		// Larger than any body this package sends: stream the rest as it
		// came, without buffering more.
		r2.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf.Bytes()), req.Body), req.Body}
		return t.base.RoundTrip(&r2)
	}
	_ = req.Body.Close()
	r2.ContentLength = int64(buf.Len())
	r2.Body = &pooledBody{r: bytes.NewReader(buf.Bytes()), buf: buf}
	// Without GetBody net/http does not replay the body on a new
	// connection, which it would not do for a POST anyway.
	r2.GetBody = nil
	return t.base.RoundTrip(&r2)
}

// pooledBody returns its buffer to bodyPool on the first Close. Reads hold
// the lock too: net/http may close a body from another goroutine while its
// write loop is still reading, and the buffer must not be reused under it.
type pooledBody struct {
	mu  sync.Mutex
	r   *bytes.Reader
	buf *bytes.Buffer
}

func (b *pooledBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return 0, io.EOF
	}
	return b.r.Read(p)
}

func (b *pooledBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf != nil {
		b.r.Reset(nil)
		putBody(b.buf)
		b.buf = nil
	}
	return nil
}

// putBody keeps buffers of ordinary messages only, so that one large send
// does not pin megabytes in the pool.
func putBody(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		bodyPool.Put(b)
	}
}
