package entrypoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"

	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/push"
)

// MaxPushBody caps a Pub/Sub push request: 10 MB of message data is about
// 13.4 MB in base64, plus the envelope and attributes.
const MaxPushBody = 16 << 20

// readBody reads a push body of at most MaxPushBody bytes. With a
// Content-Length (Pub/Sub sends one) it reads into one buffer of that size:
// io.ReadAll's doubling would hold a 13 MB body twice over as it grows.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n > MaxPushBody {
		return nil, &http.MaxBytesError{Limit: MaxPushBody}
	}
	body := http.MaxBytesReader(w, r.Body, MaxPushBody)
	if n <= 0 {
		return io.ReadAll(body)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, err
	}
	return b, nil
}

// PushHandler handles one Pub/Sub message; an error asks for redelivery.
type PushHandler func(context.Context, *push.Message) error

// pushHandler serves Pub/Sub push requests (and Eventarc's, whose body is
// the same) to a PushHandler. The relay reads the push body itself rather
// than register a CloudEvent function, because functions-framework-go
// v1.9.2's push-to-CloudEvent conversion drops deliveryAttempt and
// subscription, and cloudevents sdk-go v2.16.2 can answer a message under
// another request's context (cloudevents/sdk-go#1224, #1332).
type pushHandler PushHandler

// call runs h, turning a panic into an error so that one poison message
// costs a redelivery (bounded by the subscription's dead-letter policy)
// rather than the process and every delivery in flight with it.
func call(ctx context.Context, h PushHandler, m *push.Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			// The value and stack name code, never the message's content.
			logging.FromContext(ctx).ErrorContext(ctx, "handler panicked; the message will be redelivered",
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", v)
		}
	}()
	return h(ctx, m)
}

// ServeHTTP answers 200 to acknowledge and 500 to have Pub/Sub redeliver;
// a body that cannot be a push is acknowledged, because redelivering it
// cannot help. The logging middleware has put the logger in the context.
func (h pushHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Pub/Sub pushes with POST.", http.StatusMethodNotAllowed)
		return
	}
	body, err := readBody(w, r)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		logging.FromContext(ctx).ErrorContext(ctx, "push request over the size limit acknowledged", "limit", MaxPushBody)
		w.WriteHeader(http.StatusOK)
		return
	case err != nil:
		// The client went away mid-body; nothing was handled.
		http.Error(w, "The request body could not be read.", http.StatusBadRequest)
		return
	}
	m, err := push.DecodePush(body, r.Header.Get("Ce-Id"))
	if err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "undecodable push acknowledged", "error", err)
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx = logging.WithLogger(ctx, logging.FromContext(ctx).With("event_id", m.ID))
	// A request that streams attachments from Cloud Storage costs more
	// memory than its body said (admission.go).
	release, ok := chargeReferences(ctx, m.Data)
	if !ok {
		refuseBusy(w)
		return
	}
	defer release()
	if err := call(ctx, PushHandler(h), m); err != nil {
		// The handler logged the cause; Pub/Sub redelivers.
		http.Error(w, "The message was not delivered; Pub/Sub will redeliver it.", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}
