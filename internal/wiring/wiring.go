// Package wiring builds each function's dependencies from its validated
// configuration: the Google clients (pointed at emulators and fakes when the
// configuration says so), the stores and the handlers. Every builder
// returns, with what it built, an io.Closer for the clients it opened, and
// takes in Deps whatever the caller already has open (the dev server shares
// one Pub/Sub client and one local registry and ledger among all the
// functions it runs); those it leaves to the caller to close.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/admin"
	"github.com/gmailrelay/gmailrelay/internal/attachments"
	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/connect"
	"github.com/gmailrelay/gmailrelay/internal/delegation"
	"github.com/gmailrelay/gmailrelay/internal/events"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

// Deps are clients and stores the caller already holds. Each nil field is
// opened from the configuration, as a deployed function does, and closed by
// the builder's closer; a supplied one is used as it is and never closed.
type Deps struct {
	// PubSub publishes results and account events. When nil, setup opens
	// a client, which honours PUBSUB_EMULATOR_HOST by itself.
	PubSub *pubsub.Client
	// SecretManager holds the refresh tokens.
	SecretManager *secretmanager.Client
	// Registry and Ledger replace the configured backend's stores. In one
	// process that runs several functions on the local backend they must be
	// shared: each local store is one file, and two instances of it would
	// overwrite each other's writes.
	Registry registry.Store
	Ledger   ledger.Store
	// Logs is where the functions built with these deps log; nil is
	// stdout, as on Cloud Run.
	Logs io.Writer
	// Storage reads the sender's attachments by reference. When nil and
	// ATTACHMENTS_BUCKET is set, the sender opens a client, which honours
	// STORAGE_EMULATOR_HOST by itself.
	Storage *storage.Client
}

// closers closes what one build opened, last opened first.
type closers []func() error

func (c *closers) add(f func() error) { *c = append(*c, f) }

// Close closes everything, reporting every failure.
func (c *closers) Close() error {
	var errs []error
	for i := len(*c) - 1; i >= 0; i-- {
		if err := (*c)[i](); err != nil {
			errs = append(errs, err)
		}
	}
	*c = nil
	return errors.Join(errs...)
}

// fail closes what a build opened before err and returns err.
func (c *closers) fail(err error) error {
	if cerr := c.Close(); cerr != nil {
		return errors.Join(err, fmt.Errorf("closing what was opened: %w", cerr))
	}
	return err
}

// noTelemetry goes to every Google client the relay opens: it sets up no
// OpenTelemetry exporter, so the clients' default gRPC instrumentation
// would only do work that nothing reads; the relay's own logs carry each
// delivery's outcome and trace.
var noTelemetry = option.WithTelemetryDisabled()

// OAuth builds the OAuth client.
func OAuth(c config.OAuth, redirectURL string) (*oauth.Client, error) {
	oc, err := oauth.New(oauth.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret.Reveal(),
		RedirectURL:  redirectURL,
		AuthURL:      c.AuthURL,
		TokenURL:     c.TokenURL,
		RevokeURL:    c.RevokeURL,
	})
	if err != nil {
		return nil, fmt.Errorf("wiring.OAuth: %w", err)
	}
	return oc, nil
}

