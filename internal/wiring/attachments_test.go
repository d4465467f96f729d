package wiring

import (
	"context"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/testing/storagetest"
)

// TestSenderAttachments: without ATTACHMENTS_BUCKET nothing is opened and
// references are off; with it, the given client is used and left open
// (the closer has nothing of it), and the settings pass through. Without a
// given client one is opened (TestPeakRSSByReference in internal/sender
// builds the sender that way, on STORAGE_EMULATOR_HOST).
func TestSenderAttachments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, client := storagetest.New(t, "gmail-relay-attachments")

	var cl closers
	a, err := senderAttachments(ctx, config.Attachments{}, Deps{Storage: client}, &cl)
	if err != nil || a.Objects != nil || a.Bucket != "" || len(cl) != 0 {
		t.Errorf("off: %+v, %v, %d closers; want nothing opened", a, err, len(cl))
	}

	c := config.Attachments{AttachmentsBucket: "gmail-relay-attachments", AttachmentsExtraBuckets: []string{"acme-exports"}, AttachmentsDeleteAfterSend: true}
	a, err = senderAttachments(ctx, c, Deps{Storage: client}, &cl)
	if err != nil || a.Objects == nil || a.Bucket != c.AttachmentsBucket || len(a.ExtraBuckets) != 1 || !a.DeleteAfterSend || len(cl) != 0 {
		t.Errorf("on: %+v, %v, %d closers", a, err, len(cl))
	}
	if _, err := a.Objects.Stat(ctx, "gmail-relay-attachments", "default/none", 0); err == nil {
		t.Error("Stat of a missing object succeeded: not the given client")
	}
}
