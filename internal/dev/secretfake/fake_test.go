package secretfake_test

import (
	"context"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
)

const project = "projects/test-project"

func start(t *testing.T, opts secretfake.Options) (*secretfake.Server, *secretmanager.Client) {
	t.Helper()
	srv, err := secretfake.Start(t.Context(), "127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
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
	return srv, client
}

func automatic() *secretmanagerpb.Replication {
	return &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}
}

func createSecret(t *testing.T, c *secretmanager.Client, id string, labels map[string]string) *secretmanagerpb.Secret {
	t.Helper()
	s, err := c.CreateSecret(t.Context(), &secretmanagerpb.CreateSecretRequest{
		Parent: project, SecretId: id,
		Secret: &secretmanagerpb.Secret{Replication: automatic(), Labels: labels},
	})
	if err != nil {
		t.Fatalf("CreateSecret(%s): %v", id, err)
	}
	return s
}

func addVersion(t *testing.T, c *secretmanager.Client, secret, data string) *secretmanagerpb.SecretVersion {
	t.Helper()
	sum := int64(crc32.Checksum([]byte(data), crc32.MakeTable(crc32.Castagnoli)))
	v, err := c.AddSecretVersion(t.Context(), &secretmanagerpb.AddSecretVersionRequest{
		Parent:  secret,
		Payload: &secretmanagerpb.SecretPayload{Data: []byte(data), DataCrc32C: &sum},
	})
	if err != nil {
		t.Fatalf("AddSecretVersion(%s): %v", secret, err)
	}
	return v
}

// wantStatus asserts the gRPC code and, when msg is set, the exact message.
func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %s", code)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v carries no gRPC status", err)
	}
	if st.Code() != code {
		t.Fatalf("code = %s (%q), want %s", st.Code(), st.Message(), code)
	}
	if msg != "" && st.Message() != msg {
		t.Fatalf("message = %q, want %q", st.Message(), msg)
	}
}

func TestCreateSecretValidation(t *testing.T) {
	t.Parallel()
	_, c := start(t, secretfake.Options{})
	createSecret(t, c, "taken", nil)

	tests := []struct {
		name string
		req  *secretmanagerpb.CreateSecretRequest
		code codes.Code
		msg  string
	}{
		{"duplicate", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "taken", Secret: &secretmanagerpb.Secret{Replication: automatic()}},
			codes.AlreadyExists, "Secret [projects/test-project/secrets/taken] already exists."},
		{"bad parent", &secretmanagerpb.CreateSecretRequest{Parent: "test-project", SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic()}},
			codes.InvalidArgument, ""},
		{"regional parent", &secretmanagerpb.CreateSecretRequest{Parent: "projects/p/locations/us-east1", SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic()}},
			codes.Unimplemented, ""},
		{"dot in id", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a.b", Secret: &secretmanagerpb.Secret{Replication: automatic()}},
			codes.InvalidArgument, ""},
		{"at sign in id", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "alice@example.com", Secret: &secretmanagerpb.Secret{Replication: automatic()}},
			codes.InvalidArgument, ""},
		{"id of 256", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: strings.Repeat("a", 256), Secret: &secretmanagerpb.Secret{Replication: automatic()}},
			codes.InvalidArgument, ""},
		{"empty id", &secretmanagerpb.CreateSecretRequest{Parent: project, Secret: &secretmanagerpb.Secret{Replication: automatic()}},
			codes.InvalidArgument, "Field [secret_id] is required."},
		{"no secret", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a"},
			codes.InvalidArgument, "Field [secret] is required."},
		{"no replication", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{}},
			codes.InvalidArgument, "Field [secret.replication] is required."},
		{"user managed without replicas", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{
			Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_UserManaged_{UserManaged: &secretmanagerpb.Replication_UserManaged{}}}}},
			codes.InvalidArgument, ""},
		{"uppercase label key", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Labels: map[string]string{"App": "x"}}},
			codes.InvalidArgument, ""},
		{"label key starting with digit", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Labels: map[string]string{"1app": "x"}}},
			codes.InvalidArgument, ""},
		{"email as label value", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Labels: map[string]string{"email": "alice@example.com"}}},
			codes.InvalidArgument, ""},
		{"label value of 64", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Labels: map[string]string{"k": strings.Repeat("v", 64)}}},
			codes.InvalidArgument, ""},
		{"65 labels", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Labels: manyLabels(65)}},
			codes.InvalidArgument, ""},
		{"annotation key with slash", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Annotations: map[string]string{"gmail-relay/email": "a@b"}}},
			codes.InvalidArgument, ""},
		{"annotation key ending in dash", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Annotations: map[string]string{"email-": "a@b"}}},
			codes.InvalidArgument, ""},
		{"annotations of 16 KiB", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Annotations: map[string]string{"k": strings.Repeat("v", 16*1024-1)}}},
			codes.InvalidArgument, ""},
		{"rotation without topics", &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a", Secret: &secretmanagerpb.Secret{Replication: automatic(), Rotation: &secretmanagerpb.Rotation{}}},
			codes.InvalidArgument, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.CreateSecret(t.Context(), tc.req)
			wantStatus(t, err, tc.code, tc.msg)
		})
	}
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m["k"+strings.Repeat("x", i)] = "v"
	}
	return m
}

