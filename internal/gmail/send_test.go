package gmail_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

const account = "alice@example.com"

// mailbox is a Gmail service for account against a fresh sandbox.
func mailbox(t *testing.T) (*sendertest.Env, *gmail.Mailbox) {
	t.Helper()
	e := sendertest.New(t, sendertest.Options{})
	rt := e.Consent(account)
	ts := e.OAuth.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt})
	svc, err := gmail.New(e.URL+"/", nil).Mailbox(context.Background(), ts)
	if err != nil {
		t.Fatal(err)
	}
	return e, svc
}

// message returns an RFC 5322 message of about size bytes.
func message(t *testing.T, size int) []byte {
	t.Helper()
	head := "From: " + account + "\r\nTo: bob@example.org\r\nSubject: size test\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	// base64 lines of 76 characters, and CRLF, carry 57 bytes in 78.
	data := make([]byte, max(size-len(head), 0)/78*57)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(head)
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// sendContext is the context of a send that meets fault. A hang lasts until
// the client gives up, which it does as soon as the sandbox has stored the
// message (the warm-up is the first); every other send gets an answer, and
// a generous bound.
func sendContext(t *testing.T, e *sendertest.Env, fault sandbox.Fault) context.Context {
	t.Helper()
	if fault == sandbox.HangAfterBody {
		return e.CancelWhenStored(context.Background(), 2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestSendForms: every size goes through the upload endpoint (never the
// JSON send): one multipart request below ResumableChunk, a resumable
// session in ResumableChunk pieces from there, and Gmail gets the bytes
// unchanged and the thread ID.
func TestSendForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name           string
		size           int
		simple, upload int // requests per route
	}{
		{"small", 4 << 10, 0, 1},
		{"multipart at the limit", gmail.ResumableAbove, 0, 1},
		// The session, the full piece, then an empty piece that gives the
		// total: the library learns the end only on reading past it.
		{"resumable, one chunk exactly", gmail.ResumableChunk, 0, 3},
		{"resumable", gmail.ResumableChunk + 1024, 0, 3}, // the session, then two pieces
		{"resumable, 20 MB", 20 << 20, 0, 1 + 5},         // the session, five pieces
		{"just under Gmail's limit", gmail.MaxMessageSize - 1024, 0, 1 + 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.size > 16<<20 {
				testenv.Integration(t) // 20 MB: slow under -race
			}
			e, svc := mailbox(t)
			raw := message(t, c.size)
			if c.size == gmail.ResumableChunk || c.size == gmail.ResumableAbove {
				raw = exactly(t, raw, c.size)
			}
			sent, err := gmail.Send(context.Background(), svc, raw, "18f4a2b3c5d6e7f8")
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			out := e.Outbox()
			if len(out) != 1 {
				t.Fatalf("outbox holds %d messages", len(out))
			}
			if sent.ID != out[0].ID || sent.ThreadID != "18f4a2b3c5d6e7f8" || out[0].ThreadID != sent.ThreadID {
				t.Errorf("Send = %+v; the sandbox stored %+v", sent, out[0])
			}
			got, err := os.ReadFile(out[0].Path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("Gmail got %d bytes that differ from the %d sent", len(got), len(raw))
			}
			if s, u := e.Requests.Count(sendertest.RouteSend), e.Requests.Count(sendertest.RouteUpload); s != c.simple || u != c.upload {
				t.Errorf("requests: %d simple, %d upload; want %d and %d", s, u, c.simple, c.upload)
			}
		})
	}
}

// exactly pads raw, a message from message, to size bytes with line
// breaks (and a space if one byte is left over) after its body.
func exactly(t *testing.T, raw []byte, size int) []byte {
	t.Helper()
	if len(raw) > size {
		t.Fatalf("cannot pad %d bytes to %d", len(raw), size)
	}
	n := size - len(raw)
	raw = append(raw, bytes.Repeat([]byte("\r\n"), n/2)...)
	if n%2 == 1 {
		raw = append(raw, ' ')
	}
	return raw
}

// TestSendTooLarge: a message over 35 MB is refused before any request.
func TestSendTooLarge(t *testing.T) {
	t.Parallel()
	e, svc := mailbox(t)
	_, err := gmail.Send(context.Background(), svc, make([]byte, gmail.MaxMessageSize+1), "")
	var tl *gmail.TooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("Send = %v; want a TooLargeError", err)
	}
	if f := gmail.Classify(err, time.Now()); f.Code != gmail.CodeInvalidRequest || f.Retryable {
		t.Errorf("Classify = %+v", f)
	}
	if n := e.Requests.Gmail(); n != 0 {
		t.Errorf("%d requests reached Gmail", n)
	}
}

// TestSendFaults classifies what the sandbox answers with Google's exact
// bodies, through the real client, for both forms of the send.
func TestSendFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		fault     sandbox.Fault
		code      gmail.Code
		retryable bool
		ambiguous bool
		stored    bool // the sandbox accepted the message
	}{
		{sandbox.RateLimit429, gmail.CodeRateLimited, true, false, false},
		{sandbox.UserRateLimit403, gmail.CodeRateLimited, true, false, false},
		{sandbox.ServerError500, gmail.CodeGmailError, true, false, false},
		{sandbox.Unavailable503, gmail.CodeGmailError, true, false, false},
		{sandbox.ProjectQuota403, gmail.CodeProjectQuota, true, false, false},
		{sandbox.MailDisabled400, gmail.CodeMailDisabled, false, false, false},
		{sandbox.APIDisabled403, gmail.CodeGmailError, false, false, false},
		{sandbox.HangAfterBody, gmail.CodeGmailError, true, true, true},
		{sandbox.ResetAfterBody, gmail.CodeGmailError, true, true, true},
	}
	// Both sizes are one multipart request; resumable uploads have
	// TestResumableFaults.
	for _, size := range []int{4 << 10, gmail.ResumableAbove} {
		form := "small"
		if size > 1<<20 {
			form = "large"
		}
		for _, c := range cases {
			t.Run(form+"/"+string(c.fault), func(t *testing.T) {
				t.Parallel()
				e, svc := mailbox(t)
				e.Sandbox.SetFaultRetryAfter(90 * time.Second)
				// A first send takes the access token, so the timeout below
				// covers Gmail alone.
				if _, err := gmail.Send(context.Background(), svc, message(t, 1024), ""); err != nil {
					t.Fatal(err)
				}
				if err := e.Sandbox.InjectGmailErrors(account, c.fault, 1); err != nil {
					t.Fatal(err)
				}
				_, err := gmail.Send(sendContext(t, e, c.fault), svc, message(t, size), "")
				if err == nil {
					t.Fatal("Send succeeded through an injected fault")
				}
				now := e.Clock.Now()
				f := gmail.Classify(err, now)
				if f.Code != c.code || f.Retryable != c.retryable || f.Ambiguous != c.ambiguous || f.Unauthorized {
					t.Errorf("Classify(%v) = %+v; want code %s retryable %v ambiguous %v", err, f, c.code, c.retryable, c.ambiguous)
				}
				if got := errors.Is(err, gmail.ErrBodySent); got != c.ambiguous {
					t.Errorf("errors.Is(err, ErrBodySent) = %v", got)
				}
				if c.fault == sandbox.RateLimit429 && !f.RetryAt.Equal(now.Add(90*time.Second)) {
					t.Errorf("RetryAt = %v; want the sandbox's %v", f.RetryAt, now.Add(90*time.Second))
				}
				if c.fault == sandbox.APIDisabled403 && !strings.Contains(f.Message, "https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project=") {
					t.Errorf("message %q lacks the activation link", f.Message)
				}
				want := 1
				if c.stored {
					want = 2
				}
				if n := len(e.Outbox()); n != want {
					t.Errorf("outbox holds %d messages; want %d", n, want)
				}
				if n := e.Requests.Gmail(); n != 2 {
					t.Errorf("Gmail saw %d requests; want 2: the client must not retry on its own", n)
				}
			})
		}
	}
}

