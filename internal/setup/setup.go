// Package setup builds each function's dependencies from its configuration,
// once, and explicitly: the Google clients (pointed at emulators and fakes
// when their *_EMULATOR_HOST variables are set), the stores, and the
// handlers. Function packages call it from a sync.OnceValues so a failure is
// returned, logged and answered, never swallowed.
package setup

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailrelay/gmailrelay/internal/admin"
	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/connect"
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

// OAuth builds the OAuth client.
func OAuth(c config.OAuth, redirectURL string) (*oauth.Client, error) {
	return oauth.New(oauth.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret.Reveal(),
		RedirectURL:  redirectURL,
		AuthURL:      c.AuthURL,
		TokenURL:     c.TokenURL,
		RevokeURL:    c.RevokeURL,
	})
}

// TokenStore builds the Secret Manager token store.
func TokenStore(ctx context.Context, project string, s config.Stores) (*tokenstore.Store, error) {
	var opts []option.ClientOption
	if h := s.SecretManagerEmulatorHost; h != "" {
		// An emulator speaks plain gRPC without credentials, as
		// PUBSUB_EMULATOR_HOST does for Pub/Sub. Kept here rather than
		// imported from the fake, so production builds carry no fake.
		opts = []option.ClientOption{
			option.WithEndpoint(h),
			option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		}
	}
	client, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("setup: Secret Manager client: %w", err)
	}
	return tokenstore.New(client, project), nil
}

// Stores is the registry and the ledger of one backend.
type Stores struct {
	Registry registry.Store
	Ledger   ledger.Store
}

// The local backend keeps each store in one file; in `make dev` every
// function runs in one process, so they must share one instance per file
// or their writes would overwrite each other.
var (
	localMu         sync.Mutex
	localRegistries = map[string]*registry.Local{}
	localLedgers    = map[string]*ledger.Local{}
)

// OpenStores opens the configured backend.
func OpenStores(ctx context.Context, project string, s config.Stores) (*Stores, error) {
	if s.Local() {
		localMu.Lock()
		defer localMu.Unlock()
		rp := filepath.Join(s.StateDir, "accounts.json")
		lp := filepath.Join(s.StateDir, "sends.json")
		if localRegistries[rp] == nil {
			r, err := registry.NewLocal(rp)
			if err != nil {
				return nil, fmt.Errorf("setup: local registry: %w", err)
			}
			localRegistries[rp] = r
		}
		if localLedgers[lp] == nil {
			l, err := ledger.NewLocal(lp)
			if err != nil {
				return nil, fmt.Errorf("setup: local ledger: %w", err)
			}
			localLedgers[lp] = l
		}
		return &Stores{Registry: localRegistries[rp], Ledger: localLedgers[lp]}, nil
	}
	fs, err := firestore.NewClientWithDatabase(ctx, project, s.FirestoreDatabase, noTelemetry)
	if err != nil {
		return nil, fmt.Errorf("setup: Firestore client: %w", err)
	}
	return &Stores{Registry: registry.NewFirestore(fs), Ledger: ledger.NewFirestore(fs)}, nil
}

// Authorize builds the authorize handler.
func Authorize(_ context.Context, cfg *config.Authorize) (*connect.Authorize, error) {
	oc, err := OAuth(cfg.OAuth, cfg.RedirectURL)
	if err != nil {
		return nil, err
	}
	return connect.NewAuthorize(connect.Options{
		OAuth: oc, AllowedDomains: cfg.AllowedDomains, AllowedEmails: cfg.AllowedEmails,
	}), nil
}

