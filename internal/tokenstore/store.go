// Package tokenstore keeps each connected mailbox's Gmail refresh token in
// Secret Manager (DESIGN §4).
//
// One secret holds one mailbox's token. Its ID is derived from the address
// (account.IDs), since secret IDs and label values cannot hold an email; the
// address itself rides in an annotation so that List can name the mailboxes.
// Every save adds a version and then destroys the older ones, so that a
// secret keeps a single live version: versions are billed each month and an
// old refresh token should not outlive its replacement.
//
// Errors carry sentinels for callers to branch on: ErrNotFound, ErrCorrupt,
// ErrPermission, ErrInvalid, and ErrUnavailable, which marks a transient
// failure worth retrying. No error or log line ever holds a token or a
// payload.
package tokenstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailrelay/gmailrelay/internal/account"
)

// Sentinel errors. Test for them with errors.Is; the wrapped gRPC error stays
// reachable with status.FromError.
var (
	// ErrNotFound means the mailbox has no secret, or no enabled version.
	ErrNotFound = errors.New("tokenstore: no stored token")
	// ErrUnavailable means Secret Manager failed in a way that may pass
	// (unavailable, deadline, quota, internal, aborted): retry later.
	ErrUnavailable = errors.New("tokenstore: Secret Manager unavailable")
	// ErrCorrupt means a stored payload failed its checksum or is not a token.
	ErrCorrupt = errors.New("tokenstore: stored token is corrupt")
	// ErrPermission means the service account lacks an IAM role (the message
	// names it) or Secret Manager rejected its credentials.
	ErrPermission = errors.New("tokenstore: permission denied")
	// ErrInvalid means the caller passed something that cannot be stored.
	ErrInvalid = errors.New("tokenstore: invalid argument")
)

// Labels and the annotation put on every token secret. Label values cannot
// hold an email address, hence the annotation.
const (
	LabelApp       = "app"
	LabelAppValue  = "gmail-relay"
	LabelKind      = "kind"
	LabelKindValue = "refresh-token"
	// AnnotationEmail holds the normalized address. Secret Manager allows
	// only letters, digits, '-', '_' and '.' in annotation keys, so the key
	// cannot be "gmail-relay/email".
	AnnotationEmail = "gmail-relay-email"
)

// IAM roles named in ErrPermission messages.
const (
	roleAccessor = "roles/secretmanager.secretAccessor"
	roleAdmin    = "roles/secretmanager.admin"
	roleViewer   = "roles/secretmanager.viewer"
)

// maxPayload is Secret Manager's payload limit.
const maxPayload = 64 * 1024

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// secretManager is the part of the Secret Manager client the store uses.
type secretManager interface {
	CreateSecret(context.Context, *secretmanagerpb.CreateSecretRequest, ...gax.CallOption) (*secretmanagerpb.Secret, error)
	DeleteSecret(context.Context, *secretmanagerpb.DeleteSecretRequest, ...gax.CallOption) error
	ListSecrets(context.Context, *secretmanagerpb.ListSecretsRequest, ...gax.CallOption) *secretmanager.SecretIterator
	AddSecretVersion(context.Context, *secretmanagerpb.AddSecretVersionRequest, ...gax.CallOption) (*secretmanagerpb.SecretVersion, error)
	AccessSecretVersion(context.Context, *secretmanagerpb.AccessSecretVersionRequest, ...gax.CallOption) (*secretmanagerpb.AccessSecretVersionResponse, error)
	ListSecretVersions(context.Context, *secretmanagerpb.ListSecretVersionsRequest, ...gax.CallOption) *secretmanager.SecretVersionIterator
	DestroySecretVersion(context.Context, *secretmanagerpb.DestroySecretVersionRequest, ...gax.CallOption) (*secretmanagerpb.SecretVersion, error)
}

var _ secretManager = (*secretmanager.Client)(nil)

// Store reads and writes refresh tokens. It is safe for concurrent use.
type Store struct {
	client  secretManager
	project string
	logger  *slog.Logger
}

// Option configures a Store.
type Option func(*Store)

// WithLogger sets where the store reports cleanup problems that do not fail
// a call (see Save). The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.logger = l
		}
	}
}

