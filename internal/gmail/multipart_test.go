package gmail_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
)

// upload is what a Gmail endpoint saw of one multipart upload.
type upload struct {
	Method, Path string
	Query        map[string][]string
	Header       map[string]string // the headers both clients must agree on
	MediaType    string
	Length       bool // sent with a Content-Length
	Chunked      bool // sent with chunked transfer encoding
	Parts        []part
}

type part struct {
	Header map[string][]string
	Body   []byte
}

// recorder is a Gmail endpoint that records every upload and answers with
// body (a success if empty).
type recorder struct {
	mu      sync.Mutex
	uploads []upload
	errs    []error
}

func (rec *recorder) serve(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := readUpload(r)
		rec.mu.Lock()
		rec.uploads = append(rec.uploads, u)
		if err != nil {
			rec.errs = append(rec.errs, err)
		}
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		if body == "" {
			body = `{"id":"18f0000000000001","threadId":"18f0000000000002"}`
		}
		_, _ = io.WriteString(w, body)
	}
}

func readUpload(r *http.Request) (upload, error) {
	u := upload{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: map[string]string{}}
	for _, h := range []string{"Authorization", "User-Agent", "X-Goog-Api-Client"} {
		u.Header[h] = r.Header.Get(h)
	}
	u.Length, u.Chunked = r.ContentLength > 0, slices.Contains(r.TransferEncoding, "chunked")
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return u, err
	}
	u.MediaType = mt
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return u, nil
		}
		if err != nil {
			return u, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return u, err
		}
		if p.Header.Get("Content-Type") == "application/json" {
			// The same resource, however its JSON is spaced.
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				return u, err
			}
			b, _ = json.Marshal(v)
		}
		u.Parts = append(u.Parts, part{Header: p.Header, Body: b})
	}
}

func (rec *recorder) take(t *testing.T) upload {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) > 0 {
		t.Fatalf("reading the upload: %v", rec.errs)
	}
	if len(rec.uploads) != 1 {
		t.Fatalf("%d uploads; want 1", len(rec.uploads))
	}
	u := rec.uploads[0]
	rec.uploads = nil
	return u
}

var staticToken = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.test", Expiry: time.Now().Add(24 * time.Hour)})

// librarySend is the multipart send as the client library makes it: what
// gmail.Send did before it wrote the request itself, and its oracle.
func librarySend(ctx context.Context, endpoint string, raw []byte, threadID string) (*gmailapi.Message, error) {
	svc, err := gmailapi.NewService(ctx, option.WithEndpoint(endpoint),
		option.WithHTTPClient(&http.Client{Transport: &oauth2.Transport{Source: staticToken}}))
	if err != nil {
		return nil, err
	}
	return svc.Users.Messages.Send("me", &gmailapi.Message{ThreadId: threadID}).
		Context(ctx).Fields("id", "threadId").
		Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(0)).
		Do()
}

// TestMultipartMatchesLibrary: the request Send writes for an ordinary
// message is the client library's multipart upload: the same method, path,
// query, authentication and identifying headers, and the same two parts
// (the Message resource, then the message byte for byte), with a
// Content-Length instead of chunked encoding. Both answers read the same.
func TestMultipartMatchesLibrary(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		raw      []byte
		threadID string
	}{
		{"no thread", message(t, 4<<10), ""},
		{"thread", message(t, 10<<10), "18f4a2b3c5d6e7f8"},
		{"thread needing JSON escapes", message(t, 1<<10), `a"b\c<d>`},
		{"no trailing line break", []byte("To: bob@example.org\r\nSubject: x\r\n\r\nno CRLF at the end"), ""},
		{"a part boundary of its own", []byte("To: bob@example.org\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nbody\r\n--x--\r\n"), ""},
		{"empty", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			srv := httptest.NewServer(rec.serve(""))
			t.Cleanup(srv.Close)
			ctx := context.Background()

			want, err := librarySend(ctx, srv.URL+"/", c.raw, c.threadID)
			if err != nil {
				t.Fatalf("library: %v", err)
			}
			wantUp := rec.take(t)

			mb, err := gmail.New(srv.URL+"/", nil).Mailbox(ctx, staticToken)
			if err != nil {
				t.Fatal(err)
			}
			got, err := gmail.Send(ctx, mb, c.raw, c.threadID)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			gotUp := rec.take(t)

			// The library streams its body; Send gives its length.
			if !gotUp.Length || gotUp.Chunked {
				t.Errorf("Send's request: Content-Length %v, chunked %v; want a length and no chunking", gotUp.Length, gotUp.Chunked)
			}
			wantUp.Length, wantUp.Chunked = gotUp.Length, gotUp.Chunked
			if !reflect.DeepEqual(gotUp, wantUp) {
				t.Errorf("Send's request differs from the library's:\n got %+v\nwant %+v", summary(gotUp), summary(wantUp))
			}
			if len(gotUp.Parts) == 2 && !bytes.Equal(gotUp.Parts[1].Body, c.raw) && len(c.raw) > 0 {
				t.Errorf("the message part is not the message")
			}
			if got.ID != want.Id || got.ThreadID != want.ThreadId {
				t.Errorf("Send = %+v; the library read %q, %q", got, want.Id, want.ThreadId)
			}
		})
	}
}

