// Package gmail sends a composed message through the Gmail API as one
// account, and classifies every way that can fail into the relay's result
// codes under the retry contract (DESIGN §3, §5): what is retried, what is
// final, and what is ambiguous because the message may have gone out.
package gmail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/oauth2"
	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/jsonscan"
)

// ResumableAbove is the raw size above which Send uses a resumable upload.
const ResumableAbove = 5 << 20

// ResumableChunk is the piece a resumable upload sends per request: a
// multiple of googleapi.MinUploadChunkSize (256 KiB), and 4 MiB of memory
// per large send where the library's default would take 16 MiB.
const ResumableChunk = 4 << 20

// MaxMessageSize is Gmail's limit for one message.
const MaxMessageSize = 35 << 20

// Client builds per-account Gmail services that share one transport.
type Client struct {
	endpoint string
	base     http.RoundTripper
}

// New returns a Client. endpoint "" means Google; base nil means a tuned
// clone of http.DefaultTransport.
func New(endpoint string, base http.RoundTripper) *Client {
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 128
		// Room for the header and a whole ordinary message, so that a
		// request leaves in one write system call rather than one per 4 KiB
		// (on loopback a write costs tens of microseconds).
		t.WriteBufferSize = 64 << 10
		base = t
	}
	return &Client{endpoint: endpoint, base: base}
}

// Mailbox is one account's Gmail: the client library's service, for
// resumable uploads, and the token source and transport under it, which
// Send uses directly for ordinary messages (see sendMultipart). Callers
// keep one per account: building it per message is measurable waste.
type Mailbox struct {
	svc  *gmailapi.Service
	ts   oauth2.TokenSource
	base http.RoundTripper
	// upload is the multipart upload URL with its fixed query, resolved
	// once from the service's base path as the library resolves it.
	upload string
	// post is a POST to upload, for each send to copy: parsing the URL
	// and building the request afresh was 1.5% of a delivery. Its URL is
	// shared by the copies, which a RoundTripper may not modify.
	post *http.Request
}

// Mailbox returns the Mailbox that authenticates with ts.
func (c *Client) Mailbox(ctx context.Context, ts oauth2.TokenSource) (*Mailbox, error) {
	hc := &http.Client{Transport: &oauth2.Transport{Source: ts, Base: c.base}}
	opts := []option.ClientOption{option.WithHTTPClient(hc)}
	if c.endpoint != "" {
		opts = append(opts, option.WithEndpoint(c.endpoint))
	}
	svc, err := gmailapi.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gmail.Mailbox: %w", err)
	}
	u, err := url.Parse(svc.BasePath)
	if err != nil {
		return nil, fmt.Errorf("gmail.Mailbox: base path %q: %w", svc.BasePath, err)
	}
	// An absolute path, as the library's "/upload/gmail/v1/..." resolves
	// against the base path; the query in the order url.Values encodes it.
	u.Path, u.RawPath = uploadPath, ""
	u.RawQuery = "alt=json&fields=id%2CthreadId&prettyPrint=false&uploadType=multipart"
	upload := u.String()
	post, err := http.NewRequest(http.MethodPost, upload, nil)
	if err != nil {
		return nil, fmt.Errorf("gmail.Mailbox: upload URL %q: %w", upload, err)
	}
	return &Mailbox{svc: svc, ts: ts, base: c.base, upload: upload, post: post}, nil
}

// uploadPath is users.messages.send's upload path for the authenticated user.
const uploadPath = "/upload/gmail/v1/users/me/messages/send"

// Sent is Gmail's answer to a send.
type Sent struct {
	ID       string
	ThreadID string
}

