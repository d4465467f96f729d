package results

import (
	"strconv"

	"github.com/gmailrelay/gmailrelay/internal/jsonenc"
)

// appendJSON appends e as json.Marshal writes it, byte for byte
// (FuzzAppendJSON holds it to that). Marshal's reflection was most of the
// cost of turning a result into a message, for ten known fields.
func (e *Event) appendJSON(b []byte) ([]byte, error) {
	b = appendField(b, '{', "idempotency_key", e.IdempotencyKey)
	b = appendField(b, ',', "pubsub_message_id", e.PubSubMessageID)
	b = appendField(b, ',', "account", e.Account)
	b = appendField(b, ',', "status", string(e.Status))
	if e.GmailMessageID != "" {
		b = appendField(b, ',', "gmail_message_id", e.GmailMessageID)
	}
	if e.GmailThreadID != "" {
		b = appendField(b, ',', "gmail_thread_id", e.GmailThreadID)
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(e.Attempt), 10)
	t, err := e.FinishedAt.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b = append(append(b, `,"finished_at":`...), t...)
	if e.MaybeDuplicate {
		b = append(b, `,"maybe_duplicate":true`...)
	}
	if e.Error != nil {
		b = append(b, `,"error":`...)
		b = appendField(b, '{', "code", e.Error.Code)
		b = appendField(b, ',', "message", e.Error.Message)
		b = append(b, `,"retryable":`...)
		b = strconv.AppendBool(b, e.Error.Retryable)
		if e.Error.ReconnectURL != "" {
			b = appendField(b, ',', "reconnect_url", e.Error.ReconnectURL)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// appendField appends sep, the key (which needs no escaping) and the value
// as a JSON string.
func appendField(b []byte, sep byte, key, v string) []byte {
	b = append(append(append(b, sep, '"'), key...), '"', ':')
	return jsonenc.AppendString(b, v)
}
