package delegation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestTranslate holds the classification of impersonate's error texts,
// built the way impersonate v0.309.0 builds them (user.go:
// "impersonate: status code %d: %s" around Google's raw body).
func TestTranslate(t *testing.T) {
	t.Parallel()
	d := &Delegator{cfg: Config{ServiceAccount: "delegate@p.iam.gserviceaccount.com", ClientID: "112233445566778899001"}}
	cases := []struct {
		name   string
		err    error
		kind   Kind
		status int
		code   string
	}{
		{"unauthorized_client, today's spacing", fmt.Errorf("impersonate: status code 401: %s", `{
  "error": "unauthorized_client",
  "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."
}`), KindNotAuthorized, 401, "unauthorized_client"},
		{"unauthorized_client, older spacing", fmt.Errorf("impersonate: status code 401: %s", `{
  "error" : "unauthorized_client",
  "error_description" : "Unauthorized client or scope in request."
}`), KindNotAuthorized, 401, "unauthorized_client"},
		{"access_denied", fmt.Errorf("impersonate: status code 400: %s", `{"error":"access_denied","error_description":"Requested client not authorized."}`), KindNotAuthorized, 400, "access_denied"},
		{"unknown user", fmt.Errorf("impersonate: status code 400: %s", `{"error":"invalid_grant","error_description":"Invalid email or User ID"}`), KindUnknownUser, 400, "invalid_grant"},
		{"unknown user, doc's period", fmt.Errorf("impersonate: status code 400: %s", `{"error":"invalid_grant","error_description":"Invalid email or User ID."}`), KindUnknownUser, 400, "invalid_grant"},
		{"deleted user", fmt.Errorf("impersonate: status code 400: %s", `{"error":"invalid_grant","error_description":"The account has been deleted"}`), KindUnknownUser, 400, "invalid_grant"},
		{"bad sub", fmt.Errorf("impersonate: status code 400: %s", `{"error":"invalid_request","error_description":"Invalid impersonation \"sub\" field."}`), KindUnknownUser, 400, "invalid_request"},
		{"signer denied, short message", fmt.Errorf("impersonate: status code 403: %s", `{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}`), KindSignerDenied, 403, "PERMISSION_DENIED"},
		{"signer denied", fmt.Errorf("impersonate: status code 403: %s", `{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.signJwt' denied on resource (or it may not exist).","status":"PERMISSION_DENIED"}}`), KindSignerDenied, 403, "PERMISSION_DENIED"},
		{"clock", fmt.Errorf("impersonate: status code 400: %s", `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`), KindInternal, 400, "invalid_grant"},
		{"server error", fmt.Errorf("impersonate: status code 503: %s", `<html>unavailable</html>`), KindTransient, 503, ""},
		{"rate", fmt.Errorf("impersonate: status code 429: %s", `{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}`), KindTransient, 429, "RESOURCE_EXHAUSTED"},
		{"no answer", errors.New(`impersonate: unable to sign JWT: Post "https://iamcredentials.googleapis.com/v1/...": dial tcp: connection refused`), KindTransient, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := d.translate("zoe@example.net", c.err)
			if e.Kind != c.kind || e.Status != c.status || e.Code != c.code {
				t.Fatalf("translate = kind %s status %d code %q, want %s %d %q", e.Kind, e.Status, e.Code, c.kind, c.status, c.code)
			}
			if e.Retryable() != (c.kind == KindTransient) {
				t.Fatalf("Retryable = %v for %s", e.Retryable(), c.kind)
			}
			msg := e.Message()
			if !strings.Contains(msg, "zoe@example.net") && c.kind != KindSignerDenied {
				t.Fatalf("message %q does not name the user", msg)
			}
			if c.kind == KindNotAuthorized && !strings.Contains(msg, "client ID 112233445566778899001 for https://www.googleapis.com/auth/gmail.send under Admin console") {
				t.Fatalf("message %q lacks the admin fix", msg)
			}
			if c.kind == KindSignerDenied && !strings.Contains(msg, "roles/iam.serviceAccountTokenCreator on delegate@p.iam.gserviceaccount.com") {
				t.Fatalf("message %q lacks the operator fix", msg)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	t.Parallel()
	d, err := New(context.Background(), Config{ServiceAccount: "d@p.iam.gserviceaccount.com", Domains: []string{" Example.NET "}, Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for email, want := range map[string]bool{"zoe@example.net": true, " ZOE@Example.Net": true, "zoe@sub.example.net": false, "zoe@example.com": false, "example.net": false} {
		if got := d.Covers(email); got != want {
			t.Errorf("Covers(%q) = %v, want %v", email, got, want)
		}
	}
	var none *Delegator
	if none.Covers("zoe@example.net") {
		t.Error("a nil Delegator covers a domain")
	}
}

// TestRedirectOnlyGoogleHosts: the emulator transport carries impersonate's
// two hosts and nothing else, so a dev credential never goes elsewhere.
func TestRedirectOnlyGoogleHosts(t *testing.T) {
	t.Parallel()
	var seen []string
	r := &redirect{to: mustURL(t, "http://127.0.0.1:9/base"), base: roundTrip(func(req *http.Request) (*http.Response, error) {
		seen = append(seen, req.URL.String()+" "+req.Header.Get("Authorization"))
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
	})}
	for _, u := range []string{"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b:signJwt", "https://oauth2.googleapis.com/token", "https://evil.example/token"} {
		req, _ := http.NewRequest(http.MethodPost, u, http.NoBody)
		_, err := r.RoundTrip(req)
		if strings.Contains(u, "evil") != (err != nil) {
			t.Errorf("RoundTrip(%s) error = %v", u, err)
		}
	}
	want := []string{
		"http://127.0.0.1:9/base/v1/projects/-/serviceAccounts/a@b:signJwt Bearer " + EmulatorBearer,
		"http://127.0.0.1:9/base/token Bearer " + EmulatorBearer,
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests = %q, want %q", seen, want)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