// TestSendAuthFailures: a refused access token is Unauthorized (refresh
// once); a revoked grant is invalid_grant (reconnect); neither is ambiguous.
func TestSendAuthFailures(t *testing.T) {
	t.Parallel()
	t.Run("401", func(t *testing.T) {
		t.Parallel()
		e, _ := mailbox(t)
		svc, err := gmail.New(e.URL+"/", nil).Mailbox(context.Background(),
			oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.not-a-token", Expiry: time.Now().Add(time.Hour)}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = gmail.Send(context.Background(), svc, message(t, 1024), "")
		f := gmail.Classify(err, time.Now())
		if !f.Unauthorized || f.Code != gmail.CodeGmailError || !f.Retryable || f.Ambiguous || errors.Is(err, gmail.ErrBodySent) {
			t.Errorf("Classify(%v) = %+v; want Unauthorized", err, f)
		}
	})
	t.Run("invalid_grant", func(t *testing.T) {
		t.Parallel()
		e, svc := mailbox(t)
		e.Sandbox.RevokeAll(account)
		_, err := gmail.Send(context.Background(), svc, message(t, 1024), "")
		f := gmail.Classify(err, time.Now())
		if f.Code != gmail.CodeReauthRequired || f.Unauthorized || f.Retryable || f.Ambiguous {
			t.Errorf("Classify(%v) = %+v; want reauth_required", err, f)
		}
		if n := e.Requests.Gmail(); n != 0 {
			t.Errorf("Gmail saw %d requests; the refresh fails first", n)
		}
	})
}

// TestSendUnreachable: nothing listening is a plain transient failure: no
// body went anywhere, so it is not ambiguous.
func TestSendUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close()
	svc, err := gmail.New(url+"/", nil).Mailbox(context.Background(),
		oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x", Expiry: time.Now().Add(time.Hour)}))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1024, 6 << 20} {
		_, err = gmail.Send(context.Background(), svc, message(t, size), "")
		f := gmail.Classify(err, time.Now())
		if f == nil || f.Ambiguous || !f.Retryable || errors.Is(err, gmail.ErrBodySent) {
			t.Errorf("size %d: Classify(%v) = %+v; want retryable and not ambiguous", size, err, f)
		}
	}
}

