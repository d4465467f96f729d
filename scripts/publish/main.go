// Command publish publishes one send request, read as JSON from stdin, to
// an app's send topic: the embedded or gcloud emulator when
// PUBSUB_EMULATOR_HOST is set, otherwise the project in
// GOOGLE_CLOUD_PROJECT with application default credentials. With -wait it
// also waits for the request's result event and prints it.
//
// The topic is -topic; without it, gmail-send, or the one app's topic when
// APPS (as `make dev` reads it) declares a single app. A topic that does
// not exist is reported with the send topics that do.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/uuid"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailrelay/gmailrelay/internal/policy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "publish:", err)
		os.Exit(1)
	}
}

func run() error {
	project := flag.String("project", os.Getenv("GOOGLE_CLOUD_PROJECT"), "Google Cloud project (default $GOOGLE_CLOUD_PROJECT, or gmail-relay-dev with an emulator)")
	topic := flag.String("topic", "", "the app's send topic: gmail-send-<app> for an app of APPS (default gmail-send, or the one app's topic when APPS declares one)")
	results := flag.String("results-topic", "gmail-send-results", "topic the relay reports results on (for -wait)")
	wait := flag.Duration("wait", 0, "wait this long for the result event and print it (e.g. 30s)")
	flag.Parse()
	if *topic == "" {
		t, err := defaultTopic(os.Getenv("APPS"))
		if err != nil {
			return err
		}
		*topic = t
	}

	if *project == "" {
		if os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
			return errors.New("set GOOGLE_CLOUD_PROJECT (or -project), or PUBSUB_EMULATOR_HOST for a local emulator")
		}
		*project = "gmail-relay-dev"
	}
	data, err := io.ReadAll(io.LimitReader(os.Stdin, 10<<20+1))
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if len(data) > 10<<20 {
		return errors.New("the request is over Pub/Sub's 10 MB message limit")
	}
	var req struct {
		Account        string `json:"account"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return fmt.Errorf("stdin is not a JSON send request: %w", err)
	}
	if req.IdempotencyKey == "" {
		// Give the request a key so a retry of this command is deduplicated
		// and -wait can find the result.
		req.IdempotencyKey = "publish-" + uuid.NewString()
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		m["idempotency_key"] = req.IdempotencyKey
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(m)
		data = buf.Bytes()
	}

	// Every step, not just the wait for the result, is bounded, so a wrong
	// address fails in seconds instead of at the gRPC default.
	limit := *wait
	if limit <= 0 {
		limit = 30 * time.Second
	}
	ctx, stop := context.WithTimeout(context.Background(), limit)
	defer stop()
	if host := os.Getenv("PUBSUB_EMULATOR_HOST"); host != "" {
		conn, err := (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, "tcp", host)
		if err != nil {
			return fmt.Errorf("nothing listens on PUBSUB_EMULATOR_HOST=%s (is `make dev` running, and on that PUBSUB_PORT?): %w", host, err)
		}
		conn.Close()
	}
	client, err := pubsub.NewClient(ctx, *project)
	if err != nil {
		return fmt.Errorf("Pub/Sub client: %w", err)
	}
	defer client.Close()

	var sub string
	if *wait > 0 {
		// A subscription made before publishing sees the result for sure.
		sub = fmt.Sprintf("projects/%s/subscriptions/publish-wait-%s", *project, uuid.NewString()[:8])
		_, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
			Name: sub, Topic: "projects/" + *project + "/topics/" + *results, AckDeadlineSeconds: 10,
			Filter: fmt.Sprintf(`attributes.idempotency_key = %q`, req.IdempotencyKey),
		})
		if err != nil {
			return fmt.Errorf("creating a subscription on %s to wait for the result: %w", *results, err)
		}
		defer client.SubscriptionAdminClient.DeleteSubscription(context.Background(), &pubsubpb.DeleteSubscriptionRequest{Subscription: sub})
	}

	p := client.Publisher(*topic)
	defer p.Stop()
	id, err := p.Publish(ctx, &pubsub.Message{Data: data, Attributes: map[string]string{"idempotency_key": req.IdempotencyKey}}).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("topic %s does not exist in project %s; %s", *topic, *project, sendTopics(ctx, client, *project))
	}
	if err != nil {
		return fmt.Errorf("publishing to %s: %w", *topic, err)
	}
	fmt.Printf("published message %s (idempotency_key %s) to %s\n", id, req.IdempotencyKey, *topic)
	if *wait == 0 {
		return nil
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var result []byte
	err = client.Subscriber(sub).Receive(wctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if m.Attributes["idempotency_key"] == req.IdempotencyKey && result == nil {
			result = m.Data
			cancel()
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("waiting for the result: %w", err)
	}
	if result == nil {
		return fmt.Errorf("no result within %s (is the relay running? `make dev`)", *wait)
	}
	fmt.Printf("result: %s\n", bytes.TrimSpace(result))
	var ev struct {
		Status string          `json:"status"`
		Error  json.RawMessage `json:"error"`
	}
	_ = json.Unmarshal(result, &ev)
	switch {
	case ev.Status == "failed":
		return errors.New("the relay reported a failure (see result above)")
	case ev.Status == "duplicate" && len(ev.Error) > 0 && string(ev.Error) != "null":
		return errors.New("this same request already failed under this idempotency_key (see result above); publish it corrected: a request whose content differs may reuse the key")
	}
	return nil
}

// defaultTopic is the topic without -topic: gmail-send without APPS, the
// app's topic when APPS declares one app, and otherwise an error listing
// the choices.
func defaultTopic(appsJSON string) (string, error) {
	apps, errs := policy.ParseApps(appsJSON)
	if len(errs) > 0 {
		return "", fmt.Errorf("APPS does not parse, so the app's topic is unknown; pass -topic gmail-send-<app>: %w", errors.Join(errs...))
	}
	topics := slices.Sorted(maps.Keys(apps.Topics()))
	if len(topics) != 1 {
		return "", fmt.Errorf("APPS declares %d apps; choose a topic with -topic: %s", len(topics), strings.Join(topics, ", "))
	}
	return topics[0], nil
}

// sendTopics says which send topics the project has, for the error of a
// topic that does not.
func sendTopics(ctx context.Context, client *pubsub.Client, project string) string {
	var names []string
	it := client.TopicAdminClient.ListTopics(ctx, &pubsubpb.ListTopicsRequest{Project: "projects/" + project})
	for {
		t, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return "listing its topics failed too: " + err.Error()
		}
		name := t.GetName()[strings.LastIndexByte(t.GetName(), '/')+1:]
		if _, isApp := policy.AppFor(name + "-push"); isApp || name == policy.DefaultTopic {
			if name != "gmail-send-results" && name != "gmail-send-dead-letter" {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		return "it has no send topic (is the relay deployed, or `make dev` running?)"
	}
	slices.Sort(names)
	return "its send topics are: " + strings.Join(names, ", ") + " (pass one with -topic)"
}
