package function

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/pubsubevent"
)

// MaxPushBody caps a Pub/Sub push request: 10 MB of message data is about
// 13.4 MB in base64, plus the envelope and attributes.
const MaxPushBody = 16 << 20

// PushHandler handles one Pub/Sub message; an error asks for redelivery.
type PushHandler func(context.Context, *pubsubevent.Message) error

// PushFunction is a function fed by Pub/Sub push. Deployed, it is an HTTP
// function that reads the push request itself (ServeHTTP); make dev and
// tests hand it CloudEvents (CloudEvent). Both share one handler, built once.
//
// It is not a CloudEvent function behind the functions framework because
// the framework's CloudEvent path (cloudevents/sdk-go's
// NewHTTPReceiveHandler) passes every request through one shared channel:
// a message can run under another request's context, and is cancelled when
// that request ends, and after one client gives up the pairing of requests
// and messages is offset, so a push waits for the next one or for its
// deadline (cloudevents/sdk-go#1224, #1332; seen here as a push stalled for
// two minutes in the load harness). Reading the push here gives each
// message its own request's context, and one decoding pass.
type PushFunction struct {
	name  string
	log   *slog.Logger
	get   func() (PushHandler, error)
	serve http.Handler // the push handler behind the logging middleware
}

// Push returns the PushFunction whose handler build makes.
func Push[C any, PC interface {
	*C
	Validate() error
}](name string, build func(context.Context, *C) (PushHandler, error)) *PushFunction {
	log := logging.NewFromEnv().With("function", name)
	return newPushFunction(name, log, load[C, PC](name, log, build))
}

func newPushFunction(name string, log *slog.Logger, get func() (PushHandler, error)) *PushFunction {
	f := &PushFunction{name: name, log: log, get: get}
	f.serve = logging.Middleware(log, os.Getenv("GOOGLE_CLOUD_PROJECT"))(http.HandlerFunc(f.servePush))
	return f
}

// CloudEvent handles a messagePublished CloudEvent. An event that does not
// decode can never succeed, so it is acknowledged, and the log says why.
func (f *PushFunction) CloudEvent(ctx context.Context, e event.Event) error {
	h, err := f.get()
	if err != nil {
		return fmt.Errorf("%s is not configured: %w", f.name, err)
	}
	ctx = logging.WithLogger(ctx, f.log.With("event_id", e.ID()))
	m, err := pubsubevent.Decode(e)
	if err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "undecodable event acknowledged", "error", err)
		return nil
	}
	return call(ctx, h, m)
}

// call runs h, turning a panic into an error so that one poison message
// costs a redelivery (bounded by the subscription's dead-letter policy)
// rather than the process and every delivery in flight with it.
func call(ctx context.Context, h PushHandler, m *pubsubevent.Message) (err error) {
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

// ServeHTTP handles a Pub/Sub push request (or Eventarc's, whose body is
// the same). It answers 200 to acknowledge, as the framework did, and 500
// to have Pub/Sub redeliver; a body that cannot be a push is acknowledged,
// because redelivering it cannot help.
func (f *PushFunction) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := f.get(); err != nil {
		notReady(w, r)
		return
	}
	f.serve.ServeHTTP(w, r)
}

// servePush runs behind the middleware, with the request's logger in its
// context; ServeHTTP has seen the handler built.
func (f *PushFunction) servePush(w http.ResponseWriter, r *http.Request) {
	h, _ := f.get()
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Pub/Sub pushes with POST.", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPushBody))
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
	m, err := pubsubevent.DecodePush(body, r.Header.Get("Ce-Id"))
	if err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "undecodable push acknowledged", "error", err)
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx = logging.WithLogger(ctx, logging.FromContext(ctx).With("event_id", m.ID))
	if err := call(ctx, h, m); err != nil {
		// The handler logged the cause; Pub/Sub redelivers.
		http.Error(w, "The message was not delivered; Pub/Sub will redeliver it.", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}
