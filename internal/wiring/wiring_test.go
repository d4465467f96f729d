package wiring

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/sender"
)

// TestSenderCloser: the sender's closer closes what setup opened (the local
// ledger, the Secret Manager client, the results publisher), so the sender
// can no longer record a delivery, and leaves the injected Pub/Sub client
// open.
func TestSenderCloser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ps := pstest.NewServer()
	t.Cleanup(func() { ps.Close() })
	client, err := pubsub.NewClient(ctx, "p", option.WithEndpoint(ps.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/p/topics/results"}); err != nil {
		t.Fatal(err)
	}
	sm, err := secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })

	cfg := &config.Sender{
		Base:   config.Base{ProjectID: "p", LogLevel: "info"},
		OAuth:  config.OAuth{ClientID: "id", ClientSecret: "s", AuthURL: config.GoogleAuthURL, TokenURL: config.GoogleTokenURL, RevokeURL: config.GoogleRevokeURL},
		Stores: config.Stores{Backend: "local", StateDir: t.TempDir(), SecretManagerEmulatorHost: sm.Addr()},
		Gmail:  config.Gmail{Endpoint: "http://127.0.0.1:1/"}, ResultsTopic: "results",
		SendLease: time.Minute, SendTimeout: 5 * time.Second,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, closer, err := Sender(ctx, cfg, Deps{PubSub: client})
	if err != nil {
		t.Fatal(err)
	}
	// A request that cannot be valid fails permanently: acknowledged, with
	// a failure result.
	bad := sender.Delivery{MessageID: "m-1", Data: []byte(`{}`)}
	if err := s.Handle(ctx, bad); err != nil {
		t.Fatalf("before Close: %v, want an acknowledged failure", err)
	}
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	bad.MessageID = "m-2"
	if err := s.Handle(ctx, bad); err == nil {
		t.Error("after Close the sender still delivered: what setup opened is still open")
	}
	if _, err := client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: "projects/p/topics/results"}); err != nil {
		t.Errorf("the injected Pub/Sub client was closed too: %v", err)
	}
}
