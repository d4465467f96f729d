package message

import (
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// withList is a request of base's fields plus field set to a JSON list of
// n entries made by entry, wrapped in open and close ("[" "]" or "{" "}").
func withList(field, open, close string, n int, entry func(i int) string) []byte {
	var b strings.Builder
	b.WriteString(`{"account":"alice@example.com","subject":"s","text":"t",`)
	if field != "to" {
		b.WriteString(`"to":["bob@example.org"],`)
	}
	b.WriteString(`"` + field + `":` + open)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(entry(i))
	}
	b.WriteString(close + `}`)
	return []byte(b.String())
}

// manyRecipients is the 9.9 MB request of issue 16: 330k recipients, all
// of them in to.
func manyRecipients() []byte {
	return withList("to", "[", "]", 330_000, func(i int) string { return fmt.Sprintf(`"recipient%06d@example.org"`, i) })
}

// allocated is what one call of f allocates: objects and bytes.
func allocated(f func()) (objects, bytes uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc
}

// TestDecodeCheapLimits: a list over its limit is refused on its count,
// with the count, without its entries being kept or parsed, so that the
// request costs a few allocations whatever its length. Before these limits
// the 330k-recipient request cost 3.3M allocations and 92 MB allocated; the
// bound here is what remains (the decoder's copy of the input, the
// problems), with room to spare.
func TestDecodeCheapLimits(t *testing.T) {
	att := func(i int) string {
		return `{"filename":"a","content_type":"a/b","data":"` + base64.StdEncoding.EncodeToString([]byte("x")) + `"}`
	}
	cases := []struct {
		name       string
		data       []byte
		field, msg string
	}{
		{"330k recipients in 9.9 MB", manyRecipients(), "to", "330000 recipients across to, cc and bcc; Gmail allows at most 100"},
		{"101 in cc", withList("cc", "[", "]", 101, func(i int) string { return `"c@example.org"` }), "to", "102 recipients"},
		{"reply_to", withList("reply_to", "[", "]", 50_000, func(i int) string { return `"r@example.org"` }), "reply_to", "50000 addresses; the limit is 100"},
		{"references", withList("references", "[", "]", 50_000, func(i int) string { return `"<a@b>"` }), "references", "50000 entries; the limit is 100"},
		{"headers", withList("headers", "{", "}", 100_000, func(i int) string { return fmt.Sprintf(`"X-%d":"v"`, i) }), "headers", "100000 headers; the limit is 50"},
		{"attachments", withList("attachments", "[", "]", 20_000, att), "attachments", "20000 attachments; the limit is 100"},
		{"entries of the wrong type", withList("bcc", "[", "]", 200_000, func(i int) string { return `{"x":[1,"],"]}` }), "to", "200001 recipients"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			objs, bytes := allocated(func() { _, err = Decode(tc.data) })
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Field != tc.field || !strings.Contains(ve.Problems[0].Message, tc.msg) {
				t.Fatalf("Decode: %v; want one problem on %s saying %q", err, tc.field, tc.msg)
			}
			t.Logf("%d bytes: %d allocations, %d bytes allocated", len(tc.data), objs, bytes)
			if objs > 1000 || bytes > 4*uint64(len(tc.data))+1<<20 {
				t.Errorf("refusing it cost %d allocations and %d bytes; want at most 1000 and about the input's size, whatever the count", objs, bytes)
			}
		})
	}
}

// TestDecodeManyRecipientsSize pins the shape of issue 16's request.
func TestDecodeManyRecipientsSize(t *testing.T) {
	t.Parallel()
	if n := len(manyRecipients()); n < 9_800_000 || n > MaxRequestSize {
		t.Errorf("the 330k-recipient request is %d bytes, want about 9.9 MB", n)
	}
}

// TestCountEntries: the top-level comma count agrees with the JSON, commas
// and brackets inside strings and nested values included.
func TestCountEntries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want int
		ok   bool
	}{
		{`[]`, 0, true},
		{` : [ ] `, 0, true},
		{`{}`, 0, true},
		{`["a"]`, 1, true},
		{`[1,2,3]`, 3, true},
		{`["a,b","c]","d\",e"]`, 3, true},
		{`[[1,2],{"a":[3,4],"b":"}"},null]`, 3, true},
		{`{"a":1,"b":[1,2]}`, 2, true},
		{`:{"a,b":"c,d"}`, 1, true},
		{`"abc"`, 0, false},
		{`123`, 0, false},
		{`[1,2`, 0, false},
		{``, 0, false},
	}
	for _, tc := range cases {
		n, ok := countEntries([]byte(tc.in), 0)
		if n != tc.want || ok != tc.ok {
			t.Errorf("countEntries(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.want, tc.ok)
		}
	}
}

// TestDecodeAttachmentBudget: the attachments' total decoded size is taken
// from their base64 length, and the one that takes it over the bound is
// refused without being decoded.
func TestDecodeAttachmentBudget(t *testing.T) {
	t.Parallel()
	data := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	in := `{"account":"alice@example.com","to":["b@example.org"],"text":"t","attachments":[` +
		`{"filename":"a","content_type":"a/b","data":"` + data(600) + `"},` +
		`{"filename":"b","content_type":"a/b","data":"` + data(400) + `"},` +
		`{"filename":"c","content_type":"a/b","data":"` + data(1) + `"}]}`
	if _, err := decodeJSONWith([]byte(in), 1001); err != nil {
		t.Fatalf("1001 bytes within a bound of 1001: %v", err)
	}
	_, err := decodeJSONWith([]byte(in), 1000)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Field != "attachments[2].data" ||
		!strings.Contains(ve.Problems[0].Message, "1001 bytes once decoded; together they can be at most 1000") {
		t.Errorf("over the bound: %v", err)
	}
}

// TestDecodeProblemCap: a request with more problems than maxProblems lists
// that many and counts the rest.
func TestDecodeProblemCap(t *testing.T) {
	t.Parallel()
	in := withList("to", "[", "]", 100, func(int) string { return "1" })
	in = []byte(strings.TrimSuffix(string(in), "}") + `,"reply_to":[` + strings.TrimSuffix(strings.Repeat("2,", 30), ",") + `]}`)
	_, err := Decode(in)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != maxProblems+1 || ve.Problems[maxProblems].Message != "30 more problems are not listed" {
		t.Fatalf("Decode: %d problems, last %v; want %d and a count of the rest", len(ve.Problems), ve.Problems[len(ve.Problems)-1], maxProblems+1)
	}
}

// TestDecodeTooManyMembers: past maxMembers, the request's members are
// counted, not read.
func TestDecodeTooManyMembers(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`{"account":"alice@example.com","to":["b@example.org"],"text":"t"`)
	for i := range 10_000 {
		fmt.Fprintf(&b, `,"f%d":1`, i)
	}
	b.WriteString(`}`)
	_, err := Decode([]byte(b.String()))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatal(err)
	}
	last := ve.Problems[len(ve.Problems)-1]
	if len(ve.Problems) != maxMembers-3+1 || !strings.Contains(last.Message, "the send request has 10003 members") {
		t.Errorf("%d problems, last %q", len(ve.Problems), last)
	}
}

func BenchmarkDecodeManyRecipients(b *testing.B) {
	data := manyRecipients()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err == nil {
			b.Fatal("accepted")
		}
	}
}
