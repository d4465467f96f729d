package gmail_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/gmail"
)

// FuzzMultipartBody: whatever bytes a message holds, a multipart reader
// (as Gmail's upload endpoint reads the body) gets back exactly two parts,
// the metadata and then the message, byte for byte, with their content
// types, as long as the message does not contain the boundary, which Send
// draws at random for every request.
func FuzzMultipartBody(f *testing.F) {
	f.Add([]byte("To: bob@example.org\r\n\r\nhi\r\n"), []byte(`{}`))
	f.Add([]byte(""), []byte(`{"threadId":"18f4"}`))
	f.Add([]byte("--\r\n--x--\r\n\r\n"), []byte(`{}`))
	f.Add([]byte("no line break at the end"), []byte(`{"threadId":"a\"b"}`))
	f.Add([]byte("\r\n\r\n--"), []byte(`{}`))
	const boundary = "NSZ5UNBKHQBAZXFJVXFXXZQEJM" // as rand.Text draws them
	f.Fuzz(func(t *testing.T, raw, meta []byte) {
		if bytes.Contains(raw, []byte(boundary)) || bytes.Contains(meta, []byte(boundary)) {
			t.Skip()
		}
		mr := multipart.NewReader(bytes.NewReader(gmail.MultipartBody(meta, raw, boundary)), boundary)
		for i, want := range []struct {
			ctype string
			body  []byte
		}{{"application/json", meta}, {"message/rfc822", raw}} {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			if ct := p.Header.Get("Content-Type"); ct != want.ctype {
				t.Errorf("part %d: Content-Type %q; want %q", i, ct, want.ctype)
			}
			got, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			if !bytes.Equal(got, want.body) {
				t.Fatalf("part %d: read back %q; want %q", i, got, want.body)
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("after the message: %v; want the end of the body", err)
		}
	})
}
