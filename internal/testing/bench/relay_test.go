package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// relay is the production sender wired to a fake Google: Secret Manager
// through tokenstore and the real gRPC client, the OAuth client, the Gmail
// client, results through the real Pub/Sub publisher, registry.Local, and a
// counting ledger.
type relay struct {
	g         *google
	Tokens    *tokenstore.Store
	Registry  registry.Store
	Ledger    countingLedger
	OAuth     *oauth.Client
	PubSub    *pubsub.Client
	Publisher *results.Publisher
	Sender    *sender.Sender
	Accounts  []string
	GmailURL  string
	// Ctx carries a production-format logger at info level that writes to
	// io.Discard: logging costs what it costs in production, minus the
	// write.
	Ctx context.Context
}

type relayOpts struct {
	Ledger   countingLedger
	Registry registry.Store // nil: registry.Local in a scratch directory
	Accounts int
	// Subscribe creates a pull subscription on the results topic, for
	// tests that read the results back.
	Subscribe   bool
	SendTimeout time.Duration
	Lease       time.Duration
}

const resultsSub = "results-bench"

func newRelay(tb testing.TB, g *google, o relayOpts) *relay {
	tb.Helper()
	ctx := context.Background()
	smc, err := secretmanager.NewClient(ctx, secretfake.ClientOptions(g.SMAddr)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { smc.Close() })
	reg := o.Registry
	if reg == nil {
		local, err := registry.NewLocal(filepath.Join(tbScratch(tb, "gmailrelay-bench-reg-"), "accounts.json"))
		if err != nil {
			tb.Fatal(err)
		}
		reg = local
	}
	psc, err := pubsubClient(ctx, g.PubSubAddr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { psc.Close() })
	topic := "projects/" + project + "/topics/" + resultsTopic
	if _, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		tb.Fatal(err)
	}
	if o.Subscribe {
		if _, err := psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
			Name: "projects/" + project + "/subscriptions/" + resultsSub, Topic: topic, AckDeadlineSeconds: 600,
		}); err != nil {
			tb.Fatal(err)
		}
	}
	pub := results.NewPublisher(psc, resultsTopic)
	tb.Cleanup(pub.Stop)
	oc, err := oauth.New(oauth.Config{ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirectURL,
		AuthURL: g.SandboxURL + sandbox.AuthPath, TokenURL: g.SandboxURL + sandbox.TokenPath, RevokeURL: g.SandboxURL + sandbox.RevokePath})
	if err != nil {
		tb.Fatal(err)
	}
	r := &relay{g: g, Tokens: tokenstore.New(smc, project), Registry: reg, Ledger: o.Ledger, OAuth: oc, PubSub: psc, Publisher: pub,
		GmailURL: g.SandboxURL + "/",
		Ctx:      logging.WithLogger(ctx, logging.New(io.Discard, slog.LevelInfo))}
	if r.Ledger == nil {
		r.Ledger = newMemLedger()
	}
	if o.SendTimeout == 0 {
		o.SendTimeout = time.Minute
	}
	if o.Lease == 0 {
		o.Lease = 2 * time.Minute
	}
	r.Sender, err = sender.New(sender.Options{Ledger: r.Ledger, Accounts: reg, Tokens: r.Tokens, Results: pub, OAuth: oc,
		Gmail: gmail.New(r.GmailURL, nil), ConnectURL: connectURL, Lease: o.Lease, SendTimeout: o.SendTimeout})
	if err != nil {
		tb.Fatal(err)
	}
	// Before the stores' directory goes (cleanups run last first): the
	// sender writes its last daily-quota counts on Close.
	tb.Cleanup(func() { _ = r.Sender.Close() })
	n := o.Accounts
	if n == 0 {
		n = 50
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		email := fmt.Sprintf("user%03d@example.com", i)
		r.Accounts = append(r.Accounts, email)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := connectAccount(ctx, g.SandboxURL, r.Tokens, reg, email); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return r
}

