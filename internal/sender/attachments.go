package sender

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/attachments"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/policy"
)

// Objects reads the Cloud Storage objects a request attaches by reference
// (attachments[].gcs_uri), with the sender's own identity. Its errors
// match attachments.ErrNotFound, ErrDenied, ErrChanged and ErrUnavailable.
type Objects interface {
	// Stat returns the metadata of generation of bucket/name (0: the live
	// object).
	Stat(ctx context.Context, bucket, name string, generation int64) (*attachments.Object, error)
	// Open streams generation of bucket/name, which must be size bytes.
	Open(ctx context.Context, bucket, name string, generation, size int64) (io.ReadCloser, error)
	// Delete deletes generation of bucket/name, if it is still that one.
	Delete(ctx context.Context, bucket, name string, generation int64) error
}

var _ Objects = (*attachments.GCS)(nil)

// Attachments configures attachments by Cloud Storage reference.
//
// Who may reference what: the sender reads objects with its own identity,
// which can read the relay's bucket, and the publishers of every app can
// write there. So that one app cannot have the relay mail another app's
// uploads (a confused deputy), an object in Bucket must sit under the
// prefix "<app>/" of the app the request came from; Terraform limits each
// app's objectCreator to that prefix. ExtraBuckets are the operator's, who
// grants their readers, and have no prefix rule. Nothing else is read.
type Attachments struct {
	Objects Objects
	// Bucket is the relay's own bucket (ATTACHMENTS_BUCKET); empty turns
	// attachments by reference off.
	Bucket string
	// ExtraBuckets are the operator's other buckets the sender may read
	// (ATTACHMENTS_EXTRA_BUCKETS).
	ExtraBuckets []string
	// DeleteAfterSend deletes each object of Bucket a message attached
	// once the message is recorded sent (ATTACHMENTS_DELETE_AFTER_SEND);
	// the extra buckets' objects are never deleted.
	DeleteAfterSend bool
}

// statTimeout bounds the metadata reads of one delivery's attachments.
const statTimeout = 20 * time.Second

// ref is one by-reference attachment, resolved.
type ref struct {
	bucket, name     string
	generation, size int64
	// own: in the relay's bucket, so deletable after the send.
	own bool
}

// payload is the message to send: raw bytes, or a request whose
// attachments are streamed from Cloud Storage into each Gmail call.
type payload struct {
	// raw is the whole message, when nothing is by reference.
	raw []byte
	// Otherwise req is the request with its by-reference attachments
	// resolved (refs, by attachment index), opts composes it, and size is
	// its exact composed length.
	req     *message.Request
	opts    message.ComposeOptions
	refs    map[int]ref
	size    int64
	objects Objects
}

// errStreamClosed ends a composition whose upload is over.
var errStreamClosed = errors.New("sender: the upload stopped reading the message")

// composeError is a composition that failed while Gmail read it: the
// message never reached Gmail whole, and f says why.
type composeError struct{ f *gmail.Failure }

func (e *composeError) Error() string { return e.f.Error() }

// send makes one Gmail call with the message. A streamed message is
// composed afresh for each call, its objects read again at the generation
// stat'ed, so that no call needs the whole message in memory.
func (p *payload) send(ctx context.Context, mb *gmail.Mailbox, threadID string) (*gmail.Sent, error) {
	if p.req == nil {
		return gmail.Send(ctx, mb, p.raw, threadID)
	}
	st := p.stream(ctx)
	sent, err := gmail.SendReader(ctx, mb, st, p.size, threadID)
	if cerr := st.Close(); cerr != nil && err != nil {
		// Composition failed first: that is the cause, whatever the
		// upload made of it.
		return nil, &composeError{f: attachmentFailure(cerr)}
	}
	return sent, err
}

// stream is one composition of a payload, read through a pipe: ComposeTo
// runs in a goroutine, writing as the upload reads.
type stream struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
	// closing is set once the reader is done with the stream: an error the
	// composition meets after that is the consequence, not a cause.
	closing atomic.Bool
	err     error
}

func (p *payload) stream(ctx context.Context) *stream {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	st := &stream{pr: pr, cancel: cancel, done: make(chan struct{})}
	opts := p.opts
	opts.Open = func(i int, _ message.Attachment) (io.ReadCloser, error) {
		r := p.refs[i]
		return p.objects.Open(ctx, r.bucket, r.name, r.generation, r.size)
	}
	go func() {
		defer close(st.done)
		_, err := message.ComposeTo(pw, p.req, opts)
		if err != nil && !st.closing.Load() {
			// Stored before the pipe reports it, so that the reader sees
			// it once its read fails.
			st.err = err
		}
		pw.CloseWithError(err)
	}()
	return st
}

func (st *stream) Read(b []byte) (int, error) { return st.pr.Read(b) }

// Close stops the composition, waits for its goroutine, and returns the
// error it failed with before the reader gave up, if any.
func (st *stream) Close() error {
	st.closing.Store(true)
	st.cancel()
	_ = st.pr.CloseWithError(errStreamClosed)
	<-st.done
	return st.err
}

