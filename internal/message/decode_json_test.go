package message

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestDecodeDepth: nesting within encoding/json's limit is read (and here
// skipped, inside an unknown field); beyond it, it is malformed JSON.
func TestDecodeDepth(t *testing.T) {
	t.Parallel()
	const maxDepth = 10000
	for _, tc := range []struct {
		levels int
		want   string
	}{
		{maxDepth - 1, "x: unknown field"},
		{20000, "malformed JSON at byte 10004: invalid character '[' exceeded max depth"},
	} {
		in := `{"x":` + strings.Repeat("[", tc.levels) + strings.Repeat("]", tc.levels) + `}`
		got := problemStrings(decodeProblems(t, []byte(in)))
		if len(got) == 0 || got[len(got)-1] != tc.want {
			t.Errorf("Decode with %d levels: problems %q, want the last to be %q", tc.levels, got, tc.want)
		}
	}
}

// TestDecodeMalformedJSON pins the problems for malformed input: offsets
// point at the byte at fault, also inside a value (where json.Decoder's own
// Offset does not), and a number too large for a float64 is a number of the
// wrong type rather than malformed JSON.
func TestDecodeMalformedJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want []string
	}{
		{``, []string{"the send request is empty; expected a JSON object"}},
		{" \n\t", []string{"the send request is empty; expected a JSON object"}},
		{`{"account":"a"`, []string{"malformed JSON: the input ends inside a value"}},
		{`{"account":"a`, []string{"malformed JSON: the input ends inside a value"}},
		{`{"account":"a\u00`, []string{"malformed JSON: the input ends inside a value"}},
		{`{"to":["a",`, []string{"malformed JSON: the input ends inside a value"}},
		{`{"account":tru`, []string{"malformed JSON: the input ends inside a value"}},
		{`"abc`, []string{"malformed JSON: the input ends inside a value"}},
		{`{"account" "x"}`, []string{`malformed JSON at byte 11: invalid character '"' after object key`}},
		{`{"to":["a",-]}`, []string{"malformed JSON at byte 12: invalid character ']' in numeric literal"}},
		{`{"to":["a","\q"]}`, []string{"malformed JSON at byte 13: invalid character 'q' in string escape code"}},
		{`{"x":1,}`, []string{"x: unknown field", "malformed JSON at byte 7: invalid character '}' looking for beginning of object key string"}},
		{`{"account":"a"} {}`, []string{"unexpected data after the JSON object at byte 17"}},
		{`{"account":"a"}   x`, []string{"unexpected data after the JSON object at byte 18"}},
		{`{"account":"a"} "x`, []string{"unexpected data after the JSON object at byte 16"}},
		{`{"subject":1e400}`, []string{"subject: must be a string, not a number"}},
	}
	for _, tc := range cases {
		got := problemStrings(decodeProblems(t, []byte(tc.in)))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Decode(%q) problems = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestDecodeEscapedKeysAndValues: keys and values are read after unescaping,
// as json.Unmarshal reads them, whether or not they had escapes.
func TestDecodeEscapedKeysAndValues(t *testing.T) {
	t.Parallel()
	in := `{"\u0061ccount":"alice@example.com","t\u006f":["b\u006fb@example.org"],` +
		`"text":"caf\u00e9 \ud83d\ude00 \ud800 ` + "\xff" + `","headers":{"X-\u0041":"1"},` +
		`"attachments":[{"filename":"a","content_type":"a/b","d\u0061ta":"AA\u003d\u003d"}]}`
	r, err := decodeJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Request{
		Account:     "alice@example.com",
		To:          []string{"bob@example.org"},
		Text:        "café \U0001F600 \uFFFD \uFFFD",
		Headers:     map[string]string{"X-A": "1"},
		Attachments: []Attachment{{Filename: "a", ContentType: "a/b", Data: []byte{0}}},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("decodeJSON = %+v, want %+v", r, want)
	}
	var std Request
	if err := json.Unmarshal([]byte(in), &std); err != nil || !reflect.DeepEqual(&std, want) {
		t.Errorf("json.Unmarshal = %+v, %v; the test's want is wrong", std, err)
	}
}

// TestDecodeDuplicateKeysManyMembers: duplicates are caught among many
// members, each named once.
func TestDecodeDuplicateKeysManyMembers(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`{"account":"alice@example.com","to":["b@example.org"],"text":"x","headers":{`)
	for i := range 40 {
		b.WriteString(`"X-` + strings.Repeat("a", i+1) + `":"1",`)
	}
	b.WriteString(`"X-a":"2","X-` + strings.Repeat("a", 40) + `":"3","X-new":"4"}}`)
	got := problemFields(t, decodeErr(t, b.String()))
	want := []string{`headers["X-a"]`, `headers["X-` + strings.Repeat("a", 40) + `"]`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problem fields = %q, want %q", got, want)
	}
}

func decodeProblems(t *testing.T, data []byte) []Problem {
	t.Helper()
	r, err := decodeJSON(data)
	var ve *ValidationError
	if r != nil || !errors.As(err, &ve) {
		t.Fatalf("decodeJSON(%.40q…) = %v, %v; want a *ValidationError", data, r, err)
	}
	return ve.Problems
}

func problemStrings(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func decodeErr(t *testing.T, in string) error {
	t.Helper()
	_, err := Decode([]byte(in))
	if err == nil {
		t.Fatalf("Decode(%.40q…) accepted it", in)
	}
	return err
}