func TestSecretLifecycle(t *testing.T) {
	t.Parallel()
	srv, c := start(t, secretfake.Options{})
	ctx := t.Context()

	id := strings.Repeat("A_b-9", 51) // 255 characters, every allowed class
	created, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{
		Parent: project, SecretId: id,
		Secret: &secretmanagerpb.Secret{
			Replication: automatic(),
			Labels:      map[string]string{"app": "gmail-relay", "kind": "refresh-token"},
			Annotations: map[string]string{"gmail-relay-email": "alice@example.com"},
		},
	})
	if err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	name := project + "/secrets/" + id
	if created.GetName() != name || created.GetCreateTime() == nil || created.GetEtag() == "" {
		t.Fatalf("created = %v; want name %s with create_time and etag", created, name)
	}

	got, err := c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: name})
	if err != nil {
		t.Fatalf("GetSecret: %v", err)
	}
	if got.GetLabels()["kind"] != "refresh-token" || got.GetAnnotations()["gmail-relay-email"] != "alice@example.com" {
		t.Fatalf("GetSecret lost labels or annotations: %v", got)
	}
	if got.GetReplication().GetAutomatic() == nil {
		t.Fatalf("GetSecret lost replication: %v", got)
	}

	// A stale etag must not delete.
	err = c.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: name, Etag: `"0"`})
	wantStatus(t, err, codes.FailedPrecondition, "")

	if err := c.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: name, Etag: got.GetEtag()}); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	msg := "Secret [" + name + "] not found or has no versions."
	_, err = c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: name})
	wantStatus(t, err, codes.NotFound, msg)
	err = c.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: name})
	wantStatus(t, err, codes.NotFound, msg)

	// A recreated secret starts its versions again at 1.
	createSecret(t, c, "again", nil)
	addVersion(t, c, project+"/secrets/again", "x")
	if err := c.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: project + "/secrets/again"}); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	createSecret(t, c, "again", nil)
	if v := addVersion(t, c, project+"/secrets/again", "y"); !strings.HasSuffix(v.GetName(), "/versions/1") {
		t.Fatalf("recreated secret's first version = %s, want versions/1", v.GetName())
	}

	for method, want := range map[string]int64{"CreateSecret": 3, "GetSecret": 2, "DeleteSecret": 4} {
		if got := srv.Calls(method); got != want {
			t.Errorf("Calls(%s) = %d, want %d", method, got, want)
		}
	}
}

