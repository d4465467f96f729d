package tokenstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
	"github.com/gmailrelay/gmailrelay/internal/tokenstore"
)

const testProject = "test-project"

type env struct {
	ctx    context.Context
	srv    *secretfake.Server
	client *secretmanager.Client
	store  *tokenstore.Store
	logs   *testenv.SyncBuffer
}

func newEnv(t *testing.T) *env { return newEnvTB(t) }

func newEnvTB(t testing.TB) *env {
	t.Helper()
	srv, err := secretfake.Start(t.Context(), "127.0.0.1:0", secretfake.Options{})
	if err != nil {
		t.Fatalf("secretfake.Start: %v", err)
	}
	client, err := srv.NewClient(t.Context())
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() {
		if err := client.Close(); err != nil {
			t.Errorf("client.Close: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("srv.Close: %v", err)
		}
	})
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &env{ctx: t.Context(), srv: srv, client: client, store: tokenstore.New(client, testProject, tokenstore.WithLogger(logger)), logs: logs}
}

// rpcs counts every Secret Manager call the store can make.
func (e *env) rpcs() int64 {
	var n int64
	for _, m := range []string{"CreateSecret", "AddSecretVersion", "AccessSecretVersion", "ListSecretVersions",
		"DestroySecretVersion", "DeleteSecret", "ListSecrets"} {
		n += e.srv.Calls(m)
	}
	return n
}

func token(refresh string) tokenstore.Token {
	return tokenstore.Token{
		RefreshToken: refresh,
		Scopes:       []string{"https://www.googleapis.com/auth/gmail.send", "openid", "email"},
		IssuedAt:     time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC),
		ClientID:     "1234.apps.googleusercontent.com",
	}
}

func secretID(email string) string {
	id, _ := account.IDs(email)
	return id
}

func secretName(email string) string {
	return "projects/" + testProject + "/secrets/" + secretID(email)
}

// versionStates lists a secret's versions, newest first, as "N:STATE".
func versionStates(t *testing.T, e *env, email string) []string {
	t.Helper()
	it := e.client.ListSecretVersions(t.Context(), &secretmanagerpb.ListSecretVersionsRequest{Parent: secretName(email)})
	var out []string
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatalf("ListSecretVersions: %v", err)
		}
		out = append(out, v.GetName()[strings.LastIndex(v.GetName(), "/")+1:]+":"+v.GetState().String())
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	want := token("1//round-trip-refresh")
	if err := e.store.Save(t.Context(), "Alice@Example.com", want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := e.store.Load(t.Context(), " alice@example.COM\n")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.RefreshToken != want.RefreshToken || got.ClientID != want.ClientID ||
		!slices.Equal(got.Scopes, want.Scopes) || !got.IssuedAt.Equal(want.IssuedAt) {
		t.Fatalf("Load = %#v, want %#v", got, want)
	}

	// Tokens already stored must stay readable, so the secret's name is
	// pinned: "gmail-token-" + hex(sha256("alice@example.com")).
	const aliceSecret = "projects/" + testProject + "/secrets/gmail-token-ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
	sec, err := e.client.GetSecret(t.Context(), &secretmanagerpb.GetSecretRequest{Name: aliceSecret})
	if err != nil {
		t.Fatalf("GetSecret: %v", err)
	}
	if sec.GetLabels()[tokenstore.LabelApp] != "gmail-relay" || sec.GetLabels()[tokenstore.LabelKind] != "refresh-token" {
		t.Fatalf("labels = %v", sec.GetLabels())
	}
	if got := sec.GetAnnotations()[tokenstore.AnnotationEmail]; got != "alice@example.com" {
		t.Fatalf("email annotation = %q, want the normalized address", got)
	}
	if sec.GetReplication().GetAutomatic() == nil {
		t.Fatalf("replication = %v, want automatic", sec.GetReplication())
	}
	// The stored version carries a client checksum.
	v, err := e.client.GetSecretVersion(t.Context(), &secretmanagerpb.GetSecretVersionRequest{Name: secretName("alice@example.com") + "/versions/1"})
	if err != nil || !v.GetClientSpecifiedPayloadChecksum() {
		t.Fatalf("version = %v, %v; want client_specified_payload_checksum", v, err)
	}
}

func TestReconnectKeepsOneEnabledVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const email = "bob@example.org"
	for i := 1; i <= 3; i++ {
		if err := e.store.Save(t.Context(), email, token(fmt.Sprintf("refresh-%d", i))); err != nil {
			t.Fatalf("Save %d: %v", i, err)
		}
	}
	got, err := e.store.Load(t.Context(), email)
	if err != nil || got.RefreshToken != "refresh-3" {
		t.Fatalf("Load = %q, %v; want refresh-3", got.RefreshToken, err)
	}
	if states, want := versionStates(t, e, email), []string{"3:ENABLED", "2:DESTROYED", "1:DESTROYED"}; !slices.Equal(states, want) {
		t.Fatalf("versions = %v, want %v", states, want)
	}
	// One secret, created once; reconnects add without a create call.
	if n := e.srv.Calls("CreateSecret"); n != 1 {
		t.Fatalf("CreateSecret calls = %d, want 1", n)
	}
	emails, err := e.store.List(t.Context())
	if err != nil || !slices.Equal(emails, []string{email}) {
		t.Fatalf("List = %v, %v; want exactly [%s]", emails, err, email)
	}
}

func TestConcurrentSavesLeaveNewestLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const email = "race@example.com"
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- e.store.Save(t.Context(), email, token(fmt.Sprintf("refresh-%d", i)))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Save: %v", err)
		}
	}
	states := versionStates(t, e, email)
	if len(states) != n || states[0] != fmt.Sprintf("%d:ENABLED", n) {
		t.Fatalf("versions = %v; want %d versions with the newest enabled", states, n)
	}
	for _, s := range states[1:] {
		if !strings.HasSuffix(s, ":DESTROYED") {
			t.Fatalf("versions = %v; want every older version destroyed", states)
		}
	}
	if _, err := e.store.Load(t.Context(), email); err != nil {
		t.Fatalf("Load after racing saves: %v", err)
	}
	if c := e.srv.Calls("CreateSecret"); c < 1 {
		t.Fatalf("CreateSecret calls = %d", c)
	}
}

func TestDeleteIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const email = "carol@example.com"
	if err := e.store.Save(t.Context(), email, token("r")); err != nil {
		t.Fatalf("Save: %v", err)
	}
	for i := range 2 {
		if err := e.store.Delete(t.Context(), email); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := e.store.Delete(t.Context(), "never@example.com"); err != nil {
		t.Fatalf("Delete of an unknown mailbox: %v", err)
	}
	if _, err := e.store.Load(t.Context(), email); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Load after Delete = %v, want ErrNotFound", err)
	}
	// Reconnecting after a disconnect starts a fresh secret.
	if err := e.store.Save(t.Context(), email, token("again")); err != nil {
		t.Fatalf("Save after Delete: %v", err)
	}
	if got, err := e.store.Load(t.Context(), email); err != nil || got.RefreshToken != "again" {
		t.Fatalf("Load = %q, %v", got.RefreshToken, err)
	}
}

func TestLoadNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.store.Load(ctx, "nobody@example.com"); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Load of unknown mailbox = %v, want ErrNotFound", err)
	}

	// A secret with no enabled version at all is also "not found".
	const email = "dave@example.com"
	if err := e.store.Save(ctx, email, token("r")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: secretName(email) + "/versions/1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Load(ctx, email); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Load with only a disabled version = %v, want ErrNotFound", err)
	}
}