// Send sends raw as the authenticated user ("me") through the upload
// endpoint: up to ResumableAbove as one multipart request, above it as a
// resumable upload in ResumableChunk pieces.
//
// Never the JSON send with base64 "raw": the client library marshals that
// string and then compacts the marshalled bytes again, which cost more CPU
// than all the rest of a delivery (154 µs of 918 µs for a 10 KB message).
// Large messages stay resumable because after a reset the library asks
// Gmail how far the upload got and gets the answer, where one request
// would leave the send ambiguous. The returned error is classified with
// Classify; ErrBodySent wraps failures that happened after the whole
// request body was written.
func Send(ctx context.Context, mb *Mailbox, raw []byte, threadID string) (*Sent, error) {
	if len(raw) > MaxMessageSize {
		return nil, fmt.Errorf("gmail.Send: %w", &TooLargeError{Size: len(raw)})
	}
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})
	var sent *Sent
	var err error
	if len(raw) > ResumableAbove {
		sent, err = mb.sendResumable(ctx, raw, threadID)
	} else {
		sent, err = mb.sendMultipart(ctx, raw, threadID, &wrote)
	}
	if err != nil {
		if wrote.Load() && !hasStatus(err) {
			err = &bodySentError{err: err}
		}
		return nil, fmt.Errorf("gmail.Send: %w", err)
	}
	return sent, nil
}

// sendResumable sends through the client library's resumable upload, which
// resumes a piece after a reset on its own. The chunk is small because the
// library copies each chunk into a buffer of that size.
func (mb *Mailbox) sendResumable(ctx context.Context, raw []byte, threadID string) (*Sent, error) {
	out, err := mb.svc.Users.Messages.Send("me", &gmailapi.Message{ThreadId: threadID}).
		Context(ctx).Fields("id", "threadId").
		Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(ResumableChunk)).
		Do()
	if err != nil {
		return nil, err
	}
	return &Sent{ID: out.Id, ThreadID: out.ThreadId}, nil
}

// sendMultipart makes the request the client library makes for a
// single-chunk upload (uploadType=multipart: the Message resource as JSON,
// then the message) and reads the answer as the library does, with
// googleapi.CheckResponse. It writes the body into one buffer itself
// because the library's way cost a third of a delivery's CPU: a goroutine
// and an io.Pipe per request feeding a multipart.Writer, the metadata
// through encoding/json, the URL resolved and expanded twice, and the
// answer decoded by reflection (BenchmarkMultipart against the library's
// path in this package's tests).
//
// wrote is set once the transport has written the whole request; only then
// is the body's buffer known to be free for the next send.
func (mb *Mailbox) sendMultipart(ctx context.Context, raw []byte, threadID string, wrote *atomic.Bool) (*Sent, error) {
	meta := []byte("{}")
	if threadID != "" {
		var err error
		if meta, err = json.Marshal(struct {
			ThreadID string `json:"threadId"`
		}{threadID}); err != nil {
			return nil, fmt.Errorf("encoding the thread ID: %w", err)
		}
	}
	// A random boundary, as multipart.Writer makes: the message is the
	// publisher's, and must not be able to end its part early.
	boundary := rand.Text()
	pooled := bodyPool.Get().(*[]byte)
	body := appendMultipartBody((*pooled)[:0], meta, raw, boundary)
	defer func() {
		// A transport that answered before it finished writing (a server
		// may answer early) can still be reading the body; that buffer is
		// left to the collector.
		if wrote.Load() && cap(body) <= maxPooledBody {
			*pooled = body[:0]
			bodyPool.Put(pooled)
		}
	}()
	// The body as http.NewRequest sets up a *bytes.Reader: a
	// Content-Length, the header and body written together, and GetBody to
	// replay it if a reused connection turns out to be closed before
	// anything was written.
	req := mb.post.WithContext(ctx)
	br := bytes.NewReader(body)
	snapshot := *br
	req.Body, req.ContentLength = io.NopCloser(br), int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) {
		r := snapshot
		return io.NopCloser(&r), nil
	}
	// What oauth2.Transport under an http.Client would do, without the two
	// copies of the request and its header they make per request (one to
	// add the token, one in case of a redirect, which a send never gets):
	// 4% of a delivery's CPU. Errors are wrapped as the client wraps them.
	tok, err := mb.ts.Token()
	if err != nil {
		return nil, &url.Error{Op: "Post", URL: mb.upload, Err: err}
	}
	h := make(http.Header, 4)
	for k, v := range libraryHeaders() {
		h[k] = v // never modified in place, so shared
	}
	h["Content-Type"] = []string{"multipart/related; boundary=" + boundary}
	h["Authorization"] = []string{tok.Type() + " " + tok.AccessToken}
	req.Header = h
	res, err := mb.base.RoundTrip(req)
	if err != nil {
		return nil, &url.Error{Op: "Post", URL: mb.upload, Err: err}
	}
	defer func() {
		// Drained, so that the connection is reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxAnswer))
		_ = res.Body.Close()
	}()
	if err := googleapi.CheckResponse(res); err != nil {
		return nil, err
	}
	// A 2xx is a send, whatever its body: Gmail has accepted the message,
	// and calling an unreadable answer a failure would send it again. The
	// IDs are then left empty.
	var out Sent
	if data, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer)); err == nil {
		out = readSent(data)
	}
	return &out, nil
}