func TestUpdateSecret(t *testing.T) {
	t.Parallel()
	_, c := start(t, secretfake.Options{})
	ctx := t.Context()
	s := createSecret(t, c, "upd", map[string]string{"a": "1", "b": "2"})
	addVersion(t, c, s.GetName(), "v1")

	updated, err := c.UpdateSecret(ctx, &secretmanagerpb.UpdateSecretRequest{
		Secret: &secretmanagerpb.Secret{
			Name:           s.GetName(),
			Labels:         map[string]string{"c": "3"},
			Annotations:    map[string]string{"note": "kept"},
			VersionAliases: map[string]int64{"current": 1},
			Etag:           s.GetEtag(),
		},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels", "annotations", "version_aliases"}},
	})
	if err != nil {
		t.Fatalf("UpdateSecret: %v", err)
	}
	if len(updated.GetLabels()) != 1 || updated.GetLabels()["c"] != "3" || updated.GetAnnotations()["note"] != "kept" {
		t.Fatalf("labels/annotations not replaced: %v", updated)
	}
	if updated.GetEtag() == s.GetEtag() {
		t.Fatalf("etag did not change on update")
	}
	// Paths outside the mask are untouched.
	if updated.GetReplication().GetAutomatic() == nil {
		t.Fatalf("replication changed: %v", updated)
	}
	// An alias resolves on access.
	resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/current"})
	if err != nil || string(resp.GetPayload().GetData()) != "v1" {
		t.Fatalf("access by alias = %v, %v; want v1", resp, err)
	}

	tests := []struct {
		name string
		req  *secretmanagerpb.UpdateSecretRequest
		code codes.Code
	}{
		{"no mask", &secretmanagerpb.UpdateSecretRequest{Secret: &secretmanagerpb.Secret{Name: s.GetName()}}, codes.InvalidArgument},
		{"immutable path", &secretmanagerpb.UpdateSecretRequest{Secret: &secretmanagerpb.Secret{Name: s.GetName(), Replication: automatic()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"replication"}}}, codes.InvalidArgument},
		{"unknown path", &secretmanagerpb.UpdateSecretRequest{Secret: &secretmanagerpb.Secret{Name: s.GetName()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"bogus"}}}, codes.InvalidArgument},
		{"bad label", &secretmanagerpb.UpdateSecretRequest{Secret: &secretmanagerpb.Secret{Name: s.GetName(), Labels: map[string]string{"Bad": "x"}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}}}, codes.InvalidArgument},
		{"alias to missing version", &secretmanagerpb.UpdateSecretRequest{Secret: &secretmanagerpb.Secret{Name: s.GetName(), VersionAliases: map[string]int64{"x": 9}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"version_aliases"}}}, codes.InvalidArgument},
		{"stale etag", &secretmanagerpb.UpdateSecretRequest{Secret: &secretmanagerpb.Secret{Name: s.GetName(), Etag: s.GetEtag()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}}}, codes.FailedPrecondition},
		{"missing secret", &secretmanagerpb.UpdateSecretRequest{Secret: &secretmanagerpb.Secret{Name: project + "/secrets/nope"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}}}, codes.NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.UpdateSecret(t.Context(), tc.req)
			wantStatus(t, err, tc.code, "")
		})
	}
}

func TestAddAndAccessVersions(t *testing.T) {
	t.Parallel()
	_, c := start(t, secretfake.Options{})
	ctx := t.Context()
	s := createSecret(t, c, "tok", nil)

	// Access before any version: Google's "no versions" answer.
	_, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/latest"})
	wantStatus(t, err, codes.NotFound, "Secret ["+s.GetName()+"] not found or has no versions.")

	for i, data := range []string{"one", "two", "three"} {
		v := addVersion(t, c, s.GetName(), data)
		if want := s.GetName() + "/versions/" + string(rune('1'+i)); v.GetName() != want {
			t.Fatalf("version name = %s, want %s", v.GetName(), want)
		}
		if v.GetState() != secretmanagerpb.SecretVersion_ENABLED || !v.GetClientSpecifiedPayloadChecksum() {
			t.Fatalf("new version = %v; want ENABLED with client checksum", v)
		}
	}

	table := crc32.MakeTable(crc32.Castagnoli)
	for _, tc := range []struct{ version, wantName, wantData string }{
		{"latest", "3", "three"},
		{"1", "1", "one"},
		{"2", "2", "two"},
	} {
		resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/" + tc.version})
		if err != nil {
			t.Fatalf("Access %s: %v", tc.version, err)
		}
		if resp.GetName() != s.GetName()+"/versions/"+tc.wantName || string(resp.GetPayload().GetData()) != tc.wantData {
			t.Fatalf("Access %s = %s %q, want versions/%s %q", tc.version, resp.GetName(), resp.GetPayload().GetData(), tc.wantName, tc.wantData)
		}
		if resp.GetPayload().DataCrc32C == nil || resp.GetPayload().GetDataCrc32C() != int64(crc32.Checksum([]byte(tc.wantData), table)) {
			t.Fatalf("Access %s crc32c = %v, want crc32c of the data", tc.version, resp.GetPayload().DataCrc32C)
		}
	}

	// Without a client checksum, the server still computes and returns one.
	v, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: s.GetName(), Payload: &secretmanagerpb.SecretPayload{Data: []byte("four")}})
	if err != nil || v.GetClientSpecifiedPayloadChecksum() {
		t.Fatalf("Add without checksum = %v, %v; want success without client checksum flag", v, err)
	}
	resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: v.GetName()})
	if err != nil || resp.GetPayload().GetDataCrc32C() != int64(crc32.Checksum([]byte("four"), table)) {
		t.Fatalf("Access = %v, %v; want server-computed crc32c", resp, err)
	}

	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/9"})
	wantStatus(t, err, codes.NotFound, "Secret Version ["+s.GetName()+"/versions/9] not found.")
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: project + "/secrets/missing/versions/latest"})
	wantStatus(t, err, codes.NotFound, "Secret ["+project+"/secrets/missing] not found or has no versions.")
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName()})
	wantStatus(t, err, codes.InvalidArgument, "")
}