// New returns a Store over client for a Google Cloud project, given as an ID
// ("my-project") or a resource name ("projects/my-project"). The caller
// keeps ownership of client.
func New(client *secretmanager.Client, project string, opts ...Option) *Store {
	s := &Store{
		client:  client,
		project: strings.TrimPrefix(project, "projects/"),
		logger:  slog.Default(),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Store) secretName(id string) string {
	return "projects/" + s.project + "/secrets/" + id
}

// Save stores tok as the mailbox's token, replacing any earlier one.
//
// It adds a version (creating the secret on the mailbox's first connect) and
// then destroys every older version that is not destroyed yet. Only versions
// older than the one it added are destroyed, so that two saves racing for
// one mailbox leave the newer token live rather than destroying each other's.
//
// Once the new version is stored, Save succeeds: a failure to destroy an old
// version is logged (secret ID, version, gRPC code; never payloads) and left
// for the next Save, which retries it. Failing the call instead would make a
// successful reconnect look failed while the new token is already live.
func (s *Store) Save(ctx context.Context, email string, tok Token) error {
	const op = "tokenstore.Save"
	norm := account.Normalize(email)
	if err := checkEmail(norm); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if tok.RefreshToken == "" {
		return fmt.Errorf("%s: %w: the token has no refresh token", op, ErrInvalid)
	}
	payload, err := json.Marshal(tok)
	if err != nil {
		return fmt.Errorf("%s: encoding token: %w", op, err)
	}
	if len(payload) > maxPayload {
		return fmt.Errorf("%s: %w: the token encodes to %d bytes, over Secret Manager's %d", op, ErrInvalid, len(payload), maxPayload)
	}
	id, _ := account.IDs(norm)
	parent := s.secretName(id)
	sum := int64(crc32.Checksum(payload, castagnoli))
	add := func() (*secretmanagerpb.SecretVersion, error) {
		return s.client.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
			Parent:  parent,
			Payload: &secretmanagerpb.SecretPayload{Data: payload, DataCrc32C: &sum},
		})
	}

	// Adding first costs one call on a reconnect, which is the common case;
	// only a first connect pays for the create.
	v, err := add()
	if status.Code(err) == codes.NotFound {
		if err := s.create(ctx, id, norm); err != nil {
			return s.wrap(op, id, roleAdmin, err)
		}
		v, err = add()
	}
	if err != nil {
		return s.wrap(op, id, roleAdmin, err)
	}
	added, err := versionNumber(v.GetName())
	if err != nil {
		s.logger.WarnContext(ctx, "tokenstore: token saved, but its version name is unexpected; old versions were not destroyed",
			"secret_id", id, "version", v.GetName())
		return nil
	}
	s.destroyOlder(ctx, parent, id, added)
	return nil
}

func (s *Store) create(ctx context.Context, id, norm string) error {
	_, err := s.client.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{
		Parent:   "projects/" + s.project,
		SecretId: id,
		Secret: &secretmanagerpb.Secret{
			Replication: &secretmanagerpb.Replication{
				Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}},
			},
			Labels:      map[string]string{LabelApp: LabelAppValue, LabelKind: LabelKindValue},
			Annotations: map[string]string{AnnotationEmail: norm},
		},
	})
	// A concurrent save for the same mailbox may have created it first.
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	return err
}

// destroyOlder destroys the live versions numbered below keep. Problems are
// logged, not returned: see Save.
func (s *Store) destroyOlder(ctx context.Context, parent, id string, keep int64) {
	it := s.client.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: parent})
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return
		}
		if err != nil {
			s.logger.WarnContext(ctx, "tokenstore: token saved, but listing old versions failed; the next save retries",
				"secret_id", id, "code", status.Code(err).String(), "error", err)
			return
		}
		n, err := versionNumber(v.GetName())
		if err != nil || n >= keep || v.GetState() == secretmanagerpb.SecretVersion_DESTROYED {
			continue
		}
		_, err = s.client.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: v.GetName()})
		switch status.Code(err) {
		case codes.OK, codes.NotFound, codes.FailedPrecondition:
			// FailedPrecondition: a concurrent save destroyed it first.
		default:
			s.logger.WarnContext(ctx, "tokenstore: token saved, but an old version could not be destroyed; the next save retries",
				"secret_id", id, "version", v.GetName(), "code", status.Code(err).String(), "error", err)
		}
	}
}

// Load returns the mailbox's token. It fails with ErrNotFound when there is
// no secret or no enabled version, and with ErrCorrupt when the payload fails
// its crc32c check or does not decode as a Token.
func (s *Store) Load(ctx context.Context, email string) (Token, error) {
	const op = "tokenstore.Load"
	norm := account.Normalize(email)
	if err := checkEmail(norm); err != nil {
		return Token{}, fmt.Errorf("%s: %w", op, err)
	}
	id, _ := account.IDs(norm)
	parent := s.secretName(id)
	resp, err := s.client.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: parent + "/versions/latest"})
	if status.Code(err) == codes.FailedPrecondition {
		// Google's "latest" is the newest version even when it is disabled
		// or destroyed (someone disabled it by hand); an older enabled
		// version is still a usable token.
		resp, err = s.accessNewestEnabled(ctx, parent)
	}
	if err != nil {
		return Token{}, s.wrap(op, id, roleAccessor, err)
	}
	return decode(op, id, resp.GetPayload())
}

// errNoEnabledVersion stands for Google's NotFound when a secret exists but
// has nothing to read.
var errNoEnabledVersion = status.Error(codes.NotFound, "no enabled version")

