package sendertest

import (
	"encoding/json"
	"maps"
)

// Request is a send request as a publisher writes it: a JSON object, so that
// tests can also write what the typed message.Request could not hold.
type Request map[string]any

// NewRequest returns a small valid request from account to one recipient.
func NewRequest(account, key string) Request {
	r := Request{
		"account": account,
		"to":      []string{"Bob <bob@example.org>"},
		"subject": "Invoice " + key,
		"text":    "Hello from the sender suite.",
	}
	if key != "" {
		r["idempotency_key"] = key
	}
	return r
}

// With returns a copy of r with the given fields set; a nil value deletes
// the field.
func (r Request) With(kv ...any) Request {
	c := maps.Clone(r)
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(c, k)
			continue
		}
		c[k] = kv[i+1]
	}
	return c
}

// JSON encodes r.
func (r Request) JSON() []byte {
	b, err := json.Marshal(map[string]any(r))
	if err != nil {
		panic(err)
	}
	return b
}