func TestAddSecretVersionRejects(t *testing.T) {
	t.Parallel()
	_, c := start(t, secretfake.Options{})
	s := createSecret(t, c, "rej", nil)
	wrong := int64(crc32.Checksum([]byte("data"), crc32.MakeTable(crc32.Castagnoli))) + 1
	exact := make([]byte, 64*1024)

	tests := []struct {
		name    string
		req     *secretmanagerpb.AddSecretVersionRequest
		code    codes.Code
		msg     string
		wantErr bool
	}{
		{"checksum mismatch", &secretmanagerpb.AddSecretVersionRequest{Parent: s.GetName(), Payload: &secretmanagerpb.SecretPayload{Data: []byte("data"), DataCrc32C: &wrong}},
			codes.InvalidArgument, "", true},
		{"one byte over 64 KiB", &secretmanagerpb.AddSecretVersionRequest{Parent: s.GetName(), Payload: &secretmanagerpb.SecretPayload{Data: make([]byte, 64*1024+1)}},
			codes.InvalidArgument, "Secret payload data length must be at most [65536] bytes.", true},
		{"no payload", &secretmanagerpb.AddSecretVersionRequest{Parent: s.GetName()},
			codes.InvalidArgument, "Field [payload] is required.", true},
		{"missing secret", &secretmanagerpb.AddSecretVersionRequest{Parent: project + "/secrets/none", Payload: &secretmanagerpb.SecretPayload{Data: []byte("x")}},
			codes.NotFound, "Secret [" + project + "/secrets/none] not found or has no versions.", true},
		{"exactly 64 KiB", &secretmanagerpb.AddSecretVersionRequest{Parent: s.GetName(), Payload: &secretmanagerpb.SecretPayload{Data: exact}},
			codes.OK, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.AddSecretVersion(t.Context(), tc.req)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("AddSecretVersion: %v", err)
				}
				return
			}
			wantStatus(t, err, tc.code, tc.msg)
		})
	}
	// The checksum failure stored nothing: only the 64 KiB version exists.
	it := c.ListSecretVersions(t.Context(), &secretmanagerpb.ListSecretVersionsRequest{Parent: s.GetName()})
	if got := collectVersions(t, it); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("versions = %v, want [1]", got)
	}
}