func TestLoadFallsBackPastDisabledLatest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	const email = "erin@example.com"
	if err := e.store.Save(ctx, email, token("good")); err != nil {
		t.Fatal(err)
	}
	// Someone adds a version by hand and disables it: Google's "latest" now
	// points at a disabled version.
	v, err := e.client.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
		Parent: secretName(email), Payload: &secretmanagerpb.SecretPayload{Data: []byte(`{"refresh_token":"bad"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v.GetName()}); err != nil {
		t.Fatal(err)
	}
	got, err := e.store.Load(ctx, email)
	if err != nil || got.RefreshToken != "good" {
		t.Fatalf("Load = %q, %v; want the newest enabled version", got.RefreshToken, err)
	}
}

func TestLoadDetectsCorruption(t *testing.T) {
	t.Parallel()
	const secretToken = "1//super-secret-refresh-token"
	tests := []struct {
		name    string
		corrupt func(t *testing.T, e *env, email string)
	}{
		{"bit rot", func(t *testing.T, e *env, email string) {
			if err := e.srv.CorruptVersion(secretName(email) + "/versions/latest"); err != nil {
				t.Fatal(err)
			}
		}},
		{"valid JSON under a stale checksum", func(t *testing.T, e *env, email string) {
			// Only the crc32c check can catch this one.
			planted := `{"refresh_token":"` + secretToken + `-planted","scopes":[],"issued_at":"2026-01-01T00:00:00Z","client_id":"c"}`
			if err := e.srv.ReplacePayload(secretName(email)+"/versions/latest", []byte(planted)); err != nil {
				t.Fatal(err)
			}
		}},
		{"not JSON", func(t *testing.T, e *env, email string) {
			addRaw(t, e, email, "refresh_token="+secretToken)
		}},
		{"bad field type", func(t *testing.T, e *env, email string) {
			addRaw(t, e, email, `{"refresh_token":"`+secretToken+`","issued_at":"`+secretToken+`"}`)
		}},
		{"no refresh token", func(t *testing.T, e *env, email string) {
			addRaw(t, e, email, `{"client_id":"`+secretToken+`"}`)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			const email = "frank@example.com"
			if err := e.store.Save(t.Context(), email, token(secretToken)); err != nil {
				t.Fatal(err)
			}
			tc.corrupt(t, e, email)
			_, err := e.store.Load(t.Context(), email)
			if !errors.Is(err, tokenstore.ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), secretID(email)) {
				t.Fatalf("error %q does not name the secret", err)
			}
			if strings.Contains(err.Error(), "super-secret") {
				t.Fatalf("error %q leaks payload content", err)
			}
		})
	}
}

func addRaw(t *testing.T, e *env, email, data string) {
	t.Helper()
	if _, err := e.client.AddSecretVersion(t.Context(), &secretmanagerpb.AddSecretVersionRequest{
		Parent: secretName(email), Payload: &secretmanagerpb.SecretPayload{Data: []byte(data)},
	}); err != nil {
		t.Fatal(err)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	const email = "gina@example.com"
	// AccessSecretVersion is left out for Unavailable and ResourceExhausted:
	// the client retries those itself, with backoff, which a unit test must
	// not wait for.
	tests := []struct {
		name     string
		method   string
		code     codes.Code
		saved    bool // whether the mailbox has a token before the call
		call     func(*env) error
		want     error
		wantText string
	}{
		{"save add unavailable", "AddSecretVersion", codes.Unavailable, true, save(email), tokenstore.ErrUnavailable, ""},
		{"save create exhausted", "CreateSecret", codes.ResourceExhausted, false, save(email), tokenstore.ErrUnavailable, ""},
		{"save add deadline", "AddSecretVersion", codes.DeadlineExceeded, true, save(email), tokenstore.ErrUnavailable, ""},
		{"save create denied", "CreateSecret", codes.PermissionDenied, false, save(email), tokenstore.ErrPermission, "roles/secretmanager.admin"},
		{"load internal", "AccessSecretVersion", codes.Internal, true, load(email), tokenstore.ErrUnavailable, ""},
		{"load aborted", "AccessSecretVersion", codes.Aborted, true, load(email), tokenstore.ErrUnavailable, ""},
		{"load deadline", "AccessSecretVersion", codes.DeadlineExceeded, true, load(email), tokenstore.ErrUnavailable, ""},
		{"load denied", "AccessSecretVersion", codes.PermissionDenied, true, load(email), tokenstore.ErrPermission, "roles/secretmanager.secretAccessor"},
		{"load unauthenticated", "AccessSecretVersion", codes.Unauthenticated, true, load(email), tokenstore.ErrPermission, "credentials"},
		{"delete unavailable", "DeleteSecret", codes.Unavailable, true, del(email), tokenstore.ErrUnavailable, ""},
		{"delete denied", "DeleteSecret", codes.PermissionDenied, true, del(email), tokenstore.ErrPermission, "roles/secretmanager.admin"},
		{"list unavailable", "ListSecrets", codes.Unavailable, true, list, tokenstore.ErrUnavailable, ""},
		{"list denied", "ListSecrets", codes.PermissionDenied, true, list, tokenstore.ErrPermission, "roles/secretmanager.viewer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tc.saved {
				if err := e.store.Save(t.Context(), email, token("r")); err != nil {
					t.Fatal(err)
				}
			}
			e.srv.FailNext(tc.method, tc.code, 1)
			err := tc.call(e)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			if status.Code(err) != tc.code {
				t.Fatalf("status.Code = %s, want the gRPC code %s kept reachable", status.Code(err), tc.code)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("error %q does not mention %q", err, tc.wantText)
			}
			// The fault is spent: the same call now succeeds.
			if err := tc.call(e); err != nil {
				t.Fatalf("retry after the fault: %v", err)
			}
		})
	}
}

func save(email string) func(*env) error {
	return func(e *env) error { return e.store.Save(e.ctx, email, token("new")) }
}

func load(email string) func(*env) error {
	return func(e *env) error { _, err := e.store.Load(e.ctx, email); return err }
}

func del(email string) func(*env) error {
	return func(e *env) error { return e.store.Delete(e.ctx, email) }
}

func list(e *env) error { _, err := e.store.List(e.ctx); return err }

func TestDestroyFailureIsLoggedNotReturned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const email = "hank@example.com"
	const secretToken = "1//second-secret-refresh"
	if err := e.store.Save(t.Context(), email, token("first")); err != nil {
		t.Fatal(err)
	}
	e.srv.FailNext("DestroySecretVersion", codes.Unavailable, 1)
	if err := e.store.Save(t.Context(), email, token(secretToken)); err != nil {
		t.Fatalf("Save with a failing cleanup = %v, want success: the new token is stored", err)
	}
	if got, err := e.store.Load(t.Context(), email); err != nil || got.RefreshToken != secretToken {
		t.Fatalf("Load = %q, %v", got.RefreshToken, err)
	}
	if states, want := versionStates(t, e, email), []string{"2:ENABLED", "1:ENABLED"}; !slices.Equal(states, want) {
		t.Fatalf("versions = %v, want %v", states, want)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"level":"WARN"`) || !strings.Contains(logs, secretID(email)) || !strings.Contains(logs, "Unavailable") {
		t.Fatalf("logs = %s; want a warning naming the secret and the code", logs)
	}
	if strings.Contains(logs, "first") || strings.Contains(logs, secretToken) {
		t.Fatalf("logs leak a token: %s", logs)
	}
	// The next save finishes the cleanup.
	if err := e.store.Save(t.Context(), email, token("third")); err != nil {
		t.Fatal(err)
	}
	if states, want := versionStates(t, e, email), []string{"3:ENABLED", "2:DESTROYED", "1:DESTROYED"}; !slices.Equal(states, want) {
		t.Fatalf("versions = %v, want %v", states, want)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for _, email := range []string{"zed@example.com", "Amy@Example.com", "mo@example.net"} {
		if err := e.store.Save(ctx, email, token("r")); err != nil {
			t.Fatal(err)
		}
	}
	// Secrets that are not tokens, or whose annotation was tampered with,
	// are not listed.
	mk := func(id string, labels, annotations map[string]string) {
		t.Helper()
		if _, err := e.client.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{
			Parent: "projects/" + testProject, SecretId: id,
			Secret: &secretmanagerpb.Secret{
				Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}},
				Labels:      labels, Annotations: annotations,
			},
		}); err != nil {
			t.Fatal(err)
		}
	}
	tokenLabels := map[string]string{tokenstore.LabelApp: tokenstore.LabelAppValue, tokenstore.LabelKind: tokenstore.LabelKindValue}
	mk("unrelated", map[string]string{"app": "other"}, map[string]string{tokenstore.AnnotationEmail: "x@example.com"})
	mk("gmail-config", map[string]string{tokenstore.LabelApp: tokenstore.LabelAppValue, tokenstore.LabelKind: "config"}, nil)
	mk(secretID("real@example.com"), tokenLabels, map[string]string{tokenstore.AnnotationEmail: "forged@example.com"})
	mk(secretID("bare@example.com"), tokenLabels, nil)

	got, err := e.store.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if want := []string{"amy@example.com", "mo@example.net", "zed@example.com"}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if n := strings.Count(e.logs.String(), "skipping a token secret"); n != 2 {
		t.Fatalf("logged %d skipped secrets, want 2: %s", n, e.logs.String())
	}

	empty := newEnv(t)
	if got, err := empty.store.List(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("List of an empty project = %#v, %v; want an empty, non-nil slice", got, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	huge := token(strings.Repeat("x", 64*1024))
	tests := []struct {
		name string
		call func() error
	}{
		{"save empty email", func() error { return e.store.Save(ctx, "  ", token("r")) }},
		{"save no at sign", func() error { return e.store.Save(ctx, "alice", token("r")) }},
		{"save no refresh token", func() error { return e.store.Save(ctx, "a@example.com", token("")) }},
		{"save over 64 KiB", func() error { return e.store.Save(ctx, "a@example.com", huge) }},
		{"load empty email", func() error { _, err := e.store.Load(ctx, ""); return err }},
		{"delete domain only", func() error { return e.store.Delete(ctx, "@example.com") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tokenstore.ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
		})
	}
	for _, m := range []string{"CreateSecret", "AddSecretVersion", "AccessSecretVersion", "DeleteSecret"} {
		if n := e.srv.Calls(m); n != 0 {
			t.Errorf("%s was called %d times for invalid input", m, n)
		}
	}
	if strings.Contains(fmt.Sprint(e.store.Save(ctx, "a@example.com", huge)), "xxxx") {
		t.Fatalf("size error leaks the token")
	}
}
