// Package gmail sends a composed message through the Gmail API as one
// account, and classifies every way that can fail into the relay's result
// codes under the retry contract (DESIGN §3, §5): what is retried, what is
// final, and what is ambiguous because the message may have gone out.
package gmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"

	"golang.org/x/oauth2"
	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// ResumableChunk is the piece a resumable upload sends per request. The
// library holds one chunk in memory per large send, so this is 4 MiB rather
// than its default 16 MiB; it must be a multiple of
// googleapi.MinUploadChunkSize (256 KiB).
const ResumableChunk = 4 << 20

// ResumableAbove is the largest message Send makes one multipart request
// of; from ResumableChunk bytes on it is a resumable upload, as the client
// library uploads a message that fills its chunk.
const ResumableAbove = ResumableChunk - 1

// MaxMessageSize is Gmail's limit for one message.
const MaxMessageSize = 35 << 20

// Client builds per-account Gmail services that share one transport.
type Client struct {
	endpoint string
	base     http.RoundTripper
}

// New returns a Client. endpoint "" means Google; base nil means a clone of
// http.DefaultTransport that keeps enough idle connections to Gmail.
func New(endpoint string, base http.RoundTripper) *Client {
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Every send goes to the one Gmail host; the default of two idle
		// connections per host would make concurrent sends open (and
		// handshake) a new connection most of the time.
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 128
		base = t
	}
	return &Client{endpoint: endpoint, base: base}
}

// Mailbox is one account's Gmail service. Callers keep one per account, so
// that its connections and access token are reused across messages.
type Mailbox struct {
	svc *gmailapi.Service
}

// Mailbox returns the Mailbox that authenticates with ts.
func (c *Client) Mailbox(ctx context.Context, ts oauth2.TokenSource) (*Mailbox, error) {
	hc := &http.Client{Transport: &oauth2.Transport{Source: ts, Base: lastRequestWatcher{base: c.base}}}
	opts := []option.ClientOption{option.WithHTTPClient(hc)}
	if c.endpoint != "" {
		opts = append(opts, option.WithEndpoint(c.endpoint))
	}
	svc, err := gmailapi.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gmail.Mailbox: %w", err)
	}
	return &Mailbox{svc: svc}, nil
}

// Sent is Gmail's answer to a send.
type Sent struct {
	ID       string
	ThreadID string
}

// Send sends raw as the authenticated user ("me") through the upload
// endpoint, in the thread threadID if it is not empty. The client library
// makes one multipart request for a message shorter than ResumableChunk and
// a resumable upload in ResumableChunk pieces otherwise; a resumable upload
// resends a piece whose answer was lost, and Gmail answers a repeated last
// piece with the message it already sent rather than sending it twice.
//
// The returned error is classified with Classify. ErrBodySent wraps a
// failure after Gmail received the whole message and before it answered.
// A 2xx answer is a send even if it cannot be read: calling it a failure
// would send the message again. The IDs are then empty.
func Send(ctx context.Context, mb *Mailbox, raw []byte, threadID string) (*Sent, error) {
	// With a chunk size the library copies the message into a buffer of
	// that size before it looks at the length, 4 MiB held for the whole
	// call even for a 10 KB message; a message that fits in one chunk goes
	// with ChunkSize(0), which is the same multipart request streamed from
	// raw (and a bytes.Reader lets the library rewind it).
	chunk := ResumableChunk
	if len(raw) < ResumableChunk {
		chunk = 0
	}
	return send(ctx, "gmail.Send", mb, bytes.NewReader(raw), int64(len(raw)), chunk, threadID)
}

// SendReader is Send for a message of size bytes read from r as the upload
// goes, for a message too large to hold (attachments streamed from Cloud
// Storage): at most one ResumableChunk of it is in memory at a time. size
// is the message's length, refused over MaxMessageSize before r is read.
// Each call reads r once, so a caller that calls again after a failure (a
// 401 renewed, a rate limit waited out) opens a new reader.
//
// Unlike Send, it always buffers a chunk before sending it, even for a
// small message: the library's streamed multipart request
// (googleapi.ChunkSize(0)) closes its MIME structure before it reports a
// read error, so a reader failing mid-message would hand Gmail a body that
// looks complete around a truncated message (internal/gensupport
// newMultipartReader, google.golang.org/api v0.309.0; the sandbox stored
// one, TestAttachmentFailures). Buffered, a message that fits one chunk is
// sent only once read to its end, and a larger one's last piece only after
// it: an error reading r sends nothing, and is never ambiguous. The error
// from r is in the returned one's chain.
func SendReader(ctx context.Context, mb *Mailbox, r io.Reader, size int64, threadID string) (*Sent, error) {
	return send(ctx, "gmail.SendReader", mb, r, size, ResumableChunk, threadID)
}