// Confirm builds the confirm handler.
func Confirm(ctx context.Context, cfg *config.Confirm) (*connect.Confirm, error) {
	oc, err := OAuth(cfg.OAuth, cfg.RedirectURL)
	if err != nil {
		return nil, err
	}
	tokens, err := TokenStore(ctx, cfg.ProjectID, cfg.Stores)
	if err != nil {
		return nil, err
	}
	stores, err := OpenStores(ctx, cfg.ProjectID, cfg.Stores)
	if err != nil {
		return nil, err
	}
	return connect.NewConfirm(connect.Options{
		OAuth: oc, Tokens: tokens, Accounts: stores.Registry,
		AllowedDomains: cfg.AllowedDomains, AllowedEmails: cfg.AllowedEmails,
		ConnectURL: cfg.ConnectURL,
	}), nil
}

// noTelemetry goes to the Google clients every delivery calls (Firestore
// and the results topic's Pub/Sub). The relay sets up no OpenTelemetry
// exporter, so the gRPC instrumentation those clients install by default
// only built attribute sets on every call, about 1% of a delivery's CPU;
// the relay's own logs carry each delivery's outcome and trace.
var noTelemetry = option.WithTelemetryDisabled()

// Sender builds the sender.
func Sender(ctx context.Context, cfg *config.Sender) (*sender.Sender, error) {
	oc, err := OAuth(cfg.OAuth, "")
	if err != nil {
		return nil, err
	}
	tokens, err := TokenStore(ctx, cfg.ProjectID, cfg.Stores)
	if err != nil {
		return nil, err
	}
	stores, err := OpenStores(ctx, cfg.ProjectID, cfg.Stores)
	if err != nil {
		return nil, err
	}
	ps, err := pubsub.NewClient(ctx, cfg.ProjectID, noTelemetry)
	if err != nil {
		return nil, fmt.Errorf("setup: Pub/Sub client: %w", err)
	}
	return sender.New(sender.Options{
		Ledger: stores.Ledger, Accounts: stores.Registry, Tokens: tokens,
		Results: results.NewPublisher(ps, cfg.ResultsTopic), OAuth: oc,
		Gmail: gmail.New(cfg.Gmail.Endpoint, nil), ConnectURL: cfg.ConnectURL,
		Lease: cfg.SendLease, SendTimeout: cfg.SendTimeout, MaxDeliveryAttempts: cfg.MaxDeliveryAttempts,
	})
}

// checker builds the health checker shared by admin and healthcheck.
func checker(ctx context.Context, base config.Base, oc config.OAuth, st config.Stores, connectURL string, testing bool, ev health.Events) (*health.Checker, *tokenstore.Store, *oauth.Client, *Stores, error) {
	client, err := OAuth(oc, "")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tokens, err := TokenStore(ctx, base.ProjectID, st)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	stores, err := OpenStores(ctx, base.ProjectID, st)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return &health.Checker{Tokens: tokens, Accounts: stores.Registry, OAuth: client, Events: ev,
		ConnectURL: connectURL, Testing: testing}, tokens, client, stores, nil
}

// Admin builds the admin handler.
func Admin(ctx context.Context, cfg *config.Admin) (*admin.Handler, error) {
	chk, tokens, client, stores, err := checker(ctx, cfg.Base, cfg.OAuth, cfg.Stores, cfg.ConnectURL, cfg.OAuthAppTesting, nil)
	if err != nil {
		return nil, err
	}
	return admin.New(admin.Options{Checker: chk, Tokens: tokens, Revoker: client, Ledger: stores.Ledger,
		Gmail: gmail.New(cfg.Gmail.Endpoint, nil), RequireAuth: cfg.RequireAuth}), nil
}

// Healthcheck builds the health checker with its event publisher.
func Healthcheck(ctx context.Context, cfg *config.Healthcheck) (*health.Checker, error) {
	ps, err := pubsub.NewClient(ctx, cfg.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("setup: Pub/Sub client: %w", err)
	}
	chk, _, _, _, err := checker(ctx, cfg.Base, cfg.OAuth, cfg.Stores, cfg.ConnectURL, cfg.OAuthAppTesting, events.NewPublisher(ps, cfg.AccountEventsTopic))
	return chk, err
}
