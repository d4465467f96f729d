package secretfake

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxPageSize is the cap service.proto documents for page_size.
const maxPageSize = 25000

func now() *timestamppb.Timestamp { return timestamppb.New(time.Now().UTC()) }

// CreateSecret implements secretmanagerpb.SecretManagerServiceServer.
func (f *Fake) CreateSecret(_ context.Context, req *secretmanagerpb.CreateSecretRequest) (*secretmanagerpb.Secret, error) {
	if err := f.enter("CreateSecret"); err != nil {
		return nil, err
	}
	project, err := parseParent(req.GetParent())
	if err != nil {
		return nil, err
	}
	if err := validateSecretID(req.GetSecretId()); err != nil {
		return nil, err
	}
	in := req.GetSecret()
	if in == nil {
		return nil, errRequired("secret")
	}
	if err := validateReplication(in.GetReplication()); err != nil {
		return nil, err
	}
	if err := validateMutable(in); err != nil {
		return nil, err
	}
	if len(in.GetVersionAliases()) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "A new secret has no versions, so version_aliases must be empty.")
	}
	if in.GetExpiration() != nil || in.GetVersionDestroyTtl() != nil {
		return nil, status.Errorf(codes.Unimplemented, "secretfake: secret expiration and delayed version destruction are not supported")
	}

	name := secretName(project, req.GetSecretId())
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.secrets[name]; ok {
		return nil, errAlreadyExists(name)
	}
	s := cloneSecret(in)
	s.Name = name
	s.CreateTime = now()
	s.Etag = f.nextEtag()
	rec := &secretRec{secret: s, seq: f.seq + 1}
	if err := f.commit(name, rec); err != nil {
		return nil, err
	}
	f.seq++
	return cloneSecret(s), nil
}

// validateMutable checks the fields that both create and update may set.
func validateMutable(s *secretmanagerpb.Secret) error {
	if err := validateLabels(s.GetLabels()); err != nil {
		return err
	}
	if err := validateAnnotations(s.GetAnnotations()); err != nil {
		return err
	}
	if s.GetRotation() != nil && len(s.GetTopics()) == 0 {
		return status.Errorf(codes.InvalidArgument, "A secret with a rotation policy must have at least one topic.")
	}
	return nil
}

// GetSecret implements secretmanagerpb.SecretManagerServiceServer.
func (f *Fake) GetSecret(_ context.Context, req *secretmanagerpb.GetSecretRequest) (*secretmanagerpb.Secret, error) {
	if err := f.enter("GetSecret"); err != nil {
		return nil, err
	}
	if _, _, err := parseSecretName(req.GetName()); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.secrets[req.GetName()]
	if !ok {
		return nil, errSecretNotFound(req.GetName())
	}
	return cloneSecret(rec.secret), nil
}

