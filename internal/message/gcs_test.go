package message

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

const testURI = "gs://gmail-relay-attachments/default/report.pdf"

// TestValidateByReference: an attachment carries exactly one of data and
// gcs_uri; by reference, filename and content type may be left to the
// object, generation pins it, and the URI follows Cloud Storage's naming.
func TestValidateByReference(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		a     Attachment
		field string // "" means valid
		msg   string
	}{
		{name: "reference alone", a: Attachment{GCSURI: testURI}},
		{name: "reference with metadata", a: Attachment{GCSURI: testURI, Filename: "r.pdf", ContentType: "application/pdf", Generation: 1712345678901234}},
		{name: "reference, nested object", a: Attachment{GCSURI: "gs://b.example_1-x/default/a/b/c d.pdf"}},
		{name: "reference, non-ASCII object", a: Attachment{GCSURI: "gs://bucket/default/Jörg's Rechnung.pdf"}},
		{name: "largest generation", a: Attachment{GCSURI: testURI, Generation: 1<<63 - 1}},

		{name: "both data and reference", a: Attachment{GCSURI: testURI, Data: []byte("x")}, field: "attachments[0]", msg: "exactly one"},
		{name: "neither", a: Attachment{Filename: "a", ContentType: "text/plain"}, field: "attachments[0].data", msg: "gcs_uri"},
		{name: "generation without reference", a: Attachment{Filename: "a", ContentType: "text/plain", Data: []byte("x"), Generation: 3}, field: "attachments[0].generation", msg: "without gcs_uri"},
		{name: "negative generation", a: Attachment{GCSURI: testURI, Generation: -1}, field: "attachments[0].generation", msg: "positive"},
		{name: "bad filename still checked", a: Attachment{GCSURI: testURI, Filename: "a\r\nb"}, field: "attachments[0].filename", msg: "line break"},
		{name: "bad type still checked", a: Attachment{GCSURI: testURI, ContentType: "multipart/mixed"}, field: "attachments[0].content_type", msg: "multipart"},
		{name: "not gs", a: Attachment{GCSURI: "https://storage.googleapis.com/b/o"}, field: "attachments[0].gcs_uri", msg: "not a gs:// URI"},
		{name: "no object", a: Attachment{GCSURI: "gs://bucket"}, field: "attachments[0].gcs_uri", msg: "names no object"},
		{name: "empty object", a: Attachment{GCSURI: "gs://bucket/"}, field: "attachments[0].gcs_uri", msg: "names no object"},
		{name: "bucket too short", a: Attachment{GCSURI: "gs://ab/o"}, field: "attachments[0].gcs_uri", msg: "3 to 63"},
		{name: "bucket too long", a: Attachment{GCSURI: "gs://" + strings.Repeat("b", 64) + "/o"}, field: "attachments[0].gcs_uri", msg: "3 to 63"},
		{name: "bucket upper case", a: Attachment{GCSURI: "gs://Bucket/o"}, field: "attachments[0].gcs_uri", msg: "lowercase"},
		{name: "bucket ends with dash", a: Attachment{GCSURI: "gs://bucket-/o"}, field: "attachments[0].gcs_uri", msg: "starting and ending"},
		{name: "bucket with slash-space", a: Attachment{GCSURI: "gs://buc ket/o"}, field: "attachments[0].gcs_uri", msg: "lowercase"},
		{name: "object too long", a: Attachment{GCSURI: "gs://bucket/" + strings.Repeat("é", 513)}, field: "attachments[0].gcs_uri", msg: "at most 1024"},
		{name: "object at limit", a: Attachment{GCSURI: "gs://bucket/" + strings.Repeat("é", 512)}},
		{name: "object LF", a: Attachment{GCSURI: "gs://bucket/a\nb"}, field: "attachments[0].gcs_uri", msg: "line break"},
		{name: "object CR", a: Attachment{GCSURI: "gs://bucket/a\rb"}, field: "attachments[0].gcs_uri", msg: "line break"},
		{name: "object invalid UTF-8", a: Attachment{GCSURI: "gs://bucket/a\xffb"}, field: "attachments[0].gcs_uri", msg: "UTF-8"},
		{name: "object dot", a: Attachment{GCSURI: "gs://bucket/."}, field: "attachments[0].gcs_uri", msg: ". or .."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := validRequest()
			r.Attachments = []Attachment{c.a}
			err := r.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v; want a problem on %s", err, c.field)
			}
			for _, p := range ve.Problems {
				if p.Field == c.field && strings.Contains(p.Message, c.msg) {
					return
				}
			}
			t.Errorf("problems %v; want one on %s containing %q", ve.Problems, c.field, c.msg)
		})
	}
}

