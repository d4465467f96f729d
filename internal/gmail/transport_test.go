package gmail

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func ok() *http.Response {
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}")), Header: http.Header{}}
}

// pipedRequest is a request whose body has no known length, as the client
// library's multipart upload is.
func pipedRequest(t *testing.T, body string) *http.Request {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		for chunk := range strings.SplitSeq(body, "|") {
			_, _ = io.WriteString(pw, chunk)
		}
		pw.Close()
	}()
	req, err := http.NewRequestWithContext(context.WithValue(context.Background(), sizeHintKey{}, len(body)), http.MethodPost, "http://gmail.test/upload", pr)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestSizedTransportLength: the base transport gets the whole body with
// its length, and GetBody gives the same bytes again while RoundTrip runs.
func TestSizedTransportLength(t *testing.T) {
	t.Parallel()
	const body = "--b|\r\nContent-Type: message/rfc822\r\n\r\n|Subject: hi\r\n\r\nbody|--b--"
	want := strings.ReplaceAll(body, "|", "")
	var seen []string
	var length int64
	tr := sizedTransport{roundTripFunc(func(r *http.Request) (*http.Response, error) {
		length = r.ContentLength
		for _, open := range []func() (io.ReadCloser, error){func() (io.ReadCloser, error) { return r.Body, nil }, r.GetBody} {
			b, err := open()
			if err != nil {
				return nil, err
			}
			data, err := io.ReadAll(b)
			if err != nil {
				return nil, err
			}
			b.Close()
			seen = append(seen, string(data))
		}
		return ok(), nil
	})}
	if _, err := tr.RoundTrip(pipedRequest(t, body)); err != nil {
		t.Fatal(err)
	}
	if length != int64(len(want)) || len(seen) != 2 || seen[0] != want || seen[1] != want {
		t.Errorf("ContentLength %d, bodies %q; want %d and %q twice", length, seen, len(want), want)
	}
}

// TestSizedTransportCloseWhileReading: net/http may close a body from
// another goroutine while it is being read (run with -race).
func TestSizedTransportCloseWhileReading(t *testing.T) {
	t.Parallel()
	tr := sizedTransport{roundTripFunc(func(r *http.Request) (*http.Response, error) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 7)
			for {
				if _, err := r.Body.Read(buf); err != nil {
					return
				}
			}
		}()
		r.Body.Close()
		wg.Wait()
		// A resend still reads the whole body.
		b, err := r.GetBody()
		if err != nil {
			return nil, err
		}
		if data, _ := io.ReadAll(b); !bytes.Equal(data, bytes.Repeat([]byte("abc"), 1000)) {
			t.Errorf("GetBody read %.20q…, %d bytes", data, len(data))
		}
		b.Close()
		return ok(), nil
	})}
	for range 20 {
		if _, err := tr.RoundTrip(pipedRequest(t, strings.Repeat("abc|", 1000))); err != nil {
			t.Fatal(err)
		}
	}
}