func (s *Store) accessNewestEnabled(ctx context.Context, parent string) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	it := s.client.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: parent, Filter: "state:ENABLED"})
	var best string
	var bestN int64
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, err
		}
		if n, err := versionNumber(v.GetName()); err == nil && n > bestN && v.GetState() == secretmanagerpb.SecretVersion_ENABLED {
			best, bestN = v.GetName(), n
		}
	}
	if best == "" {
		return nil, errNoEnabledVersion
	}
	return s.client.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: best})
}

// decode verifies and parses a payload. Its errors name the secret, never
// the payload: even a broken payload may hold most of a token.
func decode(op, id string, p *secretmanagerpb.SecretPayload) (Token, error) {
	if p.DataCrc32C == nil {
		return Token{}, fmt.Errorf("%s: secret %s: %w: Secret Manager returned no checksum", op, id, ErrCorrupt)
	}
	if got := int64(crc32.Checksum(p.GetData(), castagnoli)); got != p.GetDataCrc32C() {
		return Token{}, fmt.Errorf("%s: secret %s: %w: payload fails its crc32c check", op, id, ErrCorrupt)
	}
	var tok Token
	if err := json.Unmarshal(p.GetData(), &tok); err != nil {
		return Token{}, fmt.Errorf("%s: secret %s: %w: payload is not token JSON", op, id, ErrCorrupt)
	}
	if tok.RefreshToken == "" {
		return Token{}, fmt.Errorf("%s: secret %s: %w: payload has no refresh token", op, id, ErrCorrupt)
	}
	return tok, nil
}

// Delete removes the mailbox's secret and every version of it. Deleting a
// mailbox that has no secret succeeds.
func (s *Store) Delete(ctx context.Context, email string) error {
	const op = "tokenstore.Delete"
	norm := account.Normalize(email)
	if err := checkEmail(norm); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	id, _ := account.IDs(norm)
	err := s.client.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: s.secretName(id)})
	if err == nil || status.Code(err) == codes.NotFound {
		return nil
	}
	return s.wrap(op, id, roleAdmin, err)
}

// tokenFilter selects token secrets. Values are quoted because the list
// filter grammar treats a bare "-" specially.
var tokenFilter = fmt.Sprintf("labels.%s=%q AND labels.%s=%q", LabelApp, LabelAppValue, LabelKind, LabelKindValue)

// List returns the normalized addresses of every mailbox with a token
// secret, sorted. A labelled secret whose annotation is missing, or does not
// hash to its ID, is skipped and logged rather than trusted.
func (s *Store) List(ctx context.Context) ([]string, error) {
	const op = "tokenstore.List"
	it := s.client.ListSecrets(ctx, &secretmanagerpb.ListSecretsRequest{Parent: "projects/" + s.project, Filter: tokenFilter})
	emails := []string{}
	for {
		sec, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, s.wrap(op, "", roleViewer, err)
		}
		id := sec.GetName()[strings.LastIndex(sec.GetName(), "/")+1:]
		email := sec.GetAnnotations()[AnnotationEmail]
		if want, _ := account.IDs(email); email == "" || want != id {
			s.logger.WarnContext(ctx, "tokenstore: skipping a token secret whose email annotation is missing or does not match its ID",
				"secret_id", id)
			continue
		}
		emails = append(emails, account.Normalize(email))
	}
	slices.Sort(emails)
	return slices.Compact(emails), nil
}

// wrap turns a Secret Manager error into one that carries a sentinel.
func (s *Store) wrap(op, id, role string, err error) error {
	where := op
	if id != "" {
		where = op + ": secret " + id
	}
	code := status.Code(err)
	switch {
	case code == codes.Canceled || errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", where, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w", where, ErrUnavailable, err)
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Aborted:
		return fmt.Errorf("%s: %w: %w", where, ErrUnavailable, err)
	case codes.NotFound:
		return fmt.Errorf("%s: %w: %w", where, ErrNotFound, err)
	case codes.PermissionDenied:
		return fmt.Errorf("%s: %w: the relay's service account needs %s on project %s: %w", where, ErrPermission, role, s.project, err)
	case codes.Unauthenticated:
		return fmt.Errorf("%s: %w: Secret Manager rejected the relay's credentials (check Application Default Credentials): %w", where, ErrPermission, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

func checkEmail(norm string) error {
	at := strings.LastIndexByte(norm, '@')
	if at <= 0 || at == len(norm)-1 {
		return fmt.Errorf("%w: %q is not an email address", ErrInvalid, norm)
	}
	return nil
}

func versionNumber(name string) (int64, error) {
	i := strings.LastIndex(name, "/versions/")
	if i < 0 {
		return 0, fmt.Errorf("no version in %q", name)
	}
	return strconv.ParseInt(name[i+len("/versions/"):], 10, 64)
}
