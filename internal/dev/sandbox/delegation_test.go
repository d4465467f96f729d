package sandbox_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/delegation"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

const delegateSA = "delegate@relay-project.iam.gserviceaccount.com"

// delegator runs the real impersonate code against the sandbox.
func (e *env) delegator() *delegation.Delegator {
	e.t.Helper()
	d, err := delegation.New(context.Background(), delegation.Config{
		ServiceAccount: delegateSA, ClientID: sandbox.ServiceAccountClientID(delegateSA),
		Domains: []string{"example.net"}, Endpoint: e.ts.URL,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) delegate(domain string, scopes ...string) {
	e.t.Helper()
	if len(scopes) == 0 {
		scopes = []string{sandbox.ScopeGmailSend}
	}
	if err := e.sb.SetDelegation(sandbox.Delegation{Domain: domain, ClientID: sandbox.ServiceAccountClientID(delegateSA), Scopes: scopes, Enabled: true}); err != nil {
		e.t.Fatal(err)
	}
}

func TestDelegatedTokenSendsAsTheUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.delegate("example.net")
	tok, err := e.delegator().Token(context.Background(), "Zoe@Example.net")
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if !strings.HasPrefix(tok.AccessToken, "ya29.") || tok.Expiry.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("token = %q expiring %v, want a ya29 token for about an hour", tok.AccessToken[:5], tok.Expiry)
	}
	svc, err := gmail.NewService(context.Background(), option.WithEndpoint(e.ts.URL+"/"),
		option.WithHTTPClient(oauth2.NewClient(context.Background(), oauth2.StaticTokenSource(tok))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sendRaw(svc, message("bob@example.org", "delegated", "hi")); err != nil {
		t.Fatalf("send with the delegated token: %v", err)
	}
	out := e.sb.Outbox()
	if len(out) != 1 || out[0].Email != "zoe@example.net" {
		t.Fatalf("outbox = %+v, want one message sent as zoe@example.net", out)
	}
	if st := e.sb.Stats(); st.SignJWTCalls != 1 || st.DelegatedTokens != 1 {
		t.Fatalf("stats = %+v, want one signJwt call and one delegated token", st)
	}
}

func TestDelegationRefusals(t *testing.T) {
	t.Parallel()
	const unauthorized = "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."
	cases := []struct {
		name    string
		setup   func(e *env)
		user    string
		kind    delegation.Kind
		status  int
		code    string
		desc    string
		wantFix bool
	}{
		{"no delegation for the domain", func(e *env) {}, "zoe@example.net", delegation.KindNotAuthorized, 401, "unauthorized_client", unauthorized, true},
		{"delegation withdrawn", func(e *env) {
			e.delegate("example.net")
			_ = e.sb.SetDelegation(sandbox.Delegation{Domain: "example.net", Enabled: false})
		}, "zoe@example.net", delegation.KindNotAuthorized, 401, "unauthorized_client", unauthorized, true},
		{"another client ID authorised", func(e *env) {
			_ = e.sb.SetDelegation(sandbox.Delegation{Domain: "example.net", ClientID: "100000000000000000001", Scopes: []string{sandbox.ScopeGmailSend}, Enabled: true})
		}, "zoe@example.net", delegation.KindNotAuthorized, 401, "unauthorized_client", unauthorized, true},
		{"another scope authorised", func(e *env) { e.delegate("example.net", sandbox.ScopeGmailRead) },
			"zoe@example.net", delegation.KindNotAuthorized, 401, "unauthorized_client", unauthorized, true},
		{"unknown user", func(e *env) {
			e.delegate("example.net")
			_ = e.sb.SetDelegatedUser("ghost@example.net", sandbox.UserUnknown)
		}, "ghost@example.net", delegation.KindUnknownUser, 400, "invalid_grant", "Invalid email or User ID", false},
		{"suspended user", func(e *env) {
			e.delegate("example.net")
			_ = e.sb.SetDelegatedUser("sam@example.net", sandbox.UserSuspended)
		}, "sam@example.net", delegation.KindUnknownUser, 400, "invalid_grant", "Invalid email or User ID", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c.setup(e)
			_, err := e.delegator().Token(context.Background(), c.user)
			var de *delegation.Error
			if !errors.As(err, &de) {
				t.Fatalf("Token error = %v, want *delegation.Error", err)
			}
			if de.Kind != c.kind || de.Status != c.status || de.Code != c.code || de.Description != c.desc || de.Retryable() {
				t.Fatalf("error = %+v, want kind %s, %d %s %q, permanent", de, c.kind, c.status, c.code, c.desc)
			}
			if got := strings.Contains(de.Message(), "Admin console → Security → Access and data control → API controls → Domain-wide delegation"); got != c.wantFix {
				t.Fatalf("message %q: admin fix present = %v, want %v", de.Message(), got, c.wantFix)
			}
			if c.wantFix && !strings.Contains(de.Message(), sandbox.ServiceAccountClientID(delegateSA)) {
				t.Fatalf("message %q does not name the client ID", de.Message())
			}
			if st := e.sb.Stats(); st.DelegatedTokens != 0 || st.DelegationDenied != 1 {
				t.Fatalf("stats = %+v, want one refusal and no token", st)
			}
		})
	}
}

func TestSignJWTChecksTheCaller(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	url := e.ts.URL + sandbox.SignJWTPathPrefix + delegateSA + ":signJwt"
	body := `{"payload":"{\"sub\":\"zoe@example.net\"}"}`
	for _, c := range []struct {
		auth   string
		status int
		want   string
	}{
		{"", 401, "Request is missing required authentication credential."},
		{"Bearer ya29.not-issued", 401, "Request had invalid authentication credentials."},
		{"Bearer " + sandbox.DevIAMCredential, 200, `"signedJwt":"`},
	} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
			t.Errorf("auth %q: %d %s, want %d containing %q", c.auth, resp.StatusCode, b, c.status, c.want)
		}
	}
	if got := e.sb.Stats().SignJWTCalls; got != 1 {
		t.Fatalf("SignJWTCalls = %d, want 1 (refused calls sign nothing)", got)
	}
}

