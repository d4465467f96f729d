package gmail_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// onlyReader hides bytes.Reader's other methods, so that the library sees
// a stream, as it does for a message composed while it is read.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// failingReader yields n bytes of its message, then err.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}

// TestSendReaderForms: a streamed message goes as one multipart request
// below ResumableChunk and as a resumable upload from there, and arrives
// unchanged.
func TestSendReaderForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		size   int
		upload int
	}{
		{"multipart", 64 << 10, 1},
		{"resumable", gmail.ResumableChunk + 4096, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e, svc := mailbox(t)
			raw := message(t, c.size)
			sent, err := gmail.SendReader(context.Background(), svc, onlyReader{bytes.NewReader(raw)}, int64(len(raw)), "18f4a2b3c5d6e7f8")
			if err != nil {
				t.Fatalf("SendReader: %v", err)
			}
			out := e.Outbox()
			if len(out) != 1 || out[0].ID != sent.ID {
				t.Fatalf("outbox %+v; sent %+v", out, sent)
			}
			got, err := os.ReadFile(out[0].Path)
			if err != nil || !bytes.Equal(got, raw) {
				t.Errorf("Gmail got %d bytes (%v) that differ from the %d streamed", len(got), err, len(raw))
			}
			if n := e.Requests.Count(sendertest.RouteUpload); n != c.upload {
				t.Errorf("%d upload requests; want %d", n, c.upload)
			}
		})
	}
}

// TestSendReaderFails: a reader that fails, in a message that fits one
// request or before or after the first chunk of a resumable upload, even
// after its last byte, fails the send with its error, nothing sent and
// nothing ambiguous. A message whose first chunk cannot be read sends
// none of it.
func TestSendReaderFails(t *testing.T) {
	t.Parallel()
	errRead := errors.New("the object changed")
	cases := []struct {
		name      string
		size, cut int
	}{
		{"one request", 64 << 10, 32 << 10},
		{"one request, at the very end", 64 << 10, 64 << 10},
		{"resumable, first chunk", gmail.ResumableChunk + 4096, 1 << 20},
		{"resumable, last chunk", gmail.ResumableChunk + 4096, gmail.ResumableChunk + 100},
		{"resumable, at the very end", gmail.ResumableChunk + 4096, gmail.ResumableChunk + 4096},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e, svc := mailbox(t)
			raw := message(t, c.size)
			r := &failingReader{r: bytes.NewReader(raw), n: min(c.cut, len(raw)), err: errRead}
			_, err := gmail.SendReader(context.Background(), svc, r, int64(len(raw)), "")
			if !errors.Is(err, errRead) {
				t.Fatalf("SendReader = %v; want the reader's error in the chain", err)
			}
			if errors.Is(err, gmail.ErrBodySent) {
				t.Errorf("SendReader = %v; marked ambiguous", err)
			}
			if f := gmail.Classify(err, time.Now()); f.Ambiguous {
				t.Errorf("Classify = %+v; want it unambiguous", f)
			}
			if n := len(e.Outbox()); n != 0 {
				t.Errorf("the sandbox stored %d messages", n)
			}
			// The library opens a session (metadata only) before it finds
			// the first chunk unreadable; no piece follows.
			if n := e.Requests.Gmail(); c.cut < gmail.ResumableChunk && n > 1 {
				t.Errorf("%d requests for a message whose first chunk could not be read; want the session's at most", n)
			}
		})
	}
}

// TestSendReaderTooLarge: the size given refuses a message over 35 MB
// before any request, without reading it.
func TestSendReaderTooLarge(t *testing.T) {
	t.Parallel()
	e, svc := mailbox(t)
	r := &failingReader{err: errors.New("read")}
	_, err := gmail.SendReader(context.Background(), svc, r, gmail.MaxMessageSize+1, "")
	var tl *gmail.TooLargeError
	if !errors.As(err, &tl) || e.Requests.Gmail() != 0 {
		t.Errorf("SendReader = %v after %d requests; want a TooLargeError and none", err, e.Requests.Gmail())
	}
}