// compose returns the message to send: a raw request as it came, after
// CheckRaw; a composed request, whole, when it has no attachment by
// reference; else the request resolved (resolve), its size checked, to be
// streamed into each Gmail call. Errors are *gmail.Failure when they say
// more than invalid_request.
func (j *job) compose(ctx context.Context, now time.Time, aliases []string) (*payload, error) {
	if len(j.req.Raw) > 0 {
		if err := message.CheckRaw(j.req.Raw, j.account, aliases...); err != nil {
			return nil, err
		}
		return &payload{raw: j.req.Raw}, nil
	}
	// The Message-ID derives from the request's scope (app, account, key),
	// so every delivery of one request composes the same message, whichever
	// way the key came, while the same key from another app or mailbox of
	// the domain gets its own: a recipient's Gmail may take two messages
	// with one Message-ID for one. The key may have come from the
	// attribute: as the request's own field, Compose holds it to the
	// field's rules.
	req := *j.req
	req.IdempotencyKey = j.key
	opts := message.ComposeOptions{Now: now, MessageIDKey: MessageIDKey(j.id), Aliases: aliases}
	if !slices.ContainsFunc(req.Attachments, func(a message.Attachment) bool { return a.ByReference() }) {
		raw, err := message.Compose(&req, opts)
		if err != nil {
			return nil, err
		}
		return &payload{raw: raw}, nil
	}
	refs, f := j.resolve(ctx, &req)
	if f != nil {
		return nil, f
	}
	// Every size is known before anything is read or sent: a message over
	// Gmail's limit costs one Stat per object, and no Gmail call.
	size, err := message.ComposedSize(&req, opts)
	if err != nil {
		var se *message.SizeError
		if errors.As(err, &se) {
			return nil, &gmail.Failure{Code: gmail.CodeInvalidRequest, Message: fmt.Sprintf(
				"the message would be %d bytes once composed, over Gmail's limit of %d bytes (35 MB): attachments grow by a third in base64, so together they can be about 26 MB. "+
					"Send smaller files, or links to them", se.Size, se.Limit)}
		}
		return nil, err
	}
	return &payload{req: &req, opts: opts, refs: refs, size: size, objects: j.s.opts.Attachments.Objects}, nil
}

// composeFailed ends a delivery whose message could not be made.
func (j *job) composeFailed(ctx context.Context, err error) error {
	var f *gmail.Failure
	if !errors.As(err, &f) {
		f = &gmail.Failure{Code: gmail.CodeInvalidRequest, Message: err.Error()}
	}
	if f.Retryable {
		return j.retry(ctx, f, nil)
	}
	return j.fail(ctx, f)
}

// resolve applies the rules of Attachments to req's by-reference
// attachments, stats each object, and fills in what the request left to
// the object: filename, content type, and the generation and size every
// read is then pinned to. req is the job's own copy; its Attachments are
// copied before they change.
func (j *job) resolve(ctx context.Context, req *message.Request) (map[int]ref, *gmail.Failure) {
	cfg := j.s.opts.Attachments
	app := j.d.App
	if app == "" {
		app = policy.DefaultApp
	}
	req.Attachments = slices.Clone(req.Attachments)
	refs := make(map[int]ref)
	// The client retries Cloud Storage's 5xx with backoff; bounded here, an
	// outage is nacked well before the push request ends.
	ctx, cancel := context.WithTimeout(ctx, statTimeout)
	defer cancel()
	for i := range req.Attachments {
		a := &req.Attachments[i]
		if !a.ByReference() {
			continue
		}
		field := fmt.Sprintf("attachments[%d].gcs_uri", i)
		bucket, name, err := message.ParseGCSURI(a.GCSURI)
		if err != nil { // Validate has checked it
			return nil, &gmail.Failure{Code: gmail.CodeInvalidRequest, Message: field + ": " + err.Error()}
		}
		r := ref{bucket: bucket, name: name}
		switch {
		case cfg.Bucket == "" || cfg.Objects == nil:
			return nil, &gmail.Failure{Code: gmail.CodeAttachmentDenied, Message: field + ": attachments by Cloud Storage reference are turned off on this relay " +
				"(ATTACHMENTS_BUCKET is not set). Send the file as data, or ask the operator to set ATTACHMENTS_BUCKET (Terraform creates the bucket and sets it)"}
		case bucket == cfg.Bucket:
			if !strings.HasPrefix(name, app+"/") {
				return nil, &gmail.Failure{Code: gmail.CodeAttachmentDenied, Message: fmt.Sprintf(
					"%s: objects in the relay's bucket gs://%s must be under the prefix of the app that sends them, and this request came from app %q: "+
						"upload the file as gs://%s/%s/%s and reference that (each app's publishers may create objects under their own prefix only)",
					field, bucket, app, bucket, app, name[strings.LastIndexByte(name, '/')+1:])}
			}
			r.own = true
		case slices.Contains(cfg.ExtraBuckets, bucket):
		default:
			allowed := "gs://" + cfg.Bucket + "/" + app + "/"
			for _, b := range cfg.ExtraBuckets {
				allowed += ", gs://" + b
			}
			return nil, &gmail.Failure{Code: gmail.CodeAttachmentDenied, Message: fmt.Sprintf(
				"%s: the relay does not read the bucket %q; it reads only %s. Upload the file to gs://%s/%s/ "+
					"(or ask the operator to add the bucket to ATTACHMENTS_EXTRA_BUCKETS)", field, bucket, allowed, cfg.Bucket, app)}
		}
		obj, err := cfg.Objects.Stat(ctx, bucket, name, a.Generation)
		if err != nil {
			return nil, storageFailure(field, a.GCSURI, err)
		}
		if strings.EqualFold(obj.ContentEncoding, "gzip") {
			// Cloud Storage serves such objects decompressed, so their
			// size is not known until they are read.
			return nil, &gmail.Failure{Code: gmail.CodeInvalidRequest, Message: field + ": " + a.GCSURI +
				" is stored with Content-Encoding gzip, so its size is not known before it is read: upload the file without Content-Encoding (gcloud storage cp without -z or -Z)"}
		}
		r.generation, r.size = obj.Generation, obj.Size
		a.Generation, a.Size = obj.Generation, obj.Size
		if a.Filename == "" || a.ContentType == "" {
			fn, ct := message.ObjectDefaults(obj.Name, obj.ContentType, obj.ContentDisposition)
			if a.Filename == "" {
				a.Filename = fn
			}
			if a.ContentType == "" {
				a.ContentType = ct
			}
		}
		refs[i] = r
	}
	return refs, nil
}

