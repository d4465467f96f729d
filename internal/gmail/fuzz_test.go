package gmail_test

import (
	"bytes"
	"encoding/json"
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

// FuzzReadSent: Send reads Gmail's answer as json.Unmarshal would into the
// two IDs. Where Unmarshal succeeds the IDs agree; where it fails, Send
// takes no IDs (the message still counts as sent).
func FuzzReadSent(f *testing.F) {
	for _, s := range []string{
		`{"id":"18f0000000000001","threadId":"18f0000000000002"}`,
		`{"id":"m1","threadId":"t1","labelIds":["SENT"],"sizeEstimate":12}`,
		`{"ID":"m1","THREADID":"t1"}`, `{"id":"a","id":"b"}`, `{"id":null,"threadId":"t"}`,
		`{"\u0069d":"m\u00e9"}`, `{"id":5}`, `[]`, `{"id":"m"} {}`, `{"id":`, `not json`, ``,
		`{"payload":{"headers":[{"name":"id","value":"x"}]},"id":"m"}`, "{\"id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want struct {
			ID       string `json:"id"`
			ThreadID string `json:"threadId"`
		}
		err := json.Unmarshal(data, &want)
		got := gmail.ReadSent(data)
		if err != nil {
			if got != (gmail.Sent{}) {
				t.Fatalf("%q: Unmarshal fails (%v) but the answer read as %+v", data, err, got)
			}
			return
		}
		if got.ID != want.ID || got.ThreadID != want.ThreadID {
			t.Fatalf("%q: read %+v; Unmarshal reads %+v", data, got, want)
		}
	})
}
