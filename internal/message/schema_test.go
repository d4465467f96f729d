package message

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	const url = "https://github.com/gmailrelay/gmailrelay/internal/message/schema/send-request.v1.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	return sch
}

func TestSchemaIsACopy(t *testing.T) {
	t.Parallel()
	a := Schema()
	a[0] = 'x'
	if b := Schema(); b[0] != '{' {
		t.Error("changing the result of Schema changed the embedded schema")
	}
	var doc struct {
		Schema string `json:"$schema"`
	}
	if err := json.Unmarshal(Schema(), &doc); err != nil || doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %q, %v; want draft 2020-12", doc.Schema, err)
	}
}

// Verdicts of a schema agreement case.
const (
	both   = iota // schema and Decode accept
	none          // schema and Decode reject
	goOnly        // the schema accepts, Decode rejects: a rule JSON Schema cannot express
)

// TestSchemaAgreesWithDecode runs each request through the published schema
// and through Decode. They must agree, except on the rules listed as goOnly,
// which the schema cannot express (and its description lists).
func TestSchemaAgreesWithDecode(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)

	b64 := base64.StdEncoding.EncodeToString
	rawOK := b64([]byte("From: alice@example.com\r\nTo: bob@example.org\r\n\r\nhi"))
	list := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = fmt.Sprintf("r%d@example.org", i)
		}
		return out
	}
	att := func(patch map[string]any) []any {
		a := map[string]any{"filename": "a.pdf", "content_type": "application/pdf", "data": b64([]byte("%PDF"))}
		for k, v := range patch {
			if v == nil {
				delete(a, k)
			} else {
				a[k] = v
			}
		}
		return []any{a}
	}
	headers := func(n int) map[string]any {
		h := make(map[string]any, n)
		for i := range n {
			h[fmt.Sprintf("X-H%d", i)] = "v"
		}
		return h
	}
	full := map[string]any{
		"from_name": "Alice at Acme", "cc": []any{"Carol <carol@example.org>"}, "bcc": []any{"d@example.org"},
		"reply_to": []any{"support@example.com"}, "subject": "Invoice 42", "html": `<img src="cid:logo">`,
		"attachments": []any{
			map[string]any{"filename": "invoice.pdf", "content_type": "application/pdf", "data": b64([]byte("%PDF-1.7"))},
			map[string]any{"filename": "logo.png", "content_type": "image/png", "data": b64([]byte{0x89, 'P'}), "content_id": "logo"},
		},
		"headers":     map[string]any{"X-Order-Id": "42", "list-unsubscribe": "<mailto:u@example.com>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
		"in_reply_to": "<id@example.com>", "references": []any{"<id@example.com>"},
		"thread_id": "18f4a2b3c5d6e7f8", "idempotency_key": "order-42-invoice",
	}
	rawOnly := map[string]any{"to": nil, "text": nil, "raw": rawOK}

	cases := []struct {
		name    string
		patch   map[string]any // applied to a minimal valid request; nil values delete
		json    string         // used instead of patch when set
		verdict int
	}{
		{name: "minimal", verdict: both},
		{name: "full", patch: full, verdict: both},
		{name: "raw", patch: rawOnly, verdict: both},
		{name: "raw with empty composed fields", patch: map[string]any{"to": []any{}, "text": "", "subject": "", "headers": map[string]any{}, "raw": rawOK}, verdict: both},
		{name: "html only", patch: map[string]any{"text": nil, "html": "<p>x</p>"}, verdict: both},
		{name: "bcc only", patch: map[string]any{"to": nil, "bcc": []any{"b@example.org"}}, verdict: both},
		{name: "100 in one list", patch: map[string]any{"to": list(100)}, verdict: both},
		{name: "content type with space", patch: map[string]any{"attachments": att(map[string]any{"content_type": " text/plain ; charset=utf-8"})}, verdict: both},
		{name: "empty optional strings", patch: map[string]any{"in_reply_to": "", "thread_id": "", "idempotency_key": "", "from_name": ""}, verdict: both},

		{name: "account missing", patch: map[string]any{"account": nil}, verdict: none},
		{name: "account empty", patch: map[string]any{"account": ""}, verdict: none},
		{name: "account with name", patch: map[string]any{"account": "Alice <alice@example.com>"}, verdict: none},
		{name: "account non-ASCII", patch: map[string]any{"account": "jörg@example.de"}, verdict: none},
		{name: "no recipients", patch: map[string]any{"to": nil}, verdict: none},
		{name: "empty recipient lists", patch: map[string]any{"to": []any{}, "cc": []any{}}, verdict: none},
		{name: "no body", patch: map[string]any{"text": nil}, verdict: none},
		{name: "empty body", patch: map[string]any{"text": "", "html": ""}, verdict: none},
		{name: "raw and subject", patch: map[string]any{"to": nil, "text": nil, "raw": rawOK, "subject": "x"}, verdict: none},
		{name: "raw and to", patch: map[string]any{"text": nil, "raw": rawOK}, verdict: none},
		{name: "raw and headers", patch: map[string]any{"to": nil, "text": nil, "raw": rawOK, "headers": map[string]any{"X-A": "1"}}, verdict: none},
		{name: "raw unpadded", patch: map[string]any{"to": nil, "text": nil, "raw": "RnJvbQ"}, verdict: none},
		{name: "unknown field", patch: map[string]any{"priority": 1}, verdict: none},
		{name: "field name case", patch: map[string]any{"Subject": "x"}, verdict: none},
		{name: "unknown attachment field", patch: map[string]any{"attachments": att(map[string]any{"size": 4})}, verdict: none},
		{name: "null", patch: map[string]any{"subject": json.RawMessage("null")}, verdict: none},
		{name: "wrong type", patch: map[string]any{"to": "bob@example.org"}, verdict: none},
		{name: "empty address", patch: map[string]any{"cc": []any{""}}, verdict: none},
		{name: "address with LF", patch: map[string]any{"to": []any{"bob@example.org\nBcc: e@x.io"}}, verdict: none},
		{name: "address without @", patch: map[string]any{"to": []any{"bob"}}, verdict: none},
		{name: "101 in one list", patch: map[string]any{"cc": list(101)}, verdict: none},
		{name: "reply_to 101", patch: map[string]any{"reply_to": list(101)}, verdict: none},
		{name: "subject CR", patch: map[string]any{"subject": "a\rb"}, verdict: none},
		{name: "subject LF", patch: map[string]any{"subject": "a\nb"}, verdict: none},
		{name: "subject NUL", patch: map[string]any{"subject": "a\x00b"}, verdict: none},
		{name: "subject too long", patch: map[string]any{"subject": strings.Repeat("ü", MaxSubjectLen+1)}, verdict: none},
		{name: "subject at limit", patch: map[string]any{"subject": strings.Repeat("ü", MaxSubjectLen)}, verdict: both},
		{name: "from_name too long", patch: map[string]any{"from_name": strings.Repeat("a", MaxFromNameLen+1)}, verdict: none},
		{name: "header not allowed", patch: map[string]any{"headers": map[string]any{"Bcc": "e@x.io"}}, verdict: none},
		{name: "header X- alone", patch: map[string]any{"headers": map[string]any{"X-": "1"}}, verdict: none},
		{name: "header name space", patch: map[string]any{"headers": map[string]any{"X-A B": "1"}}, verdict: none},
		{name: "header name too long", patch: map[string]any{"headers": map[string]any{"X-" + strings.Repeat("a", MaxHeaderNameLen-1): "1"}}, verdict: none},
		{name: "header value CRLF", patch: map[string]any{"headers": map[string]any{"X-A": "1\r\nBcc: e@x.io"}}, verdict: none},
		{name: "header value non-ASCII", patch: map[string]any{"headers": map[string]any{"X-A": "Jörg"}}, verdict: none},
		{name: "header value too long", patch: map[string]any{"headers": map[string]any{"X-A": strings.Repeat("v", MaxHeaderValueLen+1)}}, verdict: none},
		{name: "header value number", patch: map[string]any{"headers": map[string]any{"X-A": 1}}, verdict: none},
		{name: "too many headers", patch: map[string]any{"headers": headers(MaxCustomHeaders + 1)}, verdict: none},
		{name: "attachment no data", patch: map[string]any{"attachments": att(map[string]any{"data": nil})}, verdict: none},
		{name: "attachment empty data", patch: map[string]any{"attachments": att(map[string]any{"data": ""})}, verdict: none},
		{name: "attachment no filename", patch: map[string]any{"attachments": att(map[string]any{"filename": nil})}, verdict: none},
		{name: "attachment filename LF", patch: map[string]any{"attachments": att(map[string]any{"filename": "a\n.pdf"})}, verdict: none},
		{name: "attachment no type", patch: map[string]any{"attachments": att(map[string]any{"content_type": nil})}, verdict: none},
		{name: "attachment type without subtype", patch: map[string]any{"attachments": att(map[string]any{"content_type": "application"})}, verdict: none},
		{name: "attachment multipart", patch: map[string]any{"attachments": att(map[string]any{"content_type": "Multipart/Mixed"})}, verdict: none},
		{name: "attachment message", patch: map[string]any{"attachments": att(map[string]any{"content_type": "message/rfc822"})}, verdict: none},
		{name: "attachment unpadded", patch: map[string]any{"attachments": att(map[string]any{"data": "AAE"})}, verdict: none},
		{name: "attachment padding bits", patch: map[string]any{"attachments": att(map[string]any{"data": "AB=="})}, verdict: none},
		{name: "attachment url alphabet", patch: map[string]any{"attachments": att(map[string]any{"data": "-_8="})}, verdict: none},
		{name: "attachment line break", patch: map[string]any{"attachments": att(map[string]any{"data": "AAAA\r\nAAAA"})}, verdict: none},
		{name: "attachment padded ok", patch: map[string]any{"attachments": att(map[string]any{"data": "AQ=="})}, verdict: both},
		{name: "101 attachments", patch: map[string]any{"attachments": func() []any {
			var out []any
			for range MaxAttachments + 1 {
				out = append(out, att(nil)...)
			}
			return out
		}()}, verdict: none},
		{name: "content_id brackets", patch: map[string]any{"html": "x", "attachments": att(map[string]any{"content_id": "<logo>"})}, verdict: none},
		{name: "content_id without html", patch: map[string]any{"attachments": att(map[string]any{"content_id": "logo"})}, verdict: none},
		{name: "in_reply_to bare", patch: map[string]any{"in_reply_to": "id@example.com"}, verdict: none},
		{name: "in_reply_to two", patch: map[string]any{"in_reply_to": "<a@b> <c@d>"}, verdict: none},
		{name: "reference without at", patch: map[string]any{"references": []any{"<ab>"}}, verdict: none},
		{name: "thread_id upper", patch: map[string]any{"thread_id": "18F4"}, verdict: none},
		{name: "thread_id long", patch: map[string]any{"thread_id": strings.Repeat("a", 17)}, verdict: none},
		{name: "key too long", patch: map[string]any{"idempotency_key": strings.Repeat("k", MaxIdempotencyKeyLen+1)}, verdict: none},
		{name: "key control", patch: map[string]any{"idempotency_key": "a\tb"}, verdict: none},

		{name: "by reference", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "filename": nil, "content_type": nil, "gcs_uri": testURI})}, verdict: both},
		{name: "by reference with metadata", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": testURI, "generation": 1712345678901234})}, verdict: both},
		{name: "by reference, largest generation", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": testURI, "generation": json.RawMessage("9223372036854775807")})}, verdict: both},
		{name: "by reference, generation too large", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": testURI, "generation": json.RawMessage("9223372036854775808")})}, verdict: none},
		{name: "by reference, generation 0", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": testURI, "generation": 0})}, verdict: none},
		{name: "by reference, generation fraction", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": testURI, "generation": 1.5})}, verdict: none},
		{name: "by reference, generation string", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": testURI, "generation": "17"})}, verdict: none},
		{name: "data and reference", patch: map[string]any{"attachments": att(map[string]any{"gcs_uri": testURI})}, verdict: none},
		{name: "generation with data", patch: map[string]any{"attachments": att(map[string]any{"generation": 5})}, verdict: none},
		{name: "reference not gs", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": "s3://bucket/o"})}, verdict: none},
		{name: "reference without object", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": "gs://bucket/"})}, verdict: none},
		{name: "reference bucket upper case", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": "gs://Bucket/o"})}, verdict: none},
		{name: "reference bucket too short", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": "gs://ab/o"})}, verdict: none},
		{name: "reference object LF", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": "gs://bucket/a\nb"})}, verdict: none},
		{name: "reference empty", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": ""})}, verdict: none},
		{name: "reference bad type", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": testURI, "content_type": "message/rfc822"})}, verdict: none},

		// The rules JSON Schema cannot express; the schema's description
		// lists them.
		{name: "reference object too long", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": "gs://bucket/" + strings.Repeat("é", 513)})}, verdict: goOnly},
		{name: "reference object dot", patch: map[string]any{"attachments": att(map[string]any{"data": nil, "gcs_uri": "gs://bucket/.."})}, verdict: goOnly},
		{name: "101 recipients across lists", patch: map[string]any{"to": list(50), "cc": list(30), "bcc": list(21)}, verdict: goOnly},
		{name: "To too large once encoded", patch: map[string]any{"to": func() []any {
			out := make([]any, 60)
			for i := range out {
				out[i] = fmt.Sprintf("%s <r%d@example.org>", strings.Repeat("é", 480), i)
			}
			return out
		}()}, verdict: goOnly},
		{name: "address syntax", patch: map[string]any{"to": []any{"bob@"}}, verdict: goOnly},
		{name: "account syntax", patch: map[string]any{"account": "a@b@example.com"}, verdict: goOnly},
		{name: "account domain literal", patch: map[string]any{"account": "alice@[192.0.2.1]"}, verdict: goOnly},
		{name: "encoded display name with CR", patch: map[string]any{"to": []any{"=?utf-8?q?a=0Db?= <b@example.org>"}}, verdict: goOnly},
		{name: "media type parameters", patch: map[string]any{"attachments": att(map[string]any{"content_type": "text/plain; charset"})}, verdict: goOnly},
		{name: "attachment charset", patch: map[string]any{"attachments": att(map[string]any{"content_type": "text/csv; charset=iso-8859-1"})}, verdict: goOnly},
		{name: "content_id duplicate", patch: map[string]any{"html": "x", "attachments": append(att(map[string]any{"content_id": "a"}), att(map[string]any{"content_id": "A"})...)}, verdict: goOnly},
		{name: "header names differ in case only", patch: map[string]any{"headers": map[string]any{"X-A": "1", "x-a": "2"}}, verdict: goOnly},
		{name: "duplicate JSON key", json: `{"account":"alice@example.com","to":["b@example.org"],"text":"x","text":"y"}`, verdict: goOnly},
		// Who it is sent as needs the account's aliases: checked at send time.
		{name: "raw From not the account", patch: map[string]any{"account": "bob@example.com", "to": nil, "text": nil, "raw": rawOK}, verdict: both},
		{name: "from an alias", patch: map[string]any{"from": "billing@example.com"}, verdict: both},
		{name: "from empty", patch: map[string]any{"from": ""}, verdict: both},
		{name: "from with name", patch: map[string]any{"from": "Billing <billing@example.com>"}, verdict: none},
		{name: "from not an address", patch: map[string]any{"from": "billing"}, verdict: none},
		{name: "from not ASCII", patch: map[string]any{"from": "jörg@example.com"}, verdict: none},
		{name: "from too long", patch: map[string]any{"from": strings.Repeat("a", 250) + "@x.io"}, verdict: none},
		{name: "from with raw", patch: map[string]any{"from": "alice@example.com", "to": nil, "text": nil, "raw": rawOK}, verdict: none},
		{name: "from domain literal", patch: map[string]any{"from": "billing@[192.0.2.1]"}, verdict: goOnly},
		{name: "from syntax", patch: map[string]any{"from": "a@b@example.com"}, verdict: goOnly},
		{name: "raw without recipients", patch: map[string]any{"to": nil, "text": nil, "raw": b64([]byte("From: alice@example.com\r\n\r\nhi"))}, verdict: goOnly},
		{name: "raw NUL in header", patch: map[string]any{"to": nil, "text": nil, "raw": b64([]byte("From: alice@example.com\r\nTo: b@example.org\x00\r\n\r\nhi"))}, verdict: goOnly},
		{name: "raw malformed header", patch: map[string]any{"to": nil, "text": nil, "raw": b64([]byte("no header here"))}, verdict: goOnly},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(tc.json)
			if tc.json == "" {
				req := map[string]any{"account": "alice@example.com", "to": []any{"bob@example.org"}, "text": "hi"}
				for k, v := range maps.All(tc.patch) {
					if v == nil {
						delete(req, k)
					} else {
						req[k] = v
					}
				}
				var err error
				if data, err = json.Marshal(req); err != nil {
					t.Fatal(err)
				}
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("test JSON is malformed: %v", err)
			}
			schemaErr := sch.Validate(inst)
			_, goErr := Decode(data)

			wantSchema, wantGo := tc.verdict == both, tc.verdict == both
			if tc.verdict == goOnly {
				wantSchema = true
			}
			if (schemaErr == nil) != wantSchema {
				t.Errorf("schema accepts = %v, want %v: %v", schemaErr == nil, wantSchema, schemaErr)
			}
			if (goErr == nil) != wantGo {
				t.Errorf("Decode accepts = %v, want %v: %v", goErr == nil, wantGo, goErr)
			}
		})
	}
}
