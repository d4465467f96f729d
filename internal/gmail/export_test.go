package gmail

import (
	"bytes"
	"context"

	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
)

// LibrarySend is an ordinary send as the client library makes it, on the
// same Mailbox and transport as Send. BenchmarkMultipart compares the two.
func LibrarySend(ctx context.Context, mb *Mailbox, raw []byte) (*gmailapi.Message, error) {
	return mb.svc.Users.Messages.Send("me", &gmailapi.Message{}).Context(ctx).Fields("id", "threadId").
		Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(0)).Do()
}

// MultipartBody is an upload's body as Send writes it, for
// FuzzMultipartBody.
func MultipartBody(meta, raw []byte, boundary string) []byte {
	return appendMultipartBody(nil, meta, raw, boundary)
}

// ReadSent is readSent, for FuzzReadSent.
var ReadSent = readSent