func TestVersionStates(t *testing.T) {
	t.Parallel()
	_, c := start(t, secretfake.Options{})
	ctx := t.Context()
	s := createSecret(t, c, "states", nil)
	addVersion(t, c, s.GetName(), "old")
	v2 := addVersion(t, c, s.GetName(), "new")
	latest := s.GetName() + "/versions/latest"

	disabled, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v2.GetName(), Etag: v2.GetEtag()})
	if err != nil || disabled.GetState() != secretmanagerpb.SecretVersion_DISABLED {
		t.Fatalf("Disable = %v, %v", disabled, err)
	}
	// "latest" is the newest version, whatever its state: Google does not
	// skip to an older enabled one.
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: latest})
	wantStatus(t, err, codes.FailedPrecondition, "Secret Version ["+v2.GetName()+"] is in DISABLED state.")
	meta, err := c.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: latest})
	if err != nil || meta.GetName() != v2.GetName() || meta.GetState() != secretmanagerpb.SecretVersion_DISABLED {
		t.Fatalf("GetSecretVersion(latest) = %v, %v; want disabled v2", meta, err)
	}
	if resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/1"}); err != nil || string(resp.GetPayload().GetData()) != "old" {
		t.Fatalf("Access v1 = %v, %v", resp, err)
	}
	// Disabling twice is harmless; a stale etag is not.
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v2.GetName()}); err != nil {
		t.Fatalf("second Disable: %v", err)
	}
	_, err = c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: v2.GetName(), Etag: v2.GetEtag()})
	wantStatus(t, err, codes.FailedPrecondition, "")

	if _, err := c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: v2.GetName()}); err != nil {
		t.Fatalf("Enable: %v", err)
	}
	if resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: latest}); err != nil || string(resp.GetPayload().GetData()) != "new" {
		t.Fatalf("Access latest after enable = %v, %v", resp, err)
	}

	destroyed, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: v2.GetName()})
	if err != nil || destroyed.GetState() != secretmanagerpb.SecretVersion_DESTROYED || destroyed.GetDestroyTime() == nil {
		t.Fatalf("Destroy = %v, %v; want DESTROYED with destroy_time", destroyed, err)
	}
	destroyedMsg := "Secret Version [" + v2.GetName() + "] is in DESTROYED state."
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: latest})
	wantStatus(t, err, codes.FailedPrecondition, destroyedMsg)
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: v2.GetName()})
	wantStatus(t, err, codes.FailedPrecondition, destroyedMsg)
	// DESTROYED is terminal.
	_, err = c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: v2.GetName()})
	wantStatus(t, err, codes.FailedPrecondition, destroyedMsg)
	_, err = c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v2.GetName()})
	wantStatus(t, err, codes.FailedPrecondition, destroyedMsg)
	_, err = c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: v2.GetName()})
	wantStatus(t, err, codes.FailedPrecondition, destroyedMsg)
	// State changes take a version number, not an alias.
	_, err = c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: latest})
	wantStatus(t, err, codes.NotFound, "")
	_, err = c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: s.GetName() + "/versions/7"})
	wantStatus(t, err, codes.NotFound, "Secret Version ["+s.GetName()+"/versions/7] not found.")
}

