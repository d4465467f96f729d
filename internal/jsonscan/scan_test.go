package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// grammarCases are inputs on either side of JSON's grammar and of
// encoding/json's reading of strings. Each is checked against encoding/json
// by checkAgainstStdlib; want only records which side the case is meant to
// be on, so that a change to the oracle cannot silently turn a case around.
var grammarCases = []struct {
	in   string
	want bool // valid JSON
}{
	// Structure.
	{`{}`, true},
	{`[]`, true},
	{` [ [ ] , { } ] `, true},
	{`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`, true},
	{"\t\r\n{\"a\" :\n1 }\n", true},
	{`{"a":1,}`, false},
	{`[1,]`, false},
	{`[,1]`, false},
	{`[1,,2]`, false},
	{`{,}`, false},
	{`{"a"}`, false},
	{`{"a":}`, false},
	{`{"a" 1}`, false},
	{`{"a",1}`, false},
	{`{"a":1:2}`, false},
	{`{"a":1 "b":2}`, false},
	{`{1:2}`, false},
	{`{null:1}`, false},
	{`[1 2]`, false},
	{`[1:2]`, false},
	{`[}`, false},
	{`{]`, false},
	{`{"a":1]`, false},
	{`[1}`, false},
	{`]`, false},
	{`}`, false},
	{`:`, false},
	{`,`, false},
	{`[`, false},
	{`{"a":[1,{"b":`, false},
	{`{"a"`, false},
	{`{"a":`, false},
	{`[1,`, false},
	// Top level.
	{``, false},
	{` `, false},
	{`1 2`, false},
	{`{}{}`, false},
	{`{} x`, false},
	{`"a""b"`, false},
	{`truefalse`, false},
	{"\v{}", false},
	{"\f{}", false},
	{"\u00a0{}", false},
	{"\xef\xbb\xbf{}", false}, // a byte order mark
	{"{}\x00", false},
	// Literals.
	{`true`, true},
	{`false`, true},
	{`null`, true},
	{`tru`, false},
	{`nul`, false},
	{`nulL`, false},
	{`True`, false},
	{`[truex]`, false},
	{`[nulx]`, false},
	{`fals`, false},
	// Numbers.
	{`0`, true},
	{`-0`, true},
	{`1e5`, true},
	{`1.5E-3`, true},
	{`1E+2`, true},
	{`0.0`, true},
	{`-0.5e-0`, true},
	{`123456789012345678901234567890`, true},
	{`1e400`, true},
	{`-`, false},
	{`-a`, false},
	{`1.`, false},
	{`1.e5`, false},
	{`.5`, false},
	{`+1`, false},
	{`01`, false},
	{`-01`, false},
	{`00`, false},
	{`1e`, false},
	{`1e+`, false},
	{`1E-x`, false},
	{`[1.x]`, false},
	{`[-]`, false},
	{`[0x1]`, false},
	{`[1a]`, false},
	{`Infinity`, false},
	{`NaN`, false},
	// Strings and escapes.
	{`""`, true},
	{`"plain ASCII"`, true},
	{`"\" \\ \/ \b \f \n \r \t"`, true},
	{`"\u00e9\u00E9\u20AC\u0000"`, true},
	// \u00XX takes a shortcut: ASCII, Latin-1, either case, and bad digits.
	{`"\u003cb\u003eHi\u003c/b\u003e \u0026 \u007f\u0080\u00ff\u00Ff"`, true},
	{`"x\u00G0"`, false},
	{`"x\u000G"`, false},
	{`"x\u00"`, false},
	{`"\u003c` + strings.Repeat("copied a word at a time ", 3) + `\u003e` + strings.Repeat("y", 13) + `"`, true},
	{`"\n` + strings.Repeat("z", 9) + "\xff" + strings.Repeat("z", 9) + "\xc3\xa9\xe2\x82\xac" + `"`, true},
	{`"\n` + strings.Repeat("z", 20) + "\x01" + `"`, false},
	{`"\n` + strings.Repeat("z", 20), false},
	{`"\'"`, false},
	{`"\x41"`, false},
	{`"\a"`, false},
	{`"\u12"`, false},
	{`"\u12G4"`, false},
	{`"\U0041"`, false},
	{`"abc`, false},
	{`"abc\`, false},
	{`"abc\u00`, false},
	{"\"a\x00b\"", false},
	{"\"a\x1fb\"", false},
	{"\"a\nb\"", false},
	{"\"a\tb\"", false},
	{"\"a\x7fb\"", true},
	{`"a"`, true},
	// Surrogates: pairs combine; anything unpaired becomes U+FFFD.
	{`"\ud83d\ude00"`, true},
	{`"\uD83D\uDE00"`, true},
	{`"\ud800"`, true},
	{`"\udc00"`, true},
	{`"\ude00\ud83d"`, true},
	{`"\ud800\u0041"`, true},
	{`"\ud800\ud800\udc00"`, true},
	{`"\ud800x\udc00"`, true},
	{`"\ud800xudc00"`, true},
	{`"\ud800\n"`, true},
	{`"\ud800\"`, false},
	{`"\ud800\uZZZZ"`, false},
	{`"\ud800\u12"`, false},
	{`"\ud800\u`, false},
	{`"\ud800\`, false},
	// UTF-8: invalid sequences become U+FFFD, byte by byte.
	{"\"Grüße\"", true},
	{"\"\u20ac \U0001F600\"", true},
	{"\"\xff\"", true},
	{"\"a\xffb\\nc\"", true},
	{"\"a\\nb\xffc\"", true},
	{"\"\xc3\"", true},
	{"\"\xc3(\"", true},
	{"\"\xc3\xc3\"", true},
	{"\"\xe2\x82\"", true},
	{"\"\xed\xa0\x80\"", true},     // an encoded surrogate
	{"\"\xc0\xaf\"", true},         // overlong
	{"\"\xf4\x8f\xbf\xbf\"", true}, // U+10FFFF
	{"\"\xf4\x90\x80\x80\"", true}, // beyond U+10FFFF
	{"\"\xef\xbf\xbd\"", true},     // U+FFFD itself
	{"\"\xc3", false},
	{"[\"\xff\"]", true},
	{"\xff", false},
	{"[\xc3\xa9]", false},
	// Long enough for the eight-byte steps, with the special byte in each
	// position of a word.
	{`"0123456789abcdef0123456789abcdef"`, true},
	{`"0123456789abcde\n0123456789abcdef"`, true},
	{`"0123456789abcdef\"0123456789abcdef"`, true},
	{"\"0123456789abcd\x01f0123456789abcdef\"", false},
	{"\"01234567\xc3\xa989abcdef\xff01234567\"", true},
	{`{"key with \u0041 escape":"value","k2":["a\tb","c\u00e9"]}`, true},
}

func TestScannerGrammar(t *testing.T) {
	t.Parallel()
	for _, tc := range grammarCases {
		if got := json.Valid([]byte(tc.in)); got != tc.want {
			t.Errorf("json.Valid(%q) = %v; the case says %v", tc.in, got, tc.want)
		}
		checkAgainstStdlib(t, []byte(tc.in))
	}
}

// TestScannerEveryByte puts each byte value at each position of a word in a
// string long enough to be read eight bytes at a time, and once outside a
// string.
func TestScannerEveryByte(t *testing.T) {
	t.Parallel()
	for c := range 256 {
		for at := range 17 {
			in := []byte(`"` + strings.Repeat("x", 24) + `"`)
			in[1+at] = byte(c)
			checkAgainstStdlib(t, in)
		}
		checkAgainstStdlib(t, []byte{'[', byte(c), ']'})
	}
	// Every pair that starts with a non-ASCII byte, for the UTF-8 checks.
	for c := 0x80; c < 256; c++ {
		for d := range 256 {
			checkAgainstStdlib(t, []byte{'"', 'x', byte(c), byte(d), 'x', '"'})
		}
	}
}

func TestScannerPosition(t *testing.T) {
	t.Parallel()
	// The position of each kind of fault; the messages are encoding/json's,
	// checked by checkAgainstStdlib.
	cases := []struct {
		in     string
		offset int64
		msg    string
	}{
		{`[1,]`, 3, `invalid character ']' looking for beginning of value`},
		{`{"a" 1}`, 5, `invalid character '1' after object key`},
		{`{"a":1 "b"}`, 7, `invalid character '"' after object key:value pair`},
		{`[1 2]`, 3, `invalid character '2' after array element`},
		{`{1:2}`, 1, `invalid character '1' looking for beginning of object key string`},
		{`[01]`, 2, `invalid character '1' after array element`},
		{`{"x":[1.]}`, 8, `invalid character ']' after decimal point in numeric literal`},
		{`{"x":[-]}`, 7, `invalid character ']' in numeric literal`},
		{`{"x":[1e]}`, 8, `invalid character ']' in exponent of numeric literal`},
		{`{"x":nulx}`, 8, `invalid character 'x' in literal null (expecting 'l')`},
		{`{"x":"ab\q"}`, 9, `invalid character 'q' in string escape code`},
		{`{"x":"\u12G4"}`, 10, `invalid character 'G' in \u hexadecimal character escape`},
		{"{\"x\":\"a\x01\"}", 7, `invalid character '\x01' in string literal`},
		{"[\xff]", 1, `invalid character 'ÿ' looking for beginning of value`},
		{`{"a":1}}`, 7, `invalid character '}' looking for beginning of value`},
	}
	for _, tc := range cases {
		_, err := scanAll([]byte(tc.in))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != tc.offset || se.Error() != tc.msg {
			t.Errorf("scanning %q: error %v (%#v), want %q at %d", tc.in, err, se, tc.msg, tc.offset)
		}
	}
}

func TestScannerStringsMatchUnmarshal(t *testing.T) {
	t.Parallel()
	checked := 0
	for _, tc := range grammarCases {
		var v any
		if err := json.Unmarshal([]byte(tc.in), &v); err != nil {
			continue
		}
		want, ok := v.(string)
		if !ok {
			continue
		}
		checked++
		toks, err := scanAll([]byte(tc.in))
		if err != nil || len(toks) != 1 || toks[0] != want {
			t.Errorf("scanning %q = %q, %v; json.Unmarshal gives %q", tc.in, toks, err, want)
		}
	}
	if checked < 30 {
		t.Errorf("only %d cases are single strings", checked)
	}
}

func TestScannerDepth(t *testing.T) {
	t.Parallel()
	// encoding/json's limit: 10000 levels are fine, one more is an error,
	// and 20000 are an error rather than a stack overflow.
	ok := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if _, err := scanAll([]byte(ok)); err != nil || !json.Valid([]byte(ok)) {
		t.Errorf("%d levels: Scanner %v, json.Valid %v; want both to accept", maxDepth, err, json.Valid([]byte(ok)))
	}
	for _, n := range []int{maxDepth + 1, 20000} {
		deep := []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
		_, err := scanAll(deep)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != maxDepth || !strings.Contains(se.Error(), "exceeded max depth") {
			t.Errorf("%d levels: error %v, want exceeded max depth at byte %d", n, err, maxDepth)
		}
		if json.Valid(deep) {
			t.Errorf("json.Valid accepts %d levels", n)
		}
	}

}

// TestScannerReusesBuffer: once its buffer has grown, the Scanner reads
// strings with and without escapes without allocating.
func TestScannerReusesBuffer(t *testing.T) {
	data := []byte(`{"a":"plain","b\n":["x\u00e9\ud83d\ude00\"y",1.5e3,true,null],"c":"` + strings.Repeat("long\\n", 100) + `"}`)
	var s Scanner
	allocs := testing.AllocsPerRun(10, func() {
		s.data, s.pos, s.state, s.stack, s.err = data, 0, stateTop, s.stack[:0], nil
		for {
			_, err := s.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("scanning allocates %v times", allocs)
	}
}

// FuzzScanner: the Scanner agrees with encoding/json on every input: the
// same tokens, strings unquoted the same way, the same kind of error at the
// same place with the same message, and the same verdict as json.Valid.
func FuzzScanner(f *testing.F) {
	for _, tc := range grammarCases {
		f.Add([]byte(tc.in))
	}
	// Send requests and a Pub/Sub push, the two kinds of input the relay
	// scans.
	f.Add([]byte(`{"account":"alice@example.com","to":["\"B\\\"o,b\" <bob@example.org>"],"subject":"Caf\u00e9","html":"\u003cp\u003eHi\u003c/p\u003e\n","headers":{"X-A":"1"},"attachments":[{"filename":"a.pdf","content_type":"application/pdf","data":"JVBERi0xLjc="}]}`))
	f.Add([]byte(`{"message":{"data":"eyJhIjoxfQ==","attributes":{"k":"v"},"messageId":"1","publishTime":"2026-11-22T00:00:00Z"},"subscription":"projects/p/subscriptions/s","deliveryAttempt":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstStdlib(t, data)
	})
}