// storageFailure reports a Stat or read that failed.
func storageFailure(field, uri string, err error) *gmail.Failure {
	switch {
	case errors.Is(err, attachments.ErrNotFound):
		return &gmail.Failure{Code: gmail.CodeAttachmentNotFound, Message: fmt.Sprintf(
			"%s: %s does not exist (or the generation named is gone): upload it before publishing the request, and keep it until the result arrives "+
				"(the relay's bucket deletes objects after its retention period)", field, uri)}
	case errors.Is(err, attachments.ErrDenied):
		return &gmail.Failure{Code: gmail.CodeAttachmentDenied, Message: fmt.Sprintf(
			"%s: Cloud Storage refused the relay's sender access to %s (%v): the operator must grant the sender's service account roles/storage.objectViewer on the bucket "+
				"(Terraform does for the relay's own bucket)", field, uri, err)}
	case errors.Is(err, attachments.ErrChanged):
		return &gmail.Failure{Code: gmail.CodeAttachmentChanged, Message: fmt.Sprintf(
			"%s: %s changed since the request was published (%v): the relay sends only the generation it was given, or the one it first read; "+
				"publish the request again with the object's current generation", field, uri, err)}
	case errors.Is(err, attachments.ErrUnavailable):
		return &gmail.Failure{Code: gmail.CodeInternal, Retryable: true, Message: fmt.Sprintf(
			"%s: Cloud Storage did not answer for %s (%v); the relay retries", field, uri, err)}
	}
	return &gmail.Failure{Code: gmail.CodeInternal, Message: fmt.Sprintf("%s: reading %s failed: %v", field, uri, err)}
}

// attachmentFailure reports a composition that failed while the upload
// read it: an object that changed or went, or Cloud Storage failing, with
// the attachment's field when the error names it.
func attachmentFailure(err error) *gmail.Failure {
	field := "attachments"
	// message.ComposeTo's error starts with the attachment's index.
	if msg := err.Error(); strings.Contains(msg, "attachments[") {
		i := strings.Index(msg, "attachments[")
		if k := strings.IndexByte(msg[i:], ']'); k > 0 {
			field = msg[i:i+k+1] + ".gcs_uri"
		}
	}
	f := storageFailure(field, "the object", err)
	if f.Code == gmail.CodeInternal && !f.Retryable {
		// Composition failed for another reason (a pipe, a context): no
		// part of the message reached Gmail whole, so it is safe to retry.
		f.Retryable = true
	}
	return f
}

// deleteSent deletes the objects of the relay's bucket that p attached,
// once the message is recorded sent, when the operator asked for it. A
// failure is logged: the message is out, and the bucket's lifecycle rule
// deletes the object later anyway.
func (j *job) deleteSent(ctx context.Context, p *payload) {
	cfg := j.s.opts.Attachments
	if p == nil || !cfg.DeleteAfterSend || cfg.Objects == nil {
		return
	}
	for _, r := range p.refs {
		if !r.own {
			continue
		}
		if err := cfg.Objects.Delete(ctx, r.bucket, r.name, r.generation); err != nil {
			logging.FromContext(ctx).WarnContext(ctx, "deleting a sent attachment failed; the bucket's lifecycle rule will",
				"bucket", r.bucket, "object", r.name, "generation", r.generation, "error", err)
		}
	}
}