// TestDecodeGeneration: generation is a JSON integer from 1 to the largest
// int64; anything else is a problem naming it.
func TestDecodeGeneration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		gen  string
		want int64 // 0: refused
	}{
		{"1", 1},
		{"1712345678901234", 1712345678901234},
		{"9223372036854775807", 1<<63 - 1},
		{"9223372036854775808", 0},
		{"0", 0},
		{"-5", 0},
		{"1.5", 0},
		{"1e3", 0},
		{`"17"`, 0},
		{"null", 0},
	}
	for _, c := range cases {
		t.Run(c.gen, func(t *testing.T) {
			t.Parallel()
			data := fmt.Sprintf(`{"account":"alice@example.com","to":["b@example.org"],"text":"x","attachments":[{"gcs_uri":%q,"generation":%s}]}`, testURI, c.gen)
			r, err := Decode([]byte(data))
			if c.want == 0 {
				if err == nil || !strings.Contains(err.Error(), "attachments[0].generation") {
					t.Errorf("Decode = %v; want a problem on attachments[0].generation", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if a := r.Attachments[0]; a.Generation != c.want || a.GCSURI != testURI || a.Size != 0 {
				t.Errorf("decoded %+v; want generation %d", a, c.want)
			}
		})
	}
}

// TestObjectDefaults: the object's Content-Disposition filename, else its
// name's last segment, made fit for a header; its Content-Type when the
// relay can attach it, else application/octet-stream.
func TestObjectDefaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, object, ctype, disposition string
		wantName, wantType               string
	}{
		{"plain", "default/invoices/42.pdf", "application/pdf", "", "42.pdf", "application/pdf"},
		{"disposition wins", "default/x", "image/png", `attachment; filename="logo.png"`, "logo.png", "image/png"},
		{"disposition RFC 2231", "default/x", "", `attachment; filename*=UTF-8''J%C3%B6rg.txt`, "Jörg.txt", DefaultContentType},
		{"disposition without filename", "default/a.csv", "text/csv", "inline", "a.csv", "text/csv"},
		{"bad disposition", "default/a.csv", "text/csv", `attachment; filename="`, "a.csv", "text/csv"},
		{"no type", "default/blob", "", "", "blob", DefaultContentType},
		{"multipart type", "default/m", "multipart/mixed; boundary=x", "", "m", DefaultContentType},
		{"bad charset", "default/t.txt", "text/plain; charset=iso-8859-1", "", "t.txt", DefaultContentType},
		{"good charset", "default/t.txt", "text/plain; charset=utf-8", "", "t.txt", "text/plain; charset=utf-8"},
		{"control characters", "default/a\tb\x01c", "", "", "a_b_c", DefaultContentType},
		{"trailing slash", "default/dir/", "", "", "attachment", DefaultContentType},
		{"long name", "default/" + strings.Repeat("é", 300), "", "", strings.Repeat("é", MaxFilenameLen), DefaultContentType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fn, ct := ObjectDefaults(c.object, c.ctype, c.disposition)
			if fn != c.wantName || ct != c.wantType {
				t.Errorf("ObjectDefaults = %q, %q; want %q, %q", fn, ct, c.wantName, c.wantType)
			}
			// Whatever the object holds, the defaults validate.
			r := validRequest()
			r.Attachments = []Attachment{{GCSURI: testURI, Filename: fn, ContentType: ct}}
			if err := r.Validate(); err != nil {
				t.Errorf("the defaults do not validate: %v", err)
			}
		})
	}
}

// objects is an opener over in-memory files, by attachment index.
type objects struct {
	files  map[int][]byte
	opened map[int]int
	err    error
}

func (o *objects) open(i int, a Attachment) (io.ReadCloser, error) {
	if o.opened == nil {
		o.opened = map[int]int{}
	}
	o.opened[i]++
	if o.err != nil {
		return nil, o.err
	}
	return io.NopCloser(bytes.NewReader(o.files[i])), nil
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestComposedSizeExact: ComposedSize, which reads nothing, is the length
// of the message Compose writes with the attachments' bytes, at every
// length around base64's groups and line breaks, with inline, data and
// by-reference parts mixed.
func TestComposedSizeExact(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 3, 4, 56, 57, 58, 113, 114, 115, 1000, 64 << 10, 1<<20 + 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			r := validRequest()
			r.HTML = `<p><img src="cid:logo"></p>`
			file := randomBytes(t, n)
			r.Attachments = []Attachment{
				{Filename: "data.bin", ContentType: "application/octet-stream", Data: randomBytes(t, n%97+1)},
				{GCSURI: testURI, Filename: "report.pdf", ContentType: "application/pdf", Size: int64(n), Generation: 7},
				{GCSURI: "gs://bucket/default/logo.png", Filename: "logo.png", ContentType: "image/png", ContentID: "logo", Size: int64(n / 2)},
			}
			o := &objects{files: map[int][]byte{1: file, 2: file[:n/2]}}
			opts := ComposeOptions{Now: testNow, MessageIDKey: "k", Open: o.open}
			size, err := ComposedSize(r, opts)
			if err != nil {
				t.Fatalf("ComposedSize: %v", err)
			}
			if len(o.opened) != 0 {
				t.Errorf("ComposedSize opened %v", o.opened)
			}
			var b bytes.Buffer
			n64, err := ComposeTo(&b, r, opts)
			if err != nil {
				t.Fatalf("ComposeTo: %v", err)
			}
			if size != int64(b.Len()) || n64 != size {
				t.Errorf("ComposedSize = %d; ComposeTo wrote %d and returned %d", size, b.Len(), n64)
			}
			leaves := parseMessage(t, b.Bytes()).root.leaves()
			var got []byte
			for _, l := range leaves {
				if l.filename == "report.pdf" {
					got = l.body
				}
			}
			if !bytes.Equal(got, file) {
				t.Errorf("the by-reference part decodes to %d bytes, not the %d of the file", len(got), len(file))
			}
		})
	}
}