func TestListSecretsFilter(t *testing.T) {
	t.Parallel()
	_, c := start(t, secretfake.Options{})
	ctx := t.Context()
	createSecret(t, c, "gmail-token-aaa", map[string]string{"app": "gmail-relay", "kind": "refresh-token"})
	createSecret(t, c, "gmail-token-bbb", map[string]string{"app": "gmail-relay", "kind": "refresh-token"})
	createSecret(t, c, "gmail-config", map[string]string{"app": "gmail-relay", "kind": "config"})
	createSecret(t, c, "other", map[string]string{"env": "prod"})
	_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "regional", Secret: &secretmanagerpb.Secret{
		Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_UserManaged_{UserManaged: &secretmanagerpb.Replication_UserManaged{
			Replicas: []*secretmanagerpb.Replication_UserManaged_Replica{{Location: "us-east1"}, {Location: "europe-west1"}},
		}}},
	}})
	if err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	// Another project's secret never shows up.
	if _, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/elsewhere", SecretId: "gmail-token-zzz",
		Secret: &secretmanagerpb.Secret{Replication: automatic(), Labels: map[string]string{"app": "gmail-relay"}}}); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}

	tests := []struct {
		filter string
		want   []string // newest first
	}{
		{"", []string{"regional", "other", "gmail-config", "gmail-token-bbb", "gmail-token-aaa"}},
		{`labels.app="gmail-relay" AND labels.kind="refresh-token"`, []string{"gmail-token-bbb", "gmail-token-aaa"}},
		{`labels.app=gmail-relay labels.kind=refresh-token`, []string{"gmail-token-bbb", "gmail-token-aaa"}},
		{"labels.env:*", []string{"other"}},
		{"NOT labels.app:*", []string{"regional", "other"}},
		{"-labels.app:*", []string{"regional", "other"}},
		{"name:gmail-token", []string{"gmail-token-bbb", "gmail-token-aaa"}},
		{"name:GMAIL-TOKEN", []string{"gmail-token-bbb", "gmail-token-aaa"}},
		{"name:gmail*aaa", []string{"gmail-token-aaa"}},
		{"name=other", []string{"other"}},
		{"name:aaa OR name:bbb", []string{"gmail-token-bbb", "gmail-token-aaa"}},
		{"labels.app=gmail-relay AND name:aaa OR name:config", []string{"gmail-config", "gmail-token-aaa"}},
		{"(name:aaa OR name:other) AND labels.app:*", []string{"gmail-token-aaa"}},
		{"labels.kind!=config labels.app:*", []string{"gmail-token-bbb", "gmail-token-aaa"}},
		{"replication.automatic:*", []string{"other", "gmail-config", "gmail-token-bbb", "gmail-token-aaa"}},
		{"replication.user_managed.replicas.location:us-east1", []string{"regional"}},
		{"create_time>2000-01-01T00:00:00Z name:other", []string{"other"}},
		{"create_time<2000-01-01T00:00:00Z", nil},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			t.Parallel()
			it := c.ListSecrets(t.Context(), &secretmanagerpb.ListSecretsRequest{Parent: project, Filter: tc.filter})
			var got []string
			for {
				s, err := it.Next()
				if errors.Is(err, iterator.Done) {
					break
				}
				if err != nil {
					t.Fatalf("ListSecrets(%q): %v", tc.filter, err)
				}
				got = append(got, s.GetName()[strings.LastIndex(s.GetName(), "/")+1:])
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ListSecrets(%q) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}

	for _, bad := range []string{
		"annotations.email:x", "labels.:x", "gmail", "name ~ \"x.*\"", "labels.app=", "(name:a", "name:a AND",
		"create_time>yesterday", "replication.automatic:true", "state:ENABLED", "name<x", `name:"open`,
	} {
		t.Run("invalid "+bad, func(t *testing.T) {
			t.Parallel()
			it := c.ListSecrets(t.Context(), &secretmanagerpb.ListSecretsRequest{Parent: project, Filter: bad})
			_, err := it.Next()
			wantStatus(t, err, codes.InvalidArgument, "")
		})
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	srv, c := start(t, secretfake.Options{})
	for _, id := range []string{"s1", "s2", "s3", "s4", "s5"} {
		createSecret(t, c, id, nil)
	}
	it := c.ListSecrets(t.Context(), &secretmanagerpb.ListSecretsRequest{Parent: project, PageSize: 2})
	var got []string
	for {
		s, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, s.GetName()[strings.LastIndex(s.GetName(), "/")+1:])
	}
	if want := []string{"s5", "s4", "s3", "s2", "s1"}; !slices.Equal(got, want) {
		t.Fatalf("paged listing = %v, want %v", got, want)
	}
	if calls := srv.Calls("ListSecrets"); calls != 3 {
		t.Fatalf("ListSecrets calls = %d, want 3 pages", calls)
	}
	it = c.ListSecrets(t.Context(), &secretmanagerpb.ListSecretsRequest{Parent: project, PageToken: "not-a-token"})
	_, err := it.Next()
	wantStatus(t, err, codes.InvalidArgument, "")
}

func collectVersions(t *testing.T, it *secretmanager.SecretVersionIterator) []string {
	t.Helper()
	var got []string
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return got
		}
		if err != nil {
			t.Fatalf("ListSecretVersions: %v", err)
		}
		got = append(got, v.GetName()[strings.LastIndex(v.GetName(), "/")+1:])
	}
}

