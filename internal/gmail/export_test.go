package gmail

import (
	"bytes"
	"context"

	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
)

// LibrarySend is an ordinary send the way Send made it before it wrote the
// multipart request itself: through the client library, on the same
// Mailbox and transport. BenchmarkMultipart compares the two.
func LibrarySend(ctx context.Context, mb *Mailbox, raw []byte) (*gmailapi.Message, error) {
	ctx = context.WithValue(ctx, sizeHintKey{}, len(raw))
	return mb.svc.Users.Messages.Send("me", &gmailapi.Message{}).Context(ctx).Fields("id", "threadId").
		Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(0)).Do()
}

// MultipartBody is multipartBody, for FuzzMultipartBody.
var MultipartBody = multipartBody
