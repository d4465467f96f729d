package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	const base = `"account":"alice@example.com","to":["bob@example.org"],"text":"hi"`
	cases := []struct {
		name  string
		json  string
		field string // the one problem's field; "-" means accepted
		msg   string
	}{
		{name: "minimal", json: `{` + base + `}`, field: "-"},
		{name: "whitespace around", json: " \n{" + base + "}\n\t", field: "-"},
		{name: "attachment", json: `{` + base + `,"attachments":[{"filename":"a.bin","content_type":"application/octet-stream","data":"AAE="}]}`, field: "-"},
		{name: "raw", json: `{"account":"alice@example.com","raw":"RnJvbTogYWxpY2VAZXhhbXBsZS5jb20KVG86IGJAZXhhbXBsZS5vcmcKCmhp"}`, field: "-"},

		{name: "empty input", json: ``, field: "", msg: "empty"},
		{name: "not an object", json: `["x"]`, field: "", msg: "JSON object, not an array"},
		{name: "null", json: `null`, field: "", msg: "JSON object, not null"},
		{name: "malformed", json: `{"account" "x"}`, field: "", msg: "malformed JSON at byte"},
		{name: "truncated", json: `{"account":"x"`, field: "", msg: "malformed JSON"},
		{name: "trailing data", json: `{` + base + `} {}`, field: "", msg: "after the JSON object"},
		{name: "unknown field", json: `{` + base + `,"priority":1}`, field: "priority", msg: "unknown field"},
		{name: "field name case", json: `{` + base + `,"Subject":"x"}`, field: "Subject", msg: "unknown field"},
		{name: "unknown attachment field", json: `{` + base + `,"attachments":[{"filename":"a","content_type":"a/b","data":"AA==","size":1}]}`, field: "attachments[0].size", msg: "unknown field"},
		{name: "duplicate field", json: `{` + base + `,"account":"mallory@example.com"}`, field: "account", msg: "more than once"},
		{name: "duplicate header key", json: `{` + base + `,"headers":{"X-A":"1","X-A":"2"}}`, field: `headers["X-A"]`, msg: "more than once"},
		{name: "null string", json: `{` + base + `,"subject":null}`, field: "subject", msg: "not null"},
		{name: "number for string", json: `{` + base + `,"subject":42}`, field: "subject", msg: "not a number"},
		{name: "string for array", json: `{"account":"alice@example.com","to":"bob@example.org","text":"hi"}`, field: "to", msg: "must be an array, not a string"},
		{name: "null in array", json: `{` + base + `,"cc":["c@example.org",null]}`, field: "cc[1]", msg: "not null"},
		{name: "object in array", json: `{` + base + `,"cc":[{"a":[1,{"b":2}]}]}`, field: "cc[0]", msg: "not an object"},
		{name: "array for object", json: `{` + base + `,"headers":[]}`, field: "headers", msg: "must be an object, not an array"},
		{name: "header value number", json: `{` + base + `,"headers":{"X-A":1}}`, field: `headers["X-A"]`, msg: "not a number"},
		{name: "attachment not object", json: `{` + base + `,"attachments":["x"]}`, field: "attachments[0]", msg: "must be an object"},
		{name: "base64 unpadded", json: `{` + base + `,"attachments":[{"filename":"a","content_type":"a/b","data":"AAE"}]}`, field: "attachments[0].data", msg: "base64"},
		{name: "base64 url alphabet", json: `{` + base + `,"attachments":[{"filename":"a","content_type":"a/b","data":"-_8="}]}`, field: "attachments[0].data", msg: "offset 0"},
		{name: "base64 line break", json: `{` + base + `,"attachments":[{"filename":"a","content_type":"a/b","data":"AAAA\nAAAA"}]}`, field: "attachments[0].data", msg: "line breaks"},
		{name: "base64 non-canonical", json: `{` + base + `,"attachments":[{"filename":"a","content_type":"a/b","data":"AB=="}]}`, field: "attachments[0].data", msg: "base64"},
		{name: "raw number", json: `{"account":"alice@example.com","raw":1}`, field: "raw", msg: "base64 string, not a number"},
		// Decode then validates.
		{name: "validation", json: `{"account":"alice@example.com","to":["bob@"],"text":"hi"}`, field: "to[0]", msg: "not a valid address"},
		{name: "escaped CRLF", json: `{` + base + `,"subject":"a\r\nBcc: e@x.io"}`, field: "subject", msg: "line break"},
		{name: "escaped NUL", json: `{` + base + `,"subject":"a\u0000"}`, field: "subject", msg: "NUL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := Decode([]byte(tc.json))
			if tc.field == "-" {
				if err != nil || r == nil {
					t.Fatalf("Decode() = %v, %v; want a request", r, err)
				}
				return
			}
			if r != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode() = %v, %v; want nil and an error matching ErrInvalid", r, err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 {
				t.Fatalf("Decode() error = %v, want one problem on %q", err, tc.field)
			}
			if p := ve.Problems[0]; p.Field != tc.field || !strings.Contains(p.Message, tc.msg) {
				t.Errorf("problem = {%q, %q}, want field %q with a message containing %q", p.Field, p.Message, tc.field, tc.msg)
			}
		})
	}
}