func TestListSecretVersionsFilter(t *testing.T) {
	t.Parallel()
	_, c := start(t, secretfake.Options{})
	ctx := t.Context()
	s := createSecret(t, c, "vers", nil)
	for _, d := range []string{"a", "b", "c", "d"} {
		addVersion(t, c, s.GetName(), d)
	}
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: s.GetName() + "/versions/2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: s.GetName() + "/versions/1"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		filter string
		want   []string
	}{
		{"", []string{"4", "3", "2", "1"}},
		{"state:ENABLED", []string{"4", "3"}},
		{"state=enabled", []string{"4", "3"}},
		{"state:DISABLED", []string{"2"}},
		{"NOT state:DESTROYED", []string{"4", "3", "2"}},
		{"state:ENABLED OR state:DISABLED", []string{"4", "3", "2"}},
		{"state!=ENABLED", []string{"2", "1"}},
	}
	for _, tc := range tests {
		it := c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: s.GetName(), Filter: tc.filter})
		if got := collectVersions(t, it); !slices.Equal(got, tc.want) {
			t.Errorf("ListSecretVersions(%q) = %v, want %v", tc.filter, got, tc.want)
		}
	}
	for _, bad := range []string{"state:GONE", "labels.a:*", "state<ENABLED"} {
		it := c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: s.GetName(), Filter: bad})
		_, err := it.Next()
		wantStatus(t, err, codes.InvalidArgument, "")
	}
	it := c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: project + "/secrets/none"})
	_, err := it.Next()
	wantStatus(t, err, codes.NotFound, "")
}

func TestFailNextAndCalls(t *testing.T) {
	t.Parallel()
	srv, c := start(t, secretfake.Options{})
	s := createSecret(t, c, "flaky", nil)
	srv.FailNext("AddSecretVersion", codes.Unavailable, 2)
	srv.FailNext("AddSecretVersion", codes.PermissionDenied, 1)

	req := &secretmanagerpb.AddSecretVersionRequest{Parent: s.GetName(), Payload: &secretmanagerpb.SecretPayload{Data: []byte("x")}}
	for _, want := range []codes.Code{codes.Unavailable, codes.Unavailable, codes.PermissionDenied} {
		_, err := c.AddSecretVersion(t.Context(), req)
		wantStatus(t, err, want, "")
	}
	v, err := c.AddSecretVersion(t.Context(), req)
	if err != nil {
		t.Fatalf("AddSecretVersion after faults: %v", err)
	}
	// Injected failures stored nothing: the first success is version 1.
	if !strings.HasSuffix(v.GetName(), "/versions/1") {
		t.Fatalf("version = %s, want versions/1", v.GetName())
	}
	if got := srv.Calls("AddSecretVersion"); got != 4 {
		t.Fatalf("Calls(AddSecretVersion) = %d, want 4", got)
	}
	if got := srv.Calls("NoSuchMethod"); got != 0 {
		t.Fatalf("Calls(NoSuchMethod) = %d, want 0", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatalf("FailNext with a misspelt method did not panic")
		}
	}()
	srv.FailNext("AddSecretVerison", codes.Unavailable, 1)
}

