package gmail

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
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
// JSON encoding this package no longer uses. Buffered in a *bytes.Reader,
// which net/http knows to be in memory, the header and body leave in one
// write. The message is already in memory, so the copy costs at most
// ResumableAbove per send in flight.
type sizedTransport struct {
	base http.RoundTripper
}

var _ http.RoundTripper = sizedTransport{}

// sizeHintKey carries the message size from Send to the transport, so that
// the body buffer is allocated once at its final size.
type sizeHintKey struct{}

// bodyOverhead covers what the multipart body adds to the message: the
// boundaries, the part headers and the JSON metadata.
const bodyOverhead = 4 << 10

// RoundTrip implements http.RoundTripper.
func (t sizedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength != 0 {
		return t.base.RoundTrip(req)
	}
	var buf bytes.Buffer
	if n, ok := req.Context().Value(sizeHintKey{}).(int); ok && n <= maxSizedBody {
		buf.Grow(n + bodyOverhead)
	}
	_, err := buf.ReadFrom(io.LimitReader(req.Body, maxSizedBody+1))
	if err != nil {
		_ = req.Body.Close()
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
	body := buf.Bytes()
	r2.ContentLength = int64(len(body))
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return t.base.RoundTrip(&r2)
}