// TestResumableFaults: above ResumableAbove the client library resumes a
// piece on its own after a reset. One Send must still leave at most one copy,
// say so when it cannot know, and never report a failure for a message the
// sandbox answered.
func TestResumableFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		fault     sandbox.Fault
		ok        bool // the library resumed and got the answer
		ambiguous bool
		stored    int
	}{
		// The session cannot open: nothing was sent.
		{sandbox.ServerError500, false, false, 0},
		// The final chunk's answer is lost; the library asks again and
		// gets the finished upload, as from Google.
		{sandbox.ResetAfterBody, true, false, 1},
		// No answer at all before the deadline.
		{sandbox.HangAfterBody, false, true, 1},
	}
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			t.Parallel()
			e, svc := mailbox(t)
			if _, err := gmail.Send(context.Background(), svc, message(t, 1024), ""); err != nil {
				t.Fatal(err)
			}
			if err := e.Sandbox.InjectGmailErrors(account, c.fault, 1); err != nil {
				t.Fatal(err)
			}
			sent, err := gmail.Send(sendContext(t, e, c.fault), svc, message(t, gmail.ResumableAbove+gmail.ResumableChunk), "")
			out := e.Outbox()
			if n := len(out) - 1; n != c.stored {
				t.Fatalf("one Send left %d copies in the outbox; want %d", n, c.stored)
			}
			if c.ok {
				if err != nil || sent.ID != out[1].ID {
					t.Fatalf("Send = %+v, %v; want the stored message %s", sent, err, out[1].ID)
				}
				return
			}
			f := gmail.Classify(err, time.Now())
			if f == nil || f.Ambiguous != c.ambiguous || !f.Retryable {
				t.Errorf("Classify(%v) = %+v; want retryable, ambiguous %v", err, f, c.ambiguous)
			}
		})
	}
}

// faultyTransport is http.DefaultTransport's clone with one fault on the
// nth request (counting from 1) that reaches it: either the body is cut
// short while the transport writes it, or the whole request goes and
// Gmail's answer is dropped, as a reset would lose it.
type faultyTransport struct {
	base  http.RoundTripper
	nth   int
	cut   bool // cut the body short; otherwise lose the answer
	mu    sync.Mutex
	count int
}

var errInjected = errors.New("gmail test: injected transport fault")

func (ft *faultyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ft.mu.Lock()
	ft.count++
	hit := ft.count == ft.nth
	ft.mu.Unlock()
	if !hit {
		return ft.base.RoundTrip(req)
	}
	if ft.cut {
		r := req.Clone(req.Context())
		r.Body, r.GetBody = &cutBody{rc: req.Body, left: 1}, nil
		return ft.base.RoundTrip(r)
	}
	res, err := ft.base.RoundTrip(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}
	return nil, errInjected
}

// cutBody fails after left bytes; one is shorter than any body Send makes.
type cutBody struct {
	rc   io.ReadCloser
	left int
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errInjected
	}
	n, err := c.rc.Read(p[:min(len(p), c.left)])
	c.left -= n
	return n, err
}

func (c *cutBody) Close() error { return c.rc.Close() }

