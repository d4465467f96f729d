package message

import (
	"errors"
	"fmt"
	"strings"
)

// Limits of a send request. Lengths counted in characters are Unicode code
// points, the unit of JSON Schema's maxLength, so that the schema and Validate
// agree; for the fields restricted to ASCII, characters and octets coincide.
const (
	// MaxRequestSize is the largest send request Decode reads, in bytes. It is
	// Pub/Sub's limit on a published message (MaxPublishRequestBytes = 1e7 in
	// cloud.google.com/go/pubsub/v2), so anything larger cannot have come from
	// the topic and is refused before parsing.
	MaxRequestSize = 10_000_000

	// MaxMessageSize is the largest message Gmail sends, in bytes: the Gmail
	// API discovery document declares maxSize 36700160 (35 MB) for
	// users.messages.send. Compose and CheckRaw enforce it.
	MaxMessageSize = 36_700_160

	// MaxRecipients is Gmail's limit on recipients per message, counted
	// across to, cc and bcc together. reply_to has the same cap of its own.
	MaxRecipients = 100

	// MaxAttachments bounds the parts a single request can ask for.
	MaxAttachments = 100

	// MaxCustomHeaders bounds the entries in headers.
	MaxCustomHeaders = 50

	// MaxHeaderNameLen and MaxHeaderValueLen bound a custom header. Together
	// with ": " they stay within 998 octets, RFC 5322's line limit (§2.1.1),
	// so that a value without spaces still fits on one line and is never
	// split. The name's cap is also below the 74 characters at which
	// go-message v0.18.2 panics folding a header.
	MaxHeaderNameLen  = 64
	MaxHeaderValueLen = 900

	// MaxSubjectLen leaves room for "Subject: " within RFC 5322's 998-octet
	// line, for the same reason.
	MaxSubjectLen = 900

	// MaxFromNameLen bounds from_name.
	MaxFromNameLen = 256

	// MaxAddressLen bounds one entry of to, cc, bcc or reply_to, display name
	// included.
	MaxAddressLen = 512

	// MaxAddressHeaderLen bounds each of To, Cc, Bcc and Reply-To as
	// composed, in octets after RFC 2047 encoding: 100 ordinary addresses
	// take a few kilobytes, and go-message folds a header in time that grows
	// with the square of its length.
	MaxAddressHeaderLen = 32 << 10

	// MaxAccountLen is RFC 5321's limit on a mailbox (254 octets, after
	// erratum 1690); account is ASCII in practice.
	MaxAccountLen = 254

	// MaxMessageIDLen bounds in_reply_to and each entry of references.
	MaxMessageIDLen = 512

	// MaxReferences bounds the entries in references.
	MaxReferences = 100

	// MaxFilenameLen, MaxContentTypeLen and MaxContentIDLen bound the header
	// values of an attachment.
	MaxFilenameLen    = 255
	MaxContentTypeLen = 255
	MaxContentIDLen   = 255

	// MaxIdempotencyKeyLen bounds idempotency_key, which is printable ASCII.
	MaxIdempotencyKeyLen = 512
)

var (
	// ErrInvalid matches every error that rejects a request or message as it
	// stands (*ValidationError and *SizeError): retrying it cannot succeed.
	ErrInvalid = errors.New("invalid send request")

	// ErrTooLarge matches a *SizeError: a request or message over one of the
	// size limits.
	ErrTooLarge = errors.New("too large")
)

// SizeError reports input over a size limit. It matches ErrTooLarge and
// ErrInvalid.
type SizeError struct {
	// What names the input: "send request", "raw message" or "composed
	// message".
	What string
	// Size is the input's size in bytes and Limit the largest size allowed.
	Size, Limit int64
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("message: %s is %d bytes, over the limit of %d bytes", e.What, e.Size, e.Limit)
}

// Is lets errors.Is match ErrTooLarge and ErrInvalid.
func (e *SizeError) Is(target error) bool {
	return target == ErrTooLarge || target == ErrInvalid
}

// Problem is one broken rule. Field is a path into the request such as
// "to[3]", "attachments[0].content_type" or `headers["X-Id"]`; it is empty
// when the problem concerns the request as a whole (malformed JSON).
type Problem struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// ValidationError lists every problem found in a request, so that a publisher
// can fix them all at once. It matches ErrInvalid.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("message: invalid send request: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is lets errors.Is match ErrInvalid.
func (e *ValidationError) Is(target error) bool {
	return target == ErrInvalid
}

// problems accumulates Problems; its zero value is ready to use.
type problems struct {
	list []Problem
}

func (p *problems) add(field, format string, args ...any) {
	p.list = append(p.list, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: p.list}
}