func send(ctx context.Context, op string, mb *Mailbox, r io.Reader, size int64, chunk int, threadID string) (*Sent, error) {
	if size > MaxMessageSize {
		return nil, fmt.Errorf("%s: %w", op, &TooLargeError{Size: int(size)})
	}
	var st sendState
	ctx = context.WithValue(ctx, sendStateKey{}, &st)
	out, err := mb.svc.Users.Messages.Send("me", &gmailapi.Message{ThreadId: threadID}).
		Media(r, googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(chunk)).
		Fields("id", "threadId").Context(ctx).Do()
	switch {
	case err == nil:
		return &Sent{ID: out.Id, ThreadID: out.ThreadId}, nil
	case st.accepted.Load():
		return &Sent{}, nil
	case st.unanswered.Load() && !hasStatus(err):
		err = &bodySentError{err: err}
	}
	return nil, fmt.Errorf("%s: %w", op, err)
}

// sendState is what lastRequestWatcher saw of one Send's last request.
type sendState struct {
	// unanswered: a last request was written whole and got no response.
	unanswered atomic.Bool
	// accepted: a last request got a 2xx response.
	accepted atomic.Bool
}

type sendStateKey struct{}

// lastRequestWatcher records, for the Send whose context a request carries,
// what became of the request that hands Gmail the end of the message.
//
// Only that request can leave a send ambiguous. Gmail sends the message
// when it has all of it: with a multipart upload that is the one request;
// with a resumable upload, the request opening the session carries only
// metadata, and a piece before the last one leaves Gmail holding part of a
// message it cannot send yet (an abandoned session expires unsent). So a
// failure of any earlier request, even after its body was written, is safe
// to retry; a failure of the last one after its body was written may follow
// a send.
type lastRequestWatcher struct{ base http.RoundTripper }

func (w lastRequestWatcher) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(sendStateKey{}).(*sendState)
	if st == nil || !completesMessage(req) {
		return w.base.RoundTrip(req)
	}
	var wrote atomic.Bool
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})
	res, err := w.base.RoundTrip(req.WithContext(ctx))
	switch {
	case err == nil && res.StatusCode >= 200 && res.StatusCode < 300:
		st.accepted.Store(true)
	case err != nil && wrote.Load():
		// http.Transport reports a failed round trip only once its writer
		// is done, so wrote is final here.
		st.unanswered.Store(true)
	}
	return res, err
}

// completesMessage reports whether req hands Gmail the end of a message: a
// multipart upload, or the piece of a resumable upload whose Content-Range
// names the total ("bytes 0-9/10", or "bytes */10" when the pieces before
// it already hold every byte). Earlier pieces say "/*".
func completesMessage(req *http.Request) bool {
	if req.URL.Query().Get("uploadType") == "multipart" {
		return true
	}
	cr := req.Header.Get("Content-Range")
	return cr != "" && !strings.HasSuffix(cr, "/*")
}

// hasStatus reports whether Gmail answered at all.
func hasStatus(err error) bool {
	var ge *googleapi.Error
	var re *oauth2.RetrieveError
	return errors.As(err, &ge) || errors.As(err, &re)
}

// ErrBodySent marks a failure after the request body was fully written and
// before any answer: Gmail may or may not have sent the message.
var ErrBodySent = errors.New("gmail: the request was sent but no answer came")

type bodySentError struct{ err error }

func (e *bodySentError) Error() string { return ErrBodySent.Error() + ": " + e.err.Error() }
func (e *bodySentError) Unwrap() []error {
	return []error{ErrBodySent, e.err}
}

// TooLargeError reports a message over Gmail's size limit.
type TooLargeError struct{ Size int }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the message is %d bytes; Gmail accepts at most %d (35 MB)", e.Size, MaxMessageSize)
}