// ListSecrets implements secretmanagerpb.SecretManagerServiceServer. Secrets
// come newest first, as service.proto documents.
func (f *Fake) ListSecrets(_ context.Context, req *secretmanagerpb.ListSecretsRequest) (*secretmanagerpb.ListSecretsResponse, error) {
	if err := f.enter("ListSecrets"); err != nil {
		return nil, err
	}
	project, err := parseParent(req.GetParent())
	if err != nil {
		return nil, err
	}
	match, err := parseFilter(req.GetFilter(), kindSecret)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	var recs []*secretRec
	prefix := "projects/" + project + "/secrets/"
	for name, rec := range f.secrets {
		if strings.HasPrefix(name, prefix) {
			recs = append(recs, rec)
		}
	}
	f.mu.Unlock()
	slices.SortFunc(recs, func(a, b *secretRec) int { return cmp.Compare(b.seq, a.seq) })
	var all []*secretmanagerpb.Secret
	for _, rec := range recs {
		if match(secretTarget(rec.secret)) {
			all = append(all, rec.secret)
		}
	}
	page, next, err := paginate(all, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &secretmanagerpb.ListSecretsResponse{NextPageToken: next}
	for _, s := range page {
		resp.Secrets = append(resp.Secrets, cloneSecret(s))
	}
	if req.GetFilter() == "" {
		resp.TotalSize = int32(len(all))
	}
	return resp, nil
}

// UpdateSecret implements secretmanagerpb.SecretManagerServiceServer.
func (f *Fake) UpdateSecret(_ context.Context, req *secretmanagerpb.UpdateSecretRequest) (*secretmanagerpb.Secret, error) {
	if err := f.enter("UpdateSecret"); err != nil {
		return nil, err
	}
	in := req.GetSecret()
	if in == nil {
		return nil, errRequired("secret")
	}
	if _, _, err := parseSecretName(in.GetName()); err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, errRequired("update_mask")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.secrets[in.GetName()]
	if !ok {
		return nil, errSecretNotFound(in.GetName())
	}
	if in.GetEtag() != "" && in.GetEtag() != rec.secret.GetEtag() {
		return nil, errEtagMismatch(in.GetName())
	}
	s := cloneSecret(rec.secret)
	for _, p := range paths {
		switch p {
		case "*":
			s.Labels, s.Annotations, s.Topics, s.Rotation = in.GetLabels(), in.GetAnnotations(), in.GetTopics(), in.GetRotation()
			s.VersionAliases = in.GetVersionAliases()
		case "labels":
			s.Labels = in.GetLabels()
		case "annotations":
			s.Annotations = in.GetAnnotations()
		case "topics":
			s.Topics = in.GetTopics()
		case "rotation":
			s.Rotation = in.GetRotation()
		case "version_aliases":
			s.VersionAliases = in.GetVersionAliases()
		case "name", "replication", "create_time", "etag", "secret_type":
			return nil, status.Errorf(codes.InvalidArgument, "Field [%s] cannot be updated.", p)
		case "expire_time", "ttl", "version_destroy_ttl", "customer_managed_encryption", "tags":
			return nil, status.Errorf(codes.Unimplemented, "secretfake: updating %s is not supported", p)
		default:
			return nil, status.Errorf(codes.InvalidArgument, "Invalid update_mask path [%s].", p)
		}
	}
	if err := validateMutable(s); err != nil {
		return nil, err
	}
	for alias, n := range s.GetVersionAliases() {
		if alias == "latest" || isNumber(alias) {
			return nil, status.Errorf(codes.InvalidArgument, "Version alias [%s] may not be a number or \"latest\".", alias)
		}
		if n < 1 || n > int64(len(rec.versions)) {
			return nil, status.Errorf(codes.InvalidArgument, "Version alias [%s] points at version %d, which does not exist.", alias, n)
		}
	}
	// The request's maps and slices were copied in by reference; detach them
	// so the stored record cannot change behind the lock.
	s = cloneSecret(s)
	s.Etag = f.nextEtag()
	if err := f.commit(s.GetName(), rec.withSecret(s)); err != nil {
		return nil, err
	}
	return cloneSecret(s), nil
}

// DeleteSecret implements secretmanagerpb.SecretManagerServiceServer.
func (f *Fake) DeleteSecret(_ context.Context, req *secretmanagerpb.DeleteSecretRequest) (*emptypb.Empty, error) {
	if err := f.enter("DeleteSecret"); err != nil {
		return nil, err
	}
	if _, _, err := parseSecretName(req.GetName()); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.secrets[req.GetName()]
	if !ok {
		return nil, errSecretNotFound(req.GetName())
	}
	if req.GetEtag() != "" && req.GetEtag() != rec.secret.GetEtag() {
		return nil, errEtagMismatch(req.GetName())
	}
	if err := f.commit(req.GetName(), nil); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// AddSecretVersion implements secretmanagerpb.SecretManagerServiceServer.
func (f *Fake) AddSecretVersion(_ context.Context, req *secretmanagerpb.AddSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	if err := f.enter("AddSecretVersion"); err != nil {
		return nil, err
	}
	if _, _, err := parseSecretName(req.GetParent()); err != nil {
		return nil, err
	}
	payload := req.GetPayload()
	if payload == nil || len(payload.GetData()) == 0 {
		return nil, errRequired("payload")
	}
	if len(payload.GetData()) > maxPayloadBytes {
		return nil, status.Errorf(codes.InvalidArgument, "Secret payload data length must be at most [%d] bytes.", maxPayloadBytes)
	}
	sum := crc32.Checksum(payload.GetData(), castagnoli)
	if payload.DataCrc32C != nil && payload.GetDataCrc32C() != int64(sum) {
		return nil, status.Errorf(codes.InvalidArgument,
			"Checksum mismatch: payload.data_crc32c [%d] does not match the CRC32C of payload.data.", payload.GetDataCrc32C())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.secrets[req.GetParent()]
	if !ok {
		return nil, errSecretNotFound(req.GetParent())
	}
	n := int64(len(rec.versions) + 1)
	meta := &secretmanagerpb.SecretVersion{
		Name:                           versionName(req.GetParent(), n),
		CreateTime:                     now(),
		State:                          secretmanagerpb.SecretVersion_ENABLED,
		ReplicationStatus:              replicationStatus(rec.secret.GetReplication()),
		Etag:                           f.nextEtag(),
		ClientSpecifiedPayloadChecksum: payload.DataCrc32C != nil,
	}
	next := rec.withVersion(len(rec.versions), &versionRec{meta: meta, data: bytes.Clone(payload.GetData()), crc32c: sum})
	if err := f.commit(req.GetParent(), next); err != nil {
		return nil, err
	}
	return cloneVersion(meta), nil
}

// lookupVersion finds a version for reading.
func (f *Fake) lookupVersion(name string, allowAlias bool) (*versionRec, error) {
	secret, version, err := parseVersionName(name)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.secrets[secret]
	if !ok {
		return nil, errSecretNotFound(secret)
	}
	idx, err := rec.resolve(secret, version, allowAlias)
	if err != nil {
		return nil, err
	}
	return rec.versions[idx], nil
}

// GetSecretVersion implements secretmanagerpb.SecretManagerServiceServer.
// "latest" is the most recently created version, whatever its state.
func (f *Fake) GetSecretVersion(_ context.Context, req *secretmanagerpb.GetSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	if err := f.enter("GetSecretVersion"); err != nil {
		return nil, err
	}
	v, err := f.lookupVersion(req.GetName(), true)
	if err != nil {
		return nil, err
	}
	return cloneVersion(v.meta), nil
}

// AccessSecretVersion implements secretmanagerpb.SecretManagerServiceServer.
// As at Google, "latest" is the most recently created version, not the most
// recent enabled one: when it is disabled or destroyed the call fails with
// FailedPrecondition naming the resolved version.
func (f *Fake) AccessSecretVersion(_ context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	if err := f.enter("AccessSecretVersion"); err != nil {
		return nil, err
	}
	v, err := f.lookupVersion(req.GetName(), true)
	if err != nil {
		return nil, err
	}
	if st := v.meta.GetState(); st != secretmanagerpb.SecretVersion_ENABLED {
		return nil, errVersionState(v.meta.GetName(), st)
	}
	sum := int64(v.crc32c)
	return &secretmanagerpb.AccessSecretVersionResponse{
		Name:    v.meta.GetName(),
		Payload: &secretmanagerpb.SecretPayload{Data: bytes.Clone(v.data), DataCrc32C: &sum},
	}, nil
}

// ListSecretVersions implements secretmanagerpb.SecretManagerServiceServer.
// Versions come newest first and never carry payloads.
func (f *Fake) ListSecretVersions(_ context.Context, req *secretmanagerpb.ListSecretVersionsRequest) (*secretmanagerpb.ListSecretVersionsResponse, error) {
	if err := f.enter("ListSecretVersions"); err != nil {
		return nil, err
	}
	if _, _, err := parseSecretName(req.GetParent()); err != nil {
		return nil, err
	}
	match, err := parseFilter(req.GetFilter(), kindVersion)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	rec, ok := f.secrets[req.GetParent()]
	f.mu.Unlock()
	if !ok {
		return nil, errSecretNotFound(req.GetParent())
	}
	var all []*secretmanagerpb.SecretVersion
	for i := len(rec.versions) - 1; i >= 0; i-- {
		if v := rec.versions[i].meta; match(versionTarget(v)) {
			all = append(all, v)
		}
	}
	page, next, err := paginate(all, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &secretmanagerpb.ListSecretVersionsResponse{NextPageToken: next}
	for _, v := range page {
		resp.Versions = append(resp.Versions, cloneVersion(v))
	}
	if req.GetFilter() == "" {
		resp.TotalSize = int32(len(all))
	}
	return resp, nil
}

// DisableSecretVersion implements secretmanagerpb.SecretManagerServiceServer.
func (f *Fake) DisableSecretVersion(_ context.Context, req *secretmanagerpb.DisableSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	if err := f.enter("DisableSecretVersion"); err != nil {
		return nil, err
	}
	return f.transition(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_DISABLED)
}

// EnableSecretVersion implements secretmanagerpb.SecretManagerServiceServer.
func (f *Fake) EnableSecretVersion(_ context.Context, req *secretmanagerpb.EnableSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	if err := f.enter("EnableSecretVersion"); err != nil {
		return nil, err
	}
	return f.transition(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_ENABLED)
}

// DestroySecretVersion implements secretmanagerpb.SecretManagerServiceServer.
// The payload is dropped at once; DESTROYED is terminal, so destroying twice
// fails with FailedPrecondition.
func (f *Fake) DestroySecretVersion(_ context.Context, req *secretmanagerpb.DestroySecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	if err := f.enter("DestroySecretVersion"); err != nil {
		return nil, err
	}
	return f.transition(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_DESTROYED)
}

func (f *Fake) transition(name, etag string, to secretmanagerpb.SecretVersion_State) (*secretmanagerpb.SecretVersion, error) {
	secret, version, err := parseVersionName(name)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.secrets[secret]
	if !ok {
		return nil, errSecretNotFound(secret)
	}
	idx, err := rec.resolve(secret, version, false)
	if err != nil {
		return nil, err
	}
	cur := rec.versions[idx]
	if cur.meta.GetState() == secretmanagerpb.SecretVersion_DESTROYED {
		return nil, errVersionState(cur.meta.GetName(), cur.meta.GetState())
	}
	if etag != "" && etag != cur.meta.GetEtag() {
		return nil, errEtagMismatch(cur.meta.GetName())
	}
	meta := cloneVersion(cur.meta)
	meta.State = to
	meta.Etag = f.nextEtag()
	next := &versionRec{meta: meta, data: cur.data, crc32c: cur.crc32c}
	if to == secretmanagerpb.SecretVersion_DESTROYED {
		meta.DestroyTime = now()
		next.data, next.crc32c = nil, 0
	}
	if err := f.commit(secret, rec.withVersion(idx, next)); err != nil {
		return nil, err
	}
	return cloneVersion(meta), nil
}

// paginate slices a listing. Page tokens are opaque offsets.
func paginate[T any](all []T, pageSize int32, token string) (page []T, next string, err error) {
	offset := 0
	if token != "" {
		raw, derr := base64.RawURLEncoding.DecodeString(token)
		n, perr := strconv.Atoi(strings.TrimPrefix(string(raw), "offset:"))
		if derr != nil || perr != nil || !strings.HasPrefix(string(raw), "offset:") || n < 0 {
			return nil, "", status.Errorf(codes.InvalidArgument, "Invalid page_token [%s].", truncate(token, 100))
		}
		offset = n
	}
	if pageSize < 0 {
		return nil, "", status.Errorf(codes.InvalidArgument, "page_size must not be negative.")
	}
	size := int(pageSize)
	if size == 0 || size > maxPageSize {
		size = maxPageSize
	}
	if offset >= len(all) {
		return nil, "", nil
	}
	end := min(offset+size, len(all))
	if end < len(all) {
		next = base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(end)))
	}
	return all[offset:end], next, nil
}