// summary is an upload without the message bytes, for a readable diff.
func summary(u upload) upload {
	s := u
	s.Parts = nil
	for _, p := range u.Parts {
		if len(p.Body) > 80 {
			p.Body = append(p.Body[:80:80], "…"...)
		}
		s.Parts = append(s.Parts, p)
	}
	return s
}

// TestSendBoundaries: every request has a boundary of its own, so that a
// publisher's raw message cannot know, and so end, its part early.
func TestSendBoundaries(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mu.Lock()
		seen[params["boundary"]] = true
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"id":"1","threadId":"2"}`)
	}))
	t.Cleanup(srv.Close)
	mb, err := gmail.New(srv.URL+"/", nil).Mailbox(context.Background(), staticToken)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for range n {
		if _, err := gmail.Send(context.Background(), mb, message(t, 512), ""); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != n || seen[""] {
		t.Errorf("%d sends used %d distinct boundaries (%v); want %d", n, len(seen), seen, n)
	}
}

// TestSendUnreadableAnswer: a 2xx is a send even when its body cannot be
// read as a Message: the message went out, so Send reports it sent (with
// no IDs) rather than a failure that would send it again. A 2xx that reads
// is taken as the library takes it.
func TestSendUnreadableAnswer(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		body         string
		id, threadID string
	}{
		{`{"id":"m1","threadId":"t1"}`, "m1", "t1"},
		{`{"id":"m1","threadId":"t1","labelIds":["SENT"]}`, "m1", "t1"},
		{`not json`, "", ""},
		{`{"id":`, "", ""},
	} {
		rec := &recorder{}
		srv := httptest.NewServer(rec.serve(c.body))
		mb, err := gmail.New(srv.URL+"/", nil).Mailbox(context.Background(), staticToken)
		if err != nil {
			t.Fatal(err)
		}
		sent, err := gmail.Send(context.Background(), mb, message(t, 512), "")
		srv.Close()
		if err != nil {
			t.Errorf("answer %q: Send = %v; want it sent", c.body, err)
			continue
		}
		if sent.ID != c.id || sent.ThreadID != c.threadID {
			t.Errorf("answer %q: Send = %+v; want %q, %q", c.body, sent, c.id, c.threadID)
		}
	}
}

// BenchmarkMultipart: one ordinary (10 KB) send as Send makes it, and as the
// client library makes it (gmail.LibrarySend), on the same Mailbox, against
// an in-process endpoint that reads the body and answers (its CPU is in
// both figures alike).
func BenchmarkMultipart(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_, _ = io.WriteString(w, `{"id":"18f0000000000001","threadId":"18f0000000000002"}`)
	}))
	b.Cleanup(srv.Close)
	raw := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=+/\r\n"), 150)
	ctx := context.Background()
	mb, err := gmail.New(srv.URL+"/", nil).Mailbox(ctx, staticToken)
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, send func() error) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		b.SetParallelism(40) // × GOMAXPROCS: the sender's 80 in flight
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := send(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("send=relay", func(b *testing.B) {
		run(b, func() error { _, err := gmail.Send(ctx, mb, raw, ""); return err })
	})
	b.Run("send=library", func(b *testing.B) {
		run(b, func() error { _, err := gmail.LibrarySend(ctx, mb, raw); return err })
	})
}

// TestSendEarlyAnswerKeepsBody: a transport may hand back the answer while
// it is still writing the body (HTTP/2 does, when a server answers early),
// so Send must not give that body's buffer to the next send. The transport
// here answers at once and reads each body only later; the first body must
// still hold the first message, not the second's bytes.
func TestSendEarlyAnswerKeepsBody(t *testing.T) {
	t.Parallel()
	tr := &lateReader{release: make(chan struct{})}
	mb, err := gmail.New("http://gmail.test/", tr).Mailbox(context.Background(), staticToken)
	if err != nil {
		t.Fatal(err)
	}
	// Neither byte appears in the multipart framing or the boundary.
	for _, b := range []string{"q", "z"} {
		if _, err := gmail.Send(context.Background(), mb, bytes.Repeat([]byte(b), 64<<10), ""); err != nil {
			t.Fatal(err)
		}
	}
	close(tr.release)
	tr.wg.Wait()
	if len(tr.bodies) != 2 {
		t.Fatalf("%d bodies read; want 2", len(tr.bodies))
	}
	if first := tr.bodies[0]; bytes.IndexByte(first, 'z') >= 0 || bytes.Count(first, []byte("q")) != 64<<10 {
		t.Errorf("the first upload carries %d of its own bytes and %d of the second message's: its buffer was reused while it was being read",
			bytes.Count(first, []byte("q")), bytes.Count(first, []byte("z")))
	}
}

// lateReader answers every request at once and reads its body only after
// release, in order.
type lateReader struct {
	release chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	bodies  [][]byte
	prev    chan struct{}
}

func (l *lateReader) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	prev, done := l.prev, make(chan struct{})
	l.prev = done
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(done)
		<-l.release
		if prev != nil {
			<-prev
		}
		b, _ := io.ReadAll(r.Body)
		_ = r.Body.Close()
		l.mu.Lock()
		l.bodies = append(l.bodies, b)
		l.mu.Unlock()
	}()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"id":"1","threadId":"1"}`)), Request: r}, nil
}