func TestCorruptVersion(t *testing.T) {
	t.Parallel()
	srv, c := start(t, secretfake.Options{})
	s := createSecret(t, c, "rot", nil)
	addVersion(t, c, s.GetName(), "payload")
	if err := srv.CorruptVersion(s.GetName() + "/versions/latest"); err != nil {
		t.Fatalf("CorruptVersion: %v", err)
	}
	resp, err := c.AccessSecretVersion(t.Context(), &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/latest"})
	if err != nil {
		t.Fatalf("Access: %v", err)
	}
	got := int64(crc32.Checksum(resp.GetPayload().GetData(), crc32.MakeTable(crc32.Castagnoli)))
	if got == resp.GetPayload().GetDataCrc32C() {
		t.Fatalf("corrupted payload still matches its checksum")
	}
	if err := srv.CorruptVersion(project + "/secrets/none/versions/1"); err == nil {
		t.Fatalf("CorruptVersion of a missing secret succeeded")
	}

	if err := srv.ReplacePayload(s.GetName()+"/versions/1", []byte("planted")); err != nil {
		t.Fatalf("ReplacePayload: %v", err)
	}
	resp, err = c.AccessSecretVersion(t.Context(), &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/1"})
	if err != nil || string(resp.GetPayload().GetData()) != "planted" {
		t.Fatalf("Access after ReplacePayload = %v, %v", resp, err)
	}
	if want := int64(crc32.Checksum([]byte("payload"), crc32.MakeTable(crc32.Castagnoli))); resp.GetPayload().GetDataCrc32C() != want {
		t.Fatalf("ReplacePayload changed the stored checksum")
	}
	if _, err := c.DestroySecretVersion(t.Context(), &secretmanagerpb.DestroySecretVersionRequest{Name: s.GetName() + "/versions/1"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReplacePayload(s.GetName()+"/versions/1", []byte("x")); err == nil {
		t.Fatalf("ReplacePayload revived a destroyed version")
	}
}

func TestPersistence(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state", "secrets.json")
	ctx := context.Background()

	srv, err := secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{StatePath: path})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	c, err := srv.NewClient(ctx)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	s := createSecret(t, c, "kept", map[string]string{"app": "gmail-relay"})
	addVersion(t, c, s.GetName(), "first")
	addVersion(t, c, s.GetName(), "second")
	if _, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: s.GetName() + "/versions/1"}); err != nil {
		t.Fatal(err)
	}
	createSecret(t, c, "gone", nil)
	if err := c.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: project + "/secrets/gone"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("state file mode = %o, want 600", perm)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 {
		t.Fatalf("state dir holds %v (%v); want only the state file, no temporaries", entries, err)
	}

	_, c2 := start(t, secretfake.Options{StatePath: path})
	got, err := c2.GetSecret(t.Context(), &secretmanagerpb.GetSecretRequest{Name: s.GetName()})
	if err != nil || got.GetLabels()["app"] != "gmail-relay" || got.GetEtag() != s.GetEtag() {
		t.Fatalf("reloaded secret = %v, %v; want labels and etag kept", got, err)
	}
	_, err = c2.GetSecret(t.Context(), &secretmanagerpb.GetSecretRequest{Name: project + "/secrets/gone"})
	wantStatus(t, err, codes.NotFound, "")
	resp, err := c2.AccessSecretVersion(t.Context(), &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/latest"})
	if err != nil || string(resp.GetPayload().GetData()) != "second" {
		t.Fatalf("reloaded latest = %v, %v; want second", resp, err)
	}
	_, err = c2.AccessSecretVersion(t.Context(), &secretmanagerpb.AccessSecretVersionRequest{Name: s.GetName() + "/versions/1"})
	wantStatus(t, err, codes.FailedPrecondition, "Secret Version ["+s.GetName()+"/versions/1] is in DESTROYED state.")
	// Numbering continues where it stopped.
	if v := addVersion(t, c2, s.GetName(), "third"); !strings.HasSuffix(v.GetName(), "/versions/3") {
		t.Fatalf("version after reload = %s, want versions/3", v.GetName())
	}
	// A destroyed payload is gone from disk too.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "Zmlyc3Q") { // base64 of "first"
		t.Fatalf("state file still holds the destroyed payload")
	}
}

func TestPersistenceErrors(t *testing.T) {
	t.Parallel()
	t.Run("corrupt state file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "secrets.json")
		if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := secretfake.New(secretfake.Options{StatePath: path}); err == nil {
			t.Fatalf("New accepted a corrupt state file")
		}
	})
	t.Run("unknown format", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "secrets.json")
		if err := os.WriteFile(path, []byte(`{"format":99,"secrets":[]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := secretfake.New(secretfake.Options{StatePath: path}); err == nil {
			t.Fatalf("New accepted an unknown format")
		}
	})
	t.Run("failed save changes nothing", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "state")
		_, c := start(t, secretfake.Options{StatePath: filepath.Join(dir, "secrets.json")})
		createSecret(t, c, "before", nil)
		// Replace the directory by a file so that the next save cannot write.
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := c.CreateSecret(t.Context(), &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "after", Secret: &secretmanagerpb.Secret{Replication: automatic()}})
		wantStatus(t, err, codes.Internal, "")
		_, err = c.GetSecret(t.Context(), &secretmanagerpb.GetSecretRequest{Name: project + "/secrets/after"})
		wantStatus(t, err, codes.NotFound, "")
	})
}