// readSent reads the IDs from Gmail's answer to a send, a Message resource,
// as json.Unmarshal into {ID `json:"id"`, ThreadID `json:"threadId"`} would:
// names matched without regard to case, other members skipped, the last of
// a repeated member kept. An answer that is not such an object gives no
// IDs. It replaced json.Unmarshal, whose reflection was 3% of a delivery's
// CPU for two short strings.
func readSent(data []byte) Sent {
	s := jsonscan.New(data)
	defer s.Release()
	var out Sent
	if k, err := s.Next(); err != nil || k != jsonscan.BeginObject {
		return Sent{}
	}
	for s.More() {
		if k, err := s.Next(); err != nil || k != jsonscan.String {
			return Sent{}
		}
		var dst *string
		switch key := s.Value(); {
		case bytes.EqualFold(key, []byte("id")):
			dst = &out.ID
		case bytes.EqualFold(key, []byte("threadId")):
			dst = &out.ThreadID
		}
		k, err := s.Next()
		if err != nil {
			return Sent{}
		}
		switch {
		case dst == nil:
			if err := s.SkipRest(k); err != nil {
				return Sent{}
			}
		case k == jsonscan.String:
			*dst = string(s.Value())
		case k == jsonscan.Null:
			// Unmarshal leaves a field alone for null.
		default:
			return Sent{}
		}
	}
	if k, err := s.Next(); err != nil || k != jsonscan.EndObject {
		return Sent{}
	}
	if _, err := s.Next(); err != io.EOF {
		return Sent{} // more than one value
	}
	return out
}

// bodyPool recycles multipart bodies: a fresh one per message was, after
// the request itself, the largest allocation of a delivery.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// maxPooledBody is the largest body buffer kept for reuse, so that one large
// message does not pin its memory.
const maxPooledBody = 1 << 20

// appendMultipartBody appends the multipart/related body of an upload to
// body: the Message resource meta, then the message raw, as
// multipart.Writer frames them.
func appendMultipartBody(body, meta, raw []byte, boundary string) []byte {
	body = slices.Grow(body, len(raw)+len(meta)+3*len(boundary)+len(partJSON)+len(partMessage)+16)
	body = append(append(append(body, "--"...), boundary...), partJSON...)
	body = append(body, meta...)
	body = append(append(append(body, "\r\n--"...), boundary...), partMessage...)
	body = append(body, raw...)
	return append(append(append(body, "\r\n--"...), boundary...), "--\r\n"...)
}

// The multipart body's part headers, as multipart.Writer writes them.
const (
	partJSON    = "\r\nContent-Type: application/json\r\n\r\n"
	partMessage = "\r\nContent-Type: message/rfc822\r\n\r\n"
)

// maxAnswer bounds what Send reads of Gmail's answer to a send: a Message
// resource with two fields.
const maxAnswer = 64 << 10

// libraryHeaders are the identifying headers the client library sends
// (User-Agent and x-goog-api-client, which name its version and Go's),
// taken once from a request the library builds and a transport that
// refuses to send it, so that they follow the library's version.
var libraryHeaders = sync.OnceValue(func() http.Header {
	var h http.Header
	refuse := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		h = r.Header.Clone()
		return nil, errors.New("not sent")
	})
	svc, err := gmailapi.NewService(context.Background(),
		option.WithHTTPClient(&http.Client{Transport: refuse}), option.WithEndpoint("http://gmail.invalid/"))
	if err == nil {
		_, _ = svc.Users.Messages.Send("me", &gmailapi.Message{}).
			Media(bytes.NewReader(nil), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(0)).Do()
	}
	out := http.Header{"User-Agent": {googleapi.UserAgent}}
	for _, k := range []string{"User-Agent", "X-Goog-Api-Client"} {
		if v := h.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	return out
})

// roundTripFunc is an http.RoundTripper in a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

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
