// Package secretfake is an in-process Secret Manager for tests and local
// development.
//
// It implements the gRPC service that cloud.google.com/go/secretmanager/apiv1
// speaks, so production code runs against it unchanged: the same resource
// names, status codes and message shapes that Google returns, the same
// version state machine, crc32c checks and list filters. It is a fake of the
// network, not of the SDK. State lives in memory and can be mirrored to a JSON
// file so that a dev server keeps its tokens across restarts.
//
// Known differences from Google: IAM methods, regional secrets, secret
// expiration and delayed version destruction are not implemented (they answer
// Unimplemented); resource names keep the project ID the caller used, where
// Google answers with the project number; the filter language covers the forms
// Secret Manager documents and rejects the rest.
package secretfake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gmailrelay/gmailrelay/internal/atomicfile"
)

// Options configures a Fake.
type Options struct {
	// StatePath, when set, names a JSON file that mirrors the fake's state:
	// New loads it if it exists, and every mutation rewrites it atomically
	// (temporary file, then rename). It holds secret payloads in the clear,
	// so it is written with mode 0600 inside a directory created 0700.
	StatePath string
}

// methods lists the RPCs the fake implements; FailNext and Calls accept
// exactly these names.
var methods = []string{
	"ListSecrets", "CreateSecret", "AddSecretVersion", "GetSecret", "UpdateSecret", "DeleteSecret",
	"ListSecretVersions", "GetSecretVersion", "AccessSecretVersion",
	"DisableSecretVersion", "EnableSecretVersion", "DestroySecretVersion",
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Fake implements secretmanagerpb.SecretManagerServiceServer. Register it on
// any grpc.Server, or use Start.
type Fake struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer

	statePath string
	calls     map[string]*atomic.Int64 // fixed key set, so reads need no lock

	mu       sync.Mutex
	secrets  map[string]*secretRec // keyed by projects/P/secrets/S
	seq      int64                 // creation order, for newest-first listing
	lastEtag int64
	faults   map[string][]fault
}

var _ secretmanagerpb.SecretManagerServiceServer = (*Fake)(nil)

// Records are never changed in place: a mutation builds a new record and
// commit swaps it in only after the state file is written, so a failed write
// leaves memory and disk in agreement.
type secretRec struct {
	secret   *secretmanagerpb.Secret
	seq      int64
	versions []*versionRec // versions[i] is version i+1
}

type versionRec struct {
	meta   *secretmanagerpb.SecretVersion
	data   []byte
	crc32c uint32
}

type fault struct {
	code codes.Code
	left int
}

// New returns a Fake, loading opts.StatePath when it names an existing file.
func New(opts Options) (*Fake, error) {
	f := &Fake{
		statePath: opts.StatePath,
		calls:     make(map[string]*atomic.Int64, len(methods)),
		secrets:   make(map[string]*secretRec),
		faults:    make(map[string][]fault),
		lastEtag:  time.Now().UnixMicro(),
	}
	for _, m := range methods {
		f.calls[m] = new(atomic.Int64)
	}
	if f.statePath == "" {
		return f, nil
	}
	if err := os.MkdirAll(filepath.Dir(f.statePath), 0o700); err != nil {
		return nil, fmt.Errorf("secretfake.New: creating state directory: %w", err)
	}
	if err := f.load(); err != nil {
		return nil, fmt.Errorf("secretfake.New: %w", err)
	}
	return f, nil
}

