package message

import (
	_ "embed"
	"slices"
)

//go:embed schema/send-request.v1.schema.json
var schema []byte

// Schema returns the JSON Schema (draft 2020-12) of the send request, for
// publishers to validate against before they publish. It is a copy, so the
// caller may keep or change it.
func Schema() []byte {
	return slices.Clone(schema)
}