func TestDecodeCollectsShapeProblems(t *testing.T) {
	t.Parallel()
	_, err := Decode([]byte(`{"account":1,"to":[2],"colour":"red","text":"x"}`))
	got := problemFields(t, err)
	want := []string{"account", "to[0]", "colour"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("problem fields = %q, want %q", got, want)
	}
}

func TestDecodeSizeLimit(t *testing.T) {
	t.Parallel()
	valid := []byte(`{"account":"alice@example.com","to":["bob@example.org"],"text":"hi"}`)
	// Pad with insignificant whitespace to land exactly on the limit.
	atLimit := append(bytes.Repeat([]byte(" "), MaxRequestSize-len(valid)), valid...)
	if _, err := Decode(atLimit); err != nil {
		t.Fatalf("Decode(%d bytes) = %v, want success at the limit", len(atLimit), err)
	}

	over := append([]byte(" "), atLimit...)
	_, err := Decode(over)
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode(%d bytes) = %v, want a *SizeError matching ErrTooLarge", len(over), err)
	}
	want := fmt.Sprintf("send request is %d bytes, over the limit of %d bytes", MaxRequestSize+1, MaxRequestSize)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Error() = %q, want it to contain %q", err.Error(), want)
	}
}

func TestDecodeRoundTripsMarshal(t *testing.T) {
	t.Parallel()
	// A publisher in Go marshals a Request with encoding/json; Decode must
	// read back exactly what was sent.
	want := &Request{
		Account:  "alice@example.com",
		FromName: "Alice",
		To:       []string{"Bob <bob@example.org>"},
		Cc:       []string{"c@example.org"},
		Bcc:      []string{"d@example.org"},
		ReplyTo:  []string{"r@example.com"},
		Subject:  "Grüße",
		Text:     "t",
		HTML:     "<p>h <img src=cid:i@x></p>",
		Attachments: []Attachment{
			{Filename: "a.bin", ContentType: "application/octet-stream", Data: []byte{0, 1, 2, 0xff}},
			{Filename: "i.png", ContentType: "image/png", Data: []byte{0x89, 'P'}, ContentID: "i@x"},
		},
		Headers:        map[string]string{"X-A": "1"},
		InReplyTo:      "<a@b>",
		References:     []string{"<a@b>"},
		ThreadID:       "abc123",
		IdempotencyKey: "k",
	}
	data, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode(%s) = %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode(Marshal(r)) = %+v, want %+v", got, want)
	}

	raw := &Request{Account: "alice@example.com", Raw: []byte("From: alice@example.com\r\nTo: b@example.org\r\n\r\nx"), IdempotencyKey: "k"}
	data, err = json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	gotRaw, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode(%s) = %v", data, err)
	}
	if !reflect.DeepEqual(gotRaw, raw) {
		t.Errorf("Decode(Marshal(raw)) = %+v, want %+v", gotRaw, raw)
	}
}