// checkAgainstStdlib compares the Scanner's token stream for data with
// json.Decoder's, and its verdict on data as one JSON value with json.Valid.
func checkAgainstStdlib(t *testing.T, data []byte) {
	t.Helper()
	if got, want := scannerValid(data), json.Valid(data); got != want {
		t.Errorf("Scanner validity of %q = %v, json.Valid = %v", data, got, want)
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	s := New(data)
	defer s.Release()
	for n := 0; ; n++ {
		want, werr := dec.Token()
		got, gerr := tokenOf(&s)
		if gerr != nil && strings.HasSuffix(gerr.Error(), "exceeded max depth") {
			// json.Decoder.Token sets no limit, unlike json.Valid and
			// json.Unmarshal.
			if len(s.stack) != maxDepth {
				t.Errorf("%q: depth error with %d levels open", data, len(s.stack))
			}
			return
		}
		if werr != nil || gerr != nil {
			if !sameError(werr, gerr, len(s.stack) > 0) {
				t.Errorf("%q: token %d: Scanner error %v (%T), json.Decoder %v (%T)", data, n, gerr, gerr, werr, werr)
			}
			if gerr != nil && werr != nil && s.InputOffset() != dec.InputOffset() {
				t.Errorf("%q: after error at token %d: InputOffset %d, json.Decoder %d", data, n, s.InputOffset(), dec.InputOffset())
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: token %d = %#v, json.Decoder %#v", data, n, got, want)
			return
		}
		if s.InputOffset() != dec.InputOffset() {
			t.Errorf("%q: after token %d (%#v): InputOffset %d, json.Decoder %d", data, n, got, s.InputOffset(), dec.InputOffset())
			return
		}
	}
}

// sameError reports whether the Scanner's error gerr matches json.Decoder's
// werr. The Decoder returns io.EOF where the input ends inside an array or
// object; the Scanner says io.ErrUnexpectedEOF, which is what it means. And
// the Decoder leaves the context out of its complaint about the first key
// of an object.
func sameError(werr, gerr error, open bool) bool {
	var wse *json.SyntaxError
	var gse *SyntaxError
	switch {
	case werr == nil || gerr == nil:
		return false
	case errors.As(werr, &wse) && errors.As(gerr, &gse):
		return wse.Error() == gse.Error() ||
			wse.Error()+" looking for beginning of object key string" == gse.Error()
	case gerr == io.ErrUnexpectedEOF:
		return werr == io.ErrUnexpectedEOF || werr == io.EOF && open
	case gerr == io.EOF:
		return werr == io.EOF && !open
	}
	return false
}

// scannerValid reports whether the Scanner reads data as exactly one JSON
// value.
func scannerValid(data []byte) bool {
	s := New(data)
	defer s.Release()
	if _, err := s.Next(); err != nil {
		return false
	}
	for len(s.stack) > 0 {
		if _, err := s.Next(); err != nil {
			return false
		}
	}
	_, err := s.Next()
	return err == io.EOF
}

// scanAll returns every token of data, through the first error.
func scanAll(data []byte) ([]json.Token, error) {
	s := New(data)
	defer s.Release()
	var toks []json.Token
	for {
		t, err := tokenOf(&s)
		if err == io.EOF {
			return toks, nil
		}
		if err != nil {
			return toks, err
		}
		toks = append(toks, t)
	}
}

// TestSkipRest: the rest of a container is consumed through its close, and
// a scalar needs nothing more; an error inside is reported.
func TestSkipRest(t *testing.T) {
	t.Parallel()
	s := New([]byte(`[{"a":[1,{"b":"}"}]},"x",3]`))
	defer s.Release()
	want := func(k Kind) {
		t.Helper()
		got, err := s.Next()
		if err != nil || got != k {
			t.Fatalf("Next = %v, %v; want kind %v", got, err, k)
		}
	}
	want(BeginArray)
	want(BeginObject)
	if err := s.SkipRest(BeginObject); err != nil {
		t.Fatal(err)
	}
	want(String)
	if err := s.SkipRest(String); err != nil {
		t.Fatal(err)
	}
	want(Number)
	if string(s.Value()) != "3" {
		t.Errorf("after skipping, the number is %q", s.Value())
	}

	bad := New([]byte(`[[1,}`))
	defer bad.Release()
	k, _ := bad.Next()
	var se *SyntaxError
	if err := bad.SkipRest(k); !errors.As(err, &se) {
		t.Errorf("SkipRest over malformed input = %v; want a *SyntaxError", err)
	}
}

// tokenOf returns s's next token in json.Decoder.Token's form (numbers as
// json.Number), so that the two streams can be compared.
func tokenOf(s *Scanner) (json.Token, error) {
	k, err := s.Next()
	if err != nil {
		return nil, err
	}
	switch k {
	case BeginObject:
		return json.Delim('{'), nil
	case EndObject:
		return json.Delim('}'), nil
	case BeginArray:
		return json.Delim('['), nil
	case EndArray:
		return json.Delim(']'), nil
	case String:
		return string(s.val), nil
	case Number:
		return json.Number(s.val), nil
	case True:
		return true, nil
	case False:
		return false, nil
	}
	return nil, nil
}
