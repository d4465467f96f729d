package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/dev/devserver"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// TestAliasesThroughDev is issue 18's alias "Done when" through make dev's
// stack: scripts/admin.sh aliases registers an alias that the mailbox has
// verified in the sandbox's Gmail; a request with it as from arrives in the
// outbox with that From, and one with an unregistered alias is refused with
// the fix (its ledger record, read through admin, says so).
func TestAliasesThroughDev(t *testing.T) {
	testenv.Integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startDev(t)
	const alice = "alias-alice@example.com"
	connectMailbox(t, srv, alice)
	srv.Sandbox.SetAliases(alice, []string{"billing@example.com", "sales@example.com"}) // verified in Gmail

	cmd := exec.CommandContext(ctx, "../../scripts/admin.sh", "aliases", alice, "Billing@Example.com")
	cmd.Env = append(os.Environ(), "ADMIN_URL="+srv.BaseURL+"/admin")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), `"billing@example.com"`) {
		t.Fatalf("admin.sh aliases: %v\n%s", err, out)
	}

	ps, err := pubsub.NewClient(ctx, devserver.Project, option.WithEndpoint(srv.PubSubAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	pub := ps.Publisher(devserver.SendTopic)
	defer pub.Stop()
	for _, req := range []string{
		`{"account": "` + alice + `", "from": "billing@example.com", "from_name": "Acme Billing", "to": ["alias-rcpt@example.org"], "subject": "registered", "text": "x", "idempotency_key": "alias-ok"}`,
		`{"account": "` + alice + `", "from": "sales@example.com", "to": ["alias-rcpt@example.org"], "subject": "unregistered", "text": "x", "idempotency_key": "alias-refused"}`,
	} {
		if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(req)}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var sent []*mail.Message
	var refusal struct {
		State        string `json:"state"`
		ErrorCode    string `json:"error_code"`
		ErrorMessage string `json:"error_message"`
	}
	for sent == nil || refusal.State == "" {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out: outbox %d messages, refused record %+v", len(sent), refusal)
		case <-time.After(50 * time.Millisecond):
		}
		sent = outboxTo(t, srv.OutboxDir, "alias-rcpt@example.org")
		resp, err := http.Get(srv.BaseURL + "/admin/messages/alias-refused?account=" + alice)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			_ = json.NewDecoder(resp.Body).Decode(&refusal)
		}
		resp.Body.Close()
	}
	if len(sent) != 1 {
		t.Fatalf("outbox has %d messages to the recipient; want only the registered alias's", len(sent))
	}
	if from, err := mail.ParseAddress(sent[0].Header.Get("From")); err != nil || from.Address != "billing@example.com" || from.Name != "Acme Billing" {
		t.Errorf("the message arrived From %q; want Acme Billing <billing@example.com>", sent[0].Header.Get("From"))
	}
	if refusal.State != "failed" || refusal.ErrorCode != "invalid_request" ||
		!strings.Contains(refusal.ErrorMessage, "scripts/admin.sh aliases "+alice) || !strings.Contains(refusal.ErrorMessage, "Send mail as") {
		t.Errorf("the unregistered alias's record = %+v; want failed invalid_request with the fix", refusal)
	}
}