// TestSendWhichRequestIsAmbiguous: only a failure after the request that
// hands Gmail the end of the message was written whole is ambiguous (the
// multipart request, or a resumable upload's last piece). A failure while
// any request is being written, or after the session was opened or an
// earlier piece was written, leaves Gmail without a whole message: safe
// to retry, and nothing was sent.
func TestSendWhichRequestIsAmbiguous(t *testing.T) {
	t.Parallel()
	const (
		small = 4 << 10
		large = gmail.ResumableChunk + 1024 // the session, then two pieces
	)
	cases := []struct {
		name      string
		size, nth int
		cut       bool
		ambiguous bool
	}{
		{"multipart, body cut", small, 1, true, false},
		{"multipart, answer lost", small, 1, false, true},
		{"resumable session, body cut", large, 1, true, false},
		{"resumable session, answer lost", large, 1, false, false},
		{"first piece, body cut", large, 2, true, false},
		{"first piece, answer lost", large, 2, false, false},
		{"last piece, body cut", large, 3, true, false},
		{"last piece, answer lost", large, 3, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := sendertest.New(t, sendertest.Options{})
			ts := e.OAuth.TokenSource(context.Background(), &oauth2.Token{RefreshToken: e.Consent(account)})
			ft := &faultyTransport{base: http.DefaultTransport.(*http.Transport).Clone(), nth: c.nth, cut: c.cut}
			mb, err := gmail.New(e.URL+"/", ft).Mailbox(context.Background(), ts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = gmail.Send(context.Background(), mb, message(t, c.size), "")
			if !errors.Is(err, errInjected) {
				t.Fatalf("Send = %v; want the injected fault", err)
			}
			f := gmail.Classify(err, time.Now())
			if f.Ambiguous != c.ambiguous || !f.Retryable || errors.Is(err, gmail.ErrBodySent) != c.ambiguous {
				t.Errorf("Classify(%v) = %+v; want retryable, ambiguous %v", err, f, c.ambiguous)
			}
			// A cut body may end before the transport flushes anything.
			if n := e.Requests.Gmail(); n > c.nth || n < c.nth-1 {
				t.Errorf("Gmail saw %d requests; the fault at request %d must end the send", n, c.nth)
			}
			want := 0
			if c.ambiguous {
				want = 1 // what makes it ambiguous: Gmail did send it
			}
			if n := len(e.Outbox()); n != want {
				t.Errorf("outbox holds %d messages; want %d", n, want)
			}
		})
	}
}

// TestSendUnreadableAnswer: a 2xx is a send even when its body cannot be
// read as a Message: the message went out, so Send reports it sent (with
// no IDs) rather than a failure that would send it again. A 2xx that reads
// gives the IDs; a non-2xx is a failure whatever its body.
func TestSendUnreadableAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status       int
		body         string
		id, threadID string
		fails        bool
	}{
		{200, `{"id":"m1","threadId":"t1"}`, "m1", "t1", false},
		{200, `{"id":"m1","threadId":"t1","labelIds":["SENT"]}`, "m1", "t1", false},
		{200, `not json`, "", "", false},
		{200, `{"id":`, "", "", false},
		{500, `not json`, "", "", true},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json; charset=UTF-8")
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.body)
			}))
			t.Cleanup(srv.Close)
			mb, err := gmail.New(srv.URL+"/", nil).Mailbox(context.Background(), staticToken)
			if err != nil {
				t.Fatal(err)
			}
			sent, err := gmail.Send(context.Background(), mb, message(t, 512), "")
			if c.fails {
				if f := gmail.Classify(err, time.Now()); err == nil || f.Ambiguous || !f.Retryable {
					t.Errorf("Send = %+v, %v (%+v); want a retryable failure", sent, err, f)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send = %v; want it sent", err)
			}
			if sent.ID != c.id || sent.ThreadID != c.threadID {
				t.Errorf("Send = %+v; want %q, %q", sent, c.id, c.threadID)
			}
		})
	}
}

var staticToken = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.test", Expiry: time.Now().Add(24 * time.Hour)})

// TestSendSmallMessageMemory: an ordinary message is not copied into a
// resumable chunk's buffer, which would hold ResumableChunk bytes for the
// whole Gmail call of every send. Not parallel, so that the allocation
// count is this test's own.
func TestSendSmallMessageMemory(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"id":"m1","threadId":"t1"}`)
	}))
	t.Cleanup(srv.Close)
	mb, err := gmail.New(srv.URL+"/", nil).Mailbox(context.Background(), staticToken)
	if err != nil {
		t.Fatal(err)
	}
	raw := message(t, 10<<10)
	const sends = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range sends {
		if _, err := gmail.Send(context.Background(), mb, raw, ""); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / sends; per >= gmail.ResumableChunk/4 {
		t.Errorf("a 10 KB send allocates %d bytes; want well under the %d of a chunk", per, gmail.ResumableChunk)
	}
}