// TestComposedSizeLimit: sizes alone refuse a message over Gmail's limit,
// without opening anything, and one at the limit passes.
func TestComposedSizeLimit(t *testing.T) {
	t.Parallel()
	r := validRequest()
	r.Attachments = []Attachment{{GCSURI: testURI, Filename: "big.bin", ContentType: "application/octet-stream"}}
	o := &objects{}
	if _, err := ComposedSize(r, ComposeOptions{Now: testNow}); err != nil {
		t.Errorf("ComposedSize without an opener: %v", err)
	}
	opts := ComposeOptions{Now: testNow, MessageIDKey: "k", Open: o.open}
	base, err := ComposedSize(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The largest file whose message fits, found from the sizes alone.
	lo, hi := int64(0), int64(MaxMessageSize)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		r.Attachments[0].Size = mid
		if n, _ := ComposedSize(r, opts); n <= MaxMessageSize {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	r.Attachments[0].Size = lo
	if n, err := ComposedSize(r, opts); err != nil || n > MaxMessageSize || n < MaxMessageSize-80 {
		t.Errorf("at %d bytes: ComposedSize = %d, %v; want within a line of the limit", lo, n, err)
	}
	r.Attachments[0].Size = lo + 3
	n, err := ComposedSize(r, opts)
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) || se.Size != n || n <= MaxMessageSize {
		t.Errorf("at %d bytes: ComposedSize = %d, %v; want a *SizeError over %d", lo+3, n, err, MaxMessageSize)
	}
	if len(o.opened) != 0 || base <= 0 {
		t.Errorf("opened %v; base size %d", o.opened, base)
	}
}

// TestComposeByReferenceNeeds: a by-reference attachment composes only
// with an opener and its metadata filled in, and the opener's errors come
// back for errors.Is, as does a file of the wrong length.
func TestComposeByReferenceNeeds(t *testing.T) {
	t.Parallel()
	errGone := errors.New("gone")
	filled := Attachment{GCSURI: testURI, Filename: "r.pdf", ContentType: "application/pdf", Size: 4}
	cases := []struct {
		name string
		a    Attachment
		o    *objects
		want string
		is   error
	}{
		{name: "no opener", a: filled, want: "nothing was given to read it"},
		{name: "not filled", a: Attachment{GCSURI: testURI, Size: 4}, o: &objects{}, want: "no filename or content type"},
		{name: "opener fails", a: filled, o: &objects{err: errGone}, want: "attachments[0]", is: errGone},
		{name: "short file", a: filled, o: &objects{files: map[int][]byte{0: []byte("abc")}}, want: "read 3 bytes, but its size is 4"},
		{name: "long file", a: filled, o: &objects{files: map[int][]byte{0: []byte("abcde")}}, want: "read 5 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := validRequest()
			r.Attachments = []Attachment{c.a}
			opts := ComposeOptions{Now: testNow}
			if c.o != nil {
				opts.Open = c.o.open
			}
			_, err := Compose(r, opts)
			if err == nil || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
				t.Errorf("Compose = %v; want an error with %q (is %v)", err, c.want, c.is)
			}
		})
	}
}

// TestComposeStopsWhenTheReaderGoes: once the writer fails (the upload
// stopped reading), composition stops reading the attachment rather than
// read the rest into nowhere.
func TestComposeStopsWhenTheReaderGoes(t *testing.T) {
	t.Parallel()
	r := validRequest()
	const size = 8 << 20
	r.Attachments = []Attachment{{GCSURI: testURI, Filename: "big.bin", ContentType: "application/octet-stream", Size: size}}
	src := &countingReader{n: size}
	opts := ComposeOptions{Now: testNow, Open: func(int, Attachment) (io.ReadCloser, error) { return io.NopCloser(src), nil }}
	errStop := errors.New("stop")
	_, err := ComposeTo(&failAfter{n: 64 << 10, err: errStop}, r, opts)
	if !errors.Is(err, errStop) {
		t.Fatalf("ComposeTo = %v; want the writer's error", err)
	}
	if src.read > 1<<20 {
		t.Errorf("read %d bytes of the attachment after the writer failed at 64 KiB", src.read)
	}
}

type countingReader struct{ n, read int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	if c.read >= c.n {
		return 0, io.EOF
	}
	k := min(int64(len(p)), c.n-c.read)
	c.read += k
	return int(k), nil
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, f.err
	}
	return len(p), nil
}