// replayCheck is a transport that reads each request's body, then its
// GetBody copy, and answers as Gmail does.
type replayCheck struct {
	mu       sync.Mutex
	body     [][]byte
	replayed [][]byte
	lengths  []int64
	urls     []string
}

func (rc *replayCheck) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	if r.GetBody == nil {
		return nil, errors.New("no GetBody: the transport could not replay the body")
	}
	again, err := r.GetBody()
	if err != nil {
		return nil, err
	}
	replayed, err := io.ReadAll(again)
	if err != nil {
		return nil, err
	}
	rc.mu.Lock()
	rc.body, rc.replayed = append(rc.body, body), append(rc.replayed, replayed)
	rc.lengths, rc.urls = append(rc.lengths, r.ContentLength), append(rc.urls, r.URL.String())
	rc.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"id":"m1","threadId":"t1"}`)), Request: r}, nil
}

// TestSendRequestReplayable: each send's request, built from the Mailbox's
// template, has its own body, a Content-Length, a GetBody that gives the
// same bytes again (so net/http can resend it on a reused connection that
// was already closed), and the template's URL unchanged.
func TestSendRequestReplayable(t *testing.T) {
	t.Parallel()
	rc := &replayCheck{}
	mb, err := gmail.New("http://gmail.test/", rc).Mailbox(context.Background(), staticToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"q", "z"} {
		if _, err := gmail.Send(context.Background(), mb, bytes.Repeat([]byte(b), 1000), ""); err != nil {
			t.Fatal(err)
		}
	}
	if len(rc.body) != 2 {
		t.Fatalf("%d requests; want 2", len(rc.body))
	}
	for i, b := range []string{"q", "z"} {
		if bytes.Count(rc.body[i], []byte(b)) != 1000 {
			t.Errorf("request %d does not carry its own message", i)
		}
		if !bytes.Equal(rc.body[i], rc.replayed[i]) {
			t.Errorf("request %d: GetBody gives other bytes than Body", i)
		}
		if rc.lengths[i] != int64(len(rc.body[i])) {
			t.Errorf("request %d: Content-Length %d for a %d-byte body", i, rc.lengths[i], len(rc.body[i]))
		}
		if want := "http://gmail.test/upload/gmail/v1/users/me/messages/send?alt=json&fields=id%2CthreadId&prettyPrint=false&uploadType=multipart"; rc.urls[i] != want {
			t.Errorf("request %d went to %s; want %s", i, rc.urls[i], want)
		}
	}
}