// TestAssertionGrantForms: Google takes RFC 7523's grant type and the
// older assertion form that impersonate sends; both work, and a JWT the
// sandbox did not sign is refused.
func TestAssertionGrantForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.delegate("example.net")
	now := time.Now().Unix()
	claims, _ := json.Marshal(map[string]any{"iss": delegateSA, "scope": sandbox.ScopeGmailSend, "sub": "zoe@example.net",
		"aud": "https://oauth2.googleapis.com/token", "iat": now, "exp": now + 3600})
	payload, _ := json.Marshal(map[string]string{"payload": string(claims)})
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+sandbox.SignJWTPathPrefix+delegateSA+":signJwt", strings.NewReader(string(payload)))
	req.Header.Set("Authorization", "Bearer "+sandbox.DevIAMCredential)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var signed struct {
		KeyID     string `json:"keyId"`
		SignedJWT string `json:"signedJwt"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&signed)
	resp.Body.Close()
	parts := strings.Split(signed.SignedJWT, ".")
	if len(parts) != 3 || signed.KeyID == "" {
		t.Fatalf("signJwt answer = %+v", signed)
	}
	if got, _ := base64.RawURLEncoding.DecodeString(parts[1]); string(got) != string(claims) {
		t.Fatalf("signed payload = %s, want the claims as given", got)
	}
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(claims), "zoe", "eve", 1))) + "." + parts[2]
	for _, c := range []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"RFC 7523", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {signed.SignedJWT}}, 200, `"access_token":"ya29.`},
		{"legacy", url.Values{"grant_type": {"assertion"}, "assertion_type": {"http://oauth.net/grant_type/jwt/1.0/bearer"}, "assertion": {signed.SignedJWT}}, 200, `"token_type":"Bearer"`},
		{"forged", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {forged}}, 400, `"Invalid JWT Signature."`},
		{"missing", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}}, 400, "Missing required parameter: assertion"},
	} {
		resp, err := http.PostForm(e.ts.URL+sandbox.TokenPath, c.form)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s, want %d containing %s", c.name, resp.StatusCode, b, c.status, c.want)
		}
	}
}

func TestDelegationControlSurface(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	post := func(path, body string) int {
		resp, err := http.Post(e.ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("/sandbox/delegation", `{"domain":"example.net","service_account":"`+delegateSA+`","scopes":["`+sandbox.ScopeGmailSend+`"],"enabled":true}`); got != 200 {
		t.Fatalf("POST /sandbox/delegation = %d", got)
	}
	if _, err := e.delegator().Token(context.Background(), "zoe@example.net"); err != nil {
		t.Fatalf("Token after delegating over HTTP: %v", err)
	}
	if got := post("/sandbox/delegation/users", `{"email":"zoe@example.net","state":"suspended"}`); got != 200 {
		t.Fatalf("POST /sandbox/delegation/users = %d", got)
	}
	var de *delegation.Error
	if _, err := e.delegator().Token(context.Background(), "zoe@example.net"); !errors.As(err, &de) || de.Kind != delegation.KindUnknownUser {
		t.Fatalf("Token for a suspended user = %v, want unknown user", err)
	}
	for _, bad := range []struct{ path, body string }{
		{"/sandbox/delegation", `{"domain":"example.net","enabled":true}`},
		{"/sandbox/delegation", `{"domain":"example.net","clientid":"1"}`},
		{"/sandbox/delegation/users", `{"email":"zoe@example.net","state":"gone"}`},
	} {
		if got := post(bad.path, bad.body); got != 400 {
			t.Errorf("POST %s %s = %d, want 400", bad.path, bad.body, got)
		}
	}
}