// tokenStore returns the Secret Manager token store, on deps' client or on
// one it opens and registers with cl.
func tokenStore(ctx context.Context, project string, s config.Stores, deps Deps, cl *closers) (*tokenstore.Store, error) {
	client := deps.SecretManager
	if client == nil {
		opts := []option.ClientOption{noTelemetry}
		if h := s.SecretManagerEmulatorHost; h != "" {
			// An emulator speaks plain gRPC without credentials, as
			// PUBSUB_EMULATOR_HOST does for Pub/Sub. Kept here rather than
			// imported from the fake, so production builds carry no fake.
			opts = append(opts, option.WithEndpoint(h), option.WithoutAuthentication(),
				option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		}
		c, err := secretmanager.NewClient(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("setup: Secret Manager client: %w", err)
		}
		cl.add(c.Close)
		client = c
	}
	return tokenstore.New(client, project), nil
}

// stores returns the registry and ledger: deps' when given, else the
// configured backend's, opened and registered with cl.
func stores(ctx context.Context, project string, s config.Stores, deps Deps, cl *closers) (registry.Store, ledger.Store, error) {
	reg, led := deps.Registry, deps.Ledger
	if reg != nil && led != nil {
		return reg, led, nil
	}
	if s.Local() {
		if reg == nil {
			r, err := registry.NewLocal(filepath.Join(s.StateDir, "accounts.json"))
			if err != nil {
				return nil, nil, fmt.Errorf("setup: local registry: %w", err)
			}
			reg = r
		}
		if led == nil {
			l, err := ledger.NewLocal(filepath.Join(s.StateDir, "sends.json"))
			if err != nil {
				return nil, nil, fmt.Errorf("setup: local ledger: %w", err)
			}
			cl.add(l.Close)
			led = l
		}
		return reg, led, nil
	}
	fs, err := firestore.NewClientWithDatabase(ctx, project, s.FirestoreDatabase, noTelemetry)
	if err != nil {
		return nil, nil, fmt.Errorf("setup: Firestore client: %w", err)
	}
	cl.add(fs.Close)
	if reg == nil {
		reg = registry.NewFirestore(fs)
	}
	if led == nil {
		led = ledger.NewFirestore(fs)
	}
	return reg, led, nil
}

// pubSub returns deps' Pub/Sub client or opens one, registered with cl.
func pubSub(ctx context.Context, project string, deps Deps, cl *closers) (*pubsub.Client, error) {
	if deps.PubSub != nil {
		return deps.PubSub, nil
	}
	ps, err := pubsub.NewClient(ctx, project, noTelemetry)
	if err != nil {
		return nil, fmt.Errorf("setup: Pub/Sub client: %w", err)
	}
	cl.add(ps.Close)
	return ps, nil
}

// delegator builds the domain-wide delegation minter, or nil when no
// domain is delegated. Deployed, it signs with the function's own identity
// (Application Default Credentials).
func delegator(ctx context.Context, d config.Delegation) (*delegation.Delegator, error) {
	if !d.Enabled() {
		return nil, nil
	}
	dl, err := delegation.New(ctx, delegation.Config{ServiceAccount: d.DelegateServiceAccount, ClientID: d.DelegateClientID,
		Domains: d.DelegatedDomains, Endpoint: d.DelegationEndpoint})
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	return dl, nil
}

// Authorize builds the authorize handler; it opens no client.
func Authorize(_ context.Context, cfg *config.Authorize, _ Deps) (*connect.Authorize, io.Closer, error) {
	oc, err := OAuth(cfg.OAuth, cfg.RedirectURL)
	if err != nil {
		return nil, nil, err
	}
	return connect.NewAuthorize(connect.Options{
		OAuth: oc, AllowedDomains: cfg.AllowedDomains, AllowedEmails: cfg.AllowedEmails,
	}), &closers{}, nil
}

// Confirm builds the confirm handler.
func Confirm(ctx context.Context, cfg *config.Confirm, deps Deps) (*connect.Confirm, io.Closer, error) {
	oc, err := OAuth(cfg.OAuth, cfg.RedirectURL)
	if err != nil {
		return nil, nil, err
	}
	cl := &closers{}
	tokens, err := tokenStore(ctx, cfg.ProjectID, cfg.Stores, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	reg, _, err := stores(ctx, cfg.ProjectID, cfg.Stores, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	return connect.NewConfirm(connect.Options{
		OAuth: oc, Tokens: tokens, Accounts: reg,
		AllowedDomains: cfg.AllowedDomains, AllowedEmails: cfg.AllowedEmails,
		ConnectURL: cfg.ConnectURL,
	}), cl, nil
}

// Sender builds the sender.
func Sender(ctx context.Context, cfg *config.Sender, deps Deps) (*sender.Sender, io.Closer, error) {
	oc, err := OAuth(cfg.OAuth, "")
	if err != nil {
		return nil, nil, err
	}
	cl := &closers{}
	tokens, err := tokenStore(ctx, cfg.ProjectID, cfg.Stores, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	reg, led, err := stores(ctx, cfg.ProjectID, cfg.Stores, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	ps, err := pubSub(ctx, cfg.ProjectID, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	pub := results.NewPublisher(ps, cfg.ResultsTopic)
	cl.add(func() error { pub.Stop(); return nil })
	var deleg sender.Delegation
	var accountEvents sender.Events
	if dl, err := delegator(ctx, cfg.Delegation); err != nil {
		return nil, nil, cl.fail(err)
	} else if dl != nil {
		// Only delegation makes the sender raise account events.
		ev := events.NewPublisher(ps, cfg.AccountEventsTopic)
		cl.add(func() error { ev.Stop(); return nil })
		deleg, accountEvents = dl, ev
	}
	att, err := senderAttachments(ctx, cfg.Attachments, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	s, err := sender.New(sender.Options{
		Attachments: att,
		Delegation:  deleg, Events: accountEvents,
		Ledger: led, Accounts: reg, Tokens: tokens,
		Results: pub, OAuth: oc,
		Gmail: gmail.New(cfg.Gmail.Endpoint, nil), ConnectURL: cfg.ConnectURL,
		Lease: cfg.SendLease, SendTimeout: cfg.SendTimeout, MaxDeliveryAttempts: cfg.MaxDeliveryAttempts,
		MaxSendAttempts: cfg.MaxSendAttempts,
		Policy:          cfg.Policy(),
	})
	if err != nil {
		return nil, nil, cl.fail(fmt.Errorf("wiring.Sender: %w", err))
	}
	// Closers run last first: the sender writes its last usage counts
	// while the registry is still open.
	cl.add(s.Close)
	return s, cl, nil
}

// senderAttachments configures attachments by reference: on deps' storage
// client, or on one it opens and registers with cl when a bucket is set.
// Without ATTACHMENTS_BUCKET it opens nothing: the sender then refuses
// every such attachment.
func senderAttachments(ctx context.Context, c config.Attachments, deps Deps, cl *closers) (sender.Attachments, error) {
	a := sender.Attachments{Bucket: c.AttachmentsBucket, ExtraBuckets: c.AttachmentsExtraBuckets, DeleteAfterSend: c.AttachmentsDeleteAfterSend}
	if a.Bucket == "" {
		return a, nil
	}
	client := deps.Storage
	if client == nil {
		sc, err := storage.NewClient(ctx, noTelemetry)
		if err != nil {
			return a, fmt.Errorf("setup: Cloud Storage client: %w", err)
		}
		cl.add(sc.Close)
		client = sc
	}
	a.Objects = attachments.New(client)
	return a, nil
}

// checked is what checker builds: the health checker, and the token store,
// OAuth client and ledger that admin needs besides.
type checked struct {
	checker *health.Checker
	tokens  *tokenstore.Store
	oauth   *oauth.Client
	ledger  ledger.Store
}

// checker builds the health checker shared by admin and healthcheck.
func checker(ctx context.Context, base config.Base, oc config.OAuth, st config.Stores, dc config.Delegation, connectURL string, testing bool, deps Deps, cl *closers) (*checked, error) {
	client, err := OAuth(oc, "")
	if err != nil {
		return nil, err
	}
	tokens, err := tokenStore(ctx, base.ProjectID, st, deps, cl)
	if err != nil {
		return nil, err
	}
	reg, led, err := stores(ctx, base.ProjectID, st, deps, cl)
	if err != nil {
		return nil, err
	}
	hc := &health.Checker{Tokens: tokens, Accounts: reg, OAuth: client, ConnectURL: connectURL, Testing: testing}
	if dl, err := delegator(ctx, dc); err != nil {
		return nil, err
	} else if dl != nil {
		hc.Delegation = dl
	}
	return &checked{
		checker: hc,
		tokens:  tokens, oauth: client, ledger: led,
	}, nil
}

// Admin builds the admin handler.
func Admin(ctx context.Context, cfg *config.Admin, deps Deps) (*admin.Handler, io.Closer, error) {
	cl := &closers{}
	c, err := checker(ctx, cfg.Base, cfg.OAuth, cfg.Stores, cfg.Delegation, cfg.ConnectURL, cfg.OAuthAppTesting, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	return admin.New(admin.Options{Checker: c.checker, Tokens: c.tokens, Revoker: c.oauth, Ledger: c.ledger,
		Gmail: gmail.New(cfg.Gmail.Endpoint, nil), RequireAuth: cfg.RequireAuth, URL: cfg.URL}), cl, nil
}

// Healthcheck builds the health checker with its account-events publisher.
func Healthcheck(ctx context.Context, cfg *config.Healthcheck, deps Deps) (*health.Checker, io.Closer, error) {
	cl := &closers{}
	c, err := checker(ctx, cfg.Base, cfg.OAuth, cfg.Stores, cfg.Delegation, cfg.ConnectURL, cfg.OAuthAppTesting, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	ps, err := pubSub(ctx, cfg.ProjectID, deps, cl)
	if err != nil {
		return nil, nil, cl.fail(err)
	}
	pub := events.NewPublisher(ps, cfg.AccountEventsTopic)
	cl.add(func() error { pub.Stop(); return nil })
	c.checker.Events = pub
	return c.checker, cl, nil
}
