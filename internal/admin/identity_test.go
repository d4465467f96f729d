package admin_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/admin"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

// keys are shared by the package's tests: RSA keys are slow to make.
var (
	googleKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	otherKey  = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
)

// identities plays Google's identity-token issuer: a sandbox whose JWKS
// idtoken's validator fetches (through a transport that sends Google's
// certificate URL to the sandbox), and tokens signed with the sandbox's key.
type identities struct {
	verifier admin.Verifier
	key      *rsa.PrivateKey
	kid      string
}

// googleCertsURL is where idtoken fetches Google's RS256 keys.
const googleCertsURL = "https://www.googleapis.com/oauth2/v3/certs"

func newIdentities(t *testing.T) *identities {
	t.Helper()
	key, err := googleKey()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{OutboxDir: t.TempDir(), SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(func() { srv.Close(); sb.Close() })
	jwks, _ := url.Parse(srv.URL + sandbox.JWKSPath)
	wire := &http.Transport{}
	t.Cleanup(wire.CloseIdleConnections)
	toSandbox := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.String() != googleCertsURL {
			return nil, fmt.Errorf("test transport: unexpected request to %s", r.URL)
		}
		r = r.Clone(r.Context())
		r.URL, r.Host = jwks, jwks.Host
		return wire.RoundTrip(r)
	})
	v, err := idtoken.NewValidator(context.Background(), option.WithHTTPClient(&http.Client{Transport: toSandbox}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(jwks.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []struct{ Kid string } }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("sandbox JWKS: %v %+v", err, set)
	}
	return &identities{verifier: v, key: key, kid: set.Keys[0].Kid}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// claims are those of the ID token `gcloud auth print-identity-token
// --audiences=AUD` prints for a service account.
func (*identities) claims(email, aud string, now time.Time) map[string]any {
	return map[string]any{
		"iss": "https://accounts.google.com", "aud": aud, "azp": "112233445566778899",
		"sub": "112233445566778899", "email": email, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func (i *identities) sign(t *testing.T, claims map[string]any) string {
	return signJWT(t, i.key, i.kid, claims)
}

// signOther signs with a key the JWKS does not hold, under its kid.
func (i *identities) signOther(t *testing.T, claims map[string]any) string {
	k, err := otherKey()
	if err != nil {
		t.Fatal(err)
	}
	return signJWT(t, k, i.kid, claims)
}

func signJWT(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	hb, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": kid, "typ": "JWT"})
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signing := enc(hb) + "." + enc(cb)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc(sig)
}
