// Package message owns the send request that applications publish to the
// gmail-send topic: its JSON form (Decode and the published JSON Schema), its
// rules (Validate, CheckSender, CheckRaw) and its translation into an RFC 5322 message that
// Gmail's users.messages.send accepts (Compose, ComposeTo).
//
// It reads JSON with encoding/json, addresses with net/mail and writes MIME
// with github.com/emersion/go-message; what it adds is the relay's rules.
// Everything that reaches a header is checked before it gets there, and
// composition re-checks the header it builds, so that no value taken from a
// request can add a header line of its own. Errors never echo bodies or
// attachment data; they name the offending field so that a publisher can fix
// its request from the result event alone.
package message