// pubsubClient is a Pub/Sub client for the helper's Pub/Sub, with telemetry
// off as wiring.Sender makes the sender's.
func pubsubClient(ctx context.Context, addr string) (*pubsub.Client, error) {
	return pubsub.NewClient(ctx, project, option.WithEndpoint(addr), option.WithoutAuthentication(), option.WithTelemetryDisabled(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
}

// connectAccount does what confirm does, without a browser: consent on the
// sandbox's page, exchange the code with PKCE, store the refresh token in
// Secret Manager and mark the account connected.
func connectAccount(ctx context.Context, sandboxURL string, tokens *tokenstore.Store, reg registry.Store, email string) error {
	conf := &oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirectURL, Scopes: oauth.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: sandboxURL + sandbox.AuthPath, TokenURL: sandboxURL + sandbox.TokenPath, AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	loc, err := sandbox.Consent(ctx, nil, conf.AuthCodeURL("bench", oauth2.AccessTypeOffline, oauth2.ApprovalForce,
		oauth2.S256ChallengeOption(verifier)), email)
	if err != nil {
		return fmt.Errorf("consent for %s: %w", email, err)
	}
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return fmt.Errorf("exchange for %s: %w", email, err)
	}
	now := time.Now().UTC()
	if err := tokens.Save(ctx, email, tokenstore.Token{RefreshToken: tok.RefreshToken, Scopes: oauth.Scopes, IssuedAt: now, ClientID: clientID}); err != nil {
		return err
	}
	return reg.Upsert(ctx, &registry.Account{Email: email, Status: registry.StatusConnected, Scopes: oauth.Scopes,
		ConnectedAt: now, TokenIssuedAt: now, LastRefreshAt: now, UpdatedAt: now})
}

// msgTemplate makes small send requests (about 3 KB of text and 5 KB of
// html) whose JSON differs only in account, key and sequence number, by
// splicing them into pre-encoded bytes: the publisher's cost of building a
// request stays out of the relay's figures.
type msgTemplate struct {
	a, b, c, d []byte
	cut        int // where seq goes in c
}

const marker = "\x00"

func newMsgTemplate() *msgTemplate {
	para := "Thank you for your order. Your invoice is attached to this message, and a copy is kept in your account. "
	text := strings.Repeat(para, 30)[:3000]
	html := "<html><body><p>" + strings.Repeat("<b>Thank you</b> for your order. Your invoice is attached. ", 90)[:4960] + "</p></body></html>"
	req := message.Request{Account: marker, FromName: "Acme Billing", To: []string{"Bob Example <bob@example.org>"},
		Subject: "Invoice " + marker, Text: text, HTML: html, Headers: map[string]string{"X-Bench-Seq": marker}, IdempotencyKey: marker}
	b, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	parts := strings.Split(string(b), `\u0000`)
	if len(parts) != 5 {
		panic(fmt.Sprintf("template has %d parts", len(parts)))
	}
	// Order in JSON: account, subject, headers, idempotency_key.
	return &msgTemplate{a: []byte(parts[0]), b: []byte(parts[1]), c: []byte(parts[2] + parts[3]), d: []byte(parts[4]), cut: len(parts[2])}
}

// data returns the request for account with key; seq goes in the subject
// and the X-Bench-Seq header. It makes one allocation, the request's own,
// as a push delivery's decoding would: anything more would be counted as
// the relay's.
func (t *msgTemplate) data(account, key, seq string) []byte {
	out := make([]byte, 0, len(t.a)+len(t.b)+len(t.c)+len(t.d)+len(account)+len(key)+2*len(seq))
	out = append(out, t.a...)
	out = append(out, account...)
	out = append(out, t.b...)
	out = append(out, seq...)
	out = append(out, t.c[:t.cut]...)
	out = append(out, seq...)
	out = append(out, t.c[t.cut:]...)
	out = append(out, key...)
	out = append(out, t.d...)
	return out
}

// composedSize is the size of the message Compose makes from one template
// request, for the record.
func (t *msgTemplate) composedSize() int {
	req, err := message.Decode(t.data("user000@example.com", "k", "1"))
	if err != nil {
		panic(err)
	}
	raw, err := message.Compose(req, message.ComposeOptions{Now: time.Now()})
	if err != nil {
		panic(err)
	}
	return len(raw)
}

// warm sends one message per account, so that each has its token read and
// refreshed, as at steady state.
func (r *relay) warm(tb testing.TB, t *msgTemplate) {
	tb.Helper()
	for i, a := range r.Accounts {
		key := fmt.Sprintf("warm-%p-%d", r, i)
		if err := r.Sender.Handle(r.Ctx, sender.Delivery{MessageID: key, Data: t.data(a, key, "0")}); err != nil {
			tb.Fatalf("warm-up send for %s: %v", a, err)
		}
	}
}

// figures collects named figures for scripts/bench.sh: each is appended to
// the file named by $BENCH_FIGURES as "name<TAB>value" and logged.
func figure(tb testing.TB, name string, format string, args ...any) {
	tb.Helper()
	v := fmt.Sprintf(format, args...)
	tb.Logf("FIGURE %s = %s", name, v)
	path := os.Getenv("BENCH_FIGURES")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Errorf("BENCH_FIGURES: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%s\n", name, v)
}