// FailNext makes the next n calls of method (for example "AddSecretVersion")
// fail with code, before the fake looks at the request. Calls queue up: a
// second FailNext applies after the first is used up. It panics on a method
// the fake does not implement, so that a typo cannot leave a test passing
// without its fault.
func (f *Fake) FailNext(method string, code codes.Code, n int) {
	if _, ok := f.calls[method]; !ok {
		panic(fmt.Sprintf("secretfake.FailNext: unknown method %q (want one of %s)", method, strings.Join(methods, ", ")))
	}
	if n <= 0 || code == codes.OK {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[method] = append(f.faults[method], fault{code: code, left: n})
}

// Calls reports how many times method was called, failed calls included.
// Unknown methods report 0.
func (f *Fake) Calls(method string) int64 {
	if c, ok := f.calls[method]; ok {
		return c.Load()
	}
	return 0
}

// CorruptVersion flips one bit of a stored payload while keeping its stored
// checksum, as storage rot would, so that a test can prove its reader checks
// the crc32c that AccessSecretVersion returns. name is a version resource
// name; "latest" and aliases resolve as in AccessSecretVersion.
func (f *Fake) CorruptVersion(name string) error {
	err := f.rewritePayload(name, func(data []byte) []byte {
		if len(data) == 0 {
			return []byte{0}
		}
		data[0] ^= 0x01
		return data
	})
	if err != nil {
		return fmt.Errorf("secretfake.CorruptVersion: %w", err)
	}
	return nil
}

// ReplacePayload overwrites a stored payload with data but keeps the stored
// checksum, so that a test can plant a payload that is well-formed yet fails
// the crc32c check. name resolves as in CorruptVersion.
func (f *Fake) ReplacePayload(name string, data []byte) error {
	err := f.rewritePayload(name, func([]byte) []byte { return bytes.Clone(data) })
	if err != nil {
		return fmt.Errorf("secretfake.ReplacePayload: %w", err)
	}
	return nil
}

func (f *Fake) rewritePayload(name string, rewrite func([]byte) []byte) error {
	secret, version, err := parseVersionName(name)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.secrets[secret]
	if !ok {
		return errSecretNotFound(secret)
	}
	idx, err := rec.resolve(secret, version, true)
	if err != nil {
		return err
	}
	v := rec.versions[idx]
	if v.meta.GetState() == secretmanagerpb.SecretVersion_DESTROYED {
		return errVersionState(v.meta.GetName(), v.meta.GetState())
	}
	next := &versionRec{meta: v.meta, data: rewrite(bytes.Clone(v.data)), crc32c: v.crc32c}
	return f.commit(secret, rec.withVersion(idx, next))
}

// enter counts a call and applies any queued fault.
func (f *Fake) enter(method string) error {
	f.calls[method].Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.faults[method]
	if len(q) == 0 {
		return nil
	}
	code := q[0].code
	q[0].left--
	if q[0].left == 0 {
		q = q[1:]
	}
	f.faults[method] = q
	return status.Errorf(code, "secretfake: injected %s for %s", code, method)
}

// nextEtag returns a fresh etag in Google's quoted-hex shape.
func (f *Fake) nextEtag() string {
	now := time.Now().UnixMicro()
	if now <= f.lastEtag {
		now = f.lastEtag + 1
	}
	f.lastEtag = now
	return fmt.Sprintf("%q", fmt.Sprintf("%x", now))
}

// resolve finds the index of a version. Only Get and Access accept "latest"
// and aliases; the state-changing calls take a version number.
func (r *secretRec) resolve(secret, version string, allowAlias bool) (int, error) {
	var n int64
	switch {
	case allowAlias && version == "latest":
		if len(r.versions) == 0 {
			return 0, errSecretNotFound(secret)
		}
		return len(r.versions) - 1, nil
	case isNumber(version):
		if _, err := fmt.Sscan(version, &n); err != nil {
			return 0, errVersionNotFound(secret + "/versions/" + version)
		}
	case allowAlias:
		alias, ok := r.secret.GetVersionAliases()[version]
		if !ok {
			return 0, errVersionNotFound(secret + "/versions/" + version)
		}
		n = alias
	default:
		return 0, errVersionNotFound(secret + "/versions/" + version)
	}
	if n < 1 || n > int64(len(r.versions)) {
		return 0, errVersionNotFound(secret + "/versions/" + version)
	}
	return int(n - 1), nil
}

func isNumber(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (r *secretRec) withSecret(s *secretmanagerpb.Secret) *secretRec {
	return &secretRec{secret: s, seq: r.seq, versions: r.versions}
}

func (r *secretRec) withVersion(idx int, v *versionRec) *secretRec {
	versions := slices.Clone(r.versions)
	if idx == len(versions) {
		versions = append(versions, v)
	} else {
		versions[idx] = v
	}
	return &secretRec{secret: r.secret, seq: r.seq, versions: versions}
}

// commit installs rec under name (nil deletes), writing the state file
// first. Callers hold f.mu.
func (f *Fake) commit(name string, rec *secretRec) error {
	if f.statePath != "" {
		if err := f.save(name, rec); err != nil {
			return status.Errorf(codes.Internal, "secretfake: saving state: %v", err)
		}
	}
	if rec == nil {
		delete(f.secrets, name)
	} else {
		f.secrets[name] = rec
	}
	return nil
}

// The state file's layout. Protos are stored as protojson so that every
// field survives a restart.
type stateFile struct {
	Format  int           `json:"format"`
	Secrets []stateSecret `json:"secrets"`
}

type stateSecret struct {
	Secret   json.RawMessage `json:"secret"`
	Seq      int64           `json:"seq"`
	Versions []stateVersion  `json:"versions"`
}

type stateVersion struct {
	Version json.RawMessage `json:"version"`
	Data    []byte          `json:"data,omitempty"`
	CRC32C  uint32          `json:"crc32c"`
}

const stateFormat = 1

func (f *Fake) save(override string, rec *secretRec) error {
	names := make([]string, 0, len(f.secrets)+1)
	for n := range f.secrets {
		if n != override {
			names = append(names, n)
		}
	}
	if rec != nil {
		names = append(names, override)
	}
	slices.Sort(names)
	st := stateFile{Format: stateFormat, Secrets: make([]stateSecret, 0, len(names))}
	for _, n := range names {
		r := f.secrets[n]
		if n == override {
			r = rec
		}
		raw, err := protojson.Marshal(r.secret)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", n, err)
		}
		ss := stateSecret{Secret: raw, Seq: r.seq}
		for _, v := range r.versions {
			vraw, err := protojson.Marshal(v.meta)
			if err != nil {
				return fmt.Errorf("encoding %s: %w", v.meta.GetName(), err)
			}
			ss.Versions = append(ss.Versions, stateVersion{Version: vraw, Data: v.data, CRC32C: v.crc32c})
		}
		st.Secrets = append(st.Secrets, ss)
	}
	data, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	return atomicfile.Write(f.statePath, data, 0o600)
}

func (f *Fake) load() error {
	data, err := os.ReadFile(f.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("decoding state file %s: %w", f.statePath, err)
	}
	if st.Format != stateFormat {
		return fmt.Errorf("state file %s has format %d, want %d", f.statePath, st.Format, stateFormat)
	}
	for _, ss := range st.Secrets {
		s := new(secretmanagerpb.Secret)
		if err := protojson.Unmarshal(ss.Secret, s); err != nil {
			return fmt.Errorf("decoding a secret in %s: %w", f.statePath, err)
		}
		if _, _, err := parseSecretName(s.GetName()); err != nil {
			return fmt.Errorf("state file %s: %w", f.statePath, err)
		}
		rec := &secretRec{secret: s, seq: ss.Seq}
		for i, sv := range ss.Versions {
			v := new(secretmanagerpb.SecretVersion)
			if err := protojson.Unmarshal(sv.Version, v); err != nil {
				return fmt.Errorf("decoding a version of %s: %w", s.GetName(), err)
			}
			if want := versionName(s.GetName(), int64(i+1)); v.GetName() != want {
				return fmt.Errorf("state file %s: version %q where %q belongs", f.statePath, v.GetName(), want)
			}
			rec.versions = append(rec.versions, &versionRec{meta: v, data: sv.Data, crc32c: sv.CRC32C})
		}
		if _, dup := f.secrets[s.GetName()]; dup {
			return fmt.Errorf("state file %s: %s appears twice", f.statePath, s.GetName())
		}
		f.secrets[s.GetName()] = rec
		f.seq = max(f.seq, rec.seq)
	}
	return nil
}

func cloneSecret(s *secretmanagerpb.Secret) *secretmanagerpb.Secret {
	return proto.CloneOf(s)
}

func cloneVersion(v *secretmanagerpb.SecretVersion) *secretmanagerpb.SecretVersion {
	return proto.CloneOf(v)
}
