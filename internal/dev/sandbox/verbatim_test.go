package sandbox_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

// TestVerbatimResponse: an injected response reaches the client byte for
// byte, with its status and headers, from Go and over the control surface,
// and is consumed like a named fault.
func TestVerbatimResponse(t *testing.T) {
	t.Parallel()
	const body = "{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"User-rate limit exceeded.  Retry after 2030-01-01T00:00:00.000Z (Mail sending)\"\n  }\n}\n"
	for _, via := range []string{"go", "http"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			svc := e.gmail(e.connect("alice@example.com"))
			resp := sandbox.Response{Status: 429, Headers: map[string]string{"Retry-After": "120"}, Body: body}
			if via == "go" {
				if err := e.sb.InjectResponse("alice@example.com", resp, 1); err != nil {
					t.Fatal(err)
				}
			} else {
				req, _ := json.Marshal(map[string]any{"email": "alice@example.com", "response": resp, "count": 1})
				if code, out := e.control("POST", "/sandbox/faults", string(req)); code != 200 {
					t.Fatalf("POST /sandbox/faults: %d %s", code, out)
				}
			}
			g := asGoogleErr(t, func() error { _, err := sendRaw(svc, message("b@example.org", "s", "b")); return err }())
			if g.Code != 429 || g.Body != body || g.Header.Get("Retry-After") != "120" ||
				!strings.HasPrefix(g.Header.Get("Content-Type"), "application/json") {
				t.Errorf("got %d %q headers %v", g.Code, g.Body, g.Header)
			}
			if _, err := sendRaw(svc, message("b@example.org", "s", "b")); err != nil {
				t.Errorf("second send: %v (the injection should be consumed)", err)
			}
		})
	}
}

func TestVerbatimResponseRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.sb.InjectResponse("", sandbox.Response{Status: 42, Body: "x"}, 1); err == nil {
		t.Error("status 42 accepted")
	}
	for _, req := range []string{
		`{"fault":"RateLimit429","response":{"status":429,"body":""}}`,
		`{}`,
		`{"response":{"status":429,"body":""},"endpoint":"upload"}`,
		`{"fault":"TokenRevoked","endpoint":"send"}`,
		`{"response":{"status":429,"body":"","extra":1}}`,
	} {
		if code, _ := e.control("POST", "/sandbox/faults", req); code != 400 {
			t.Errorf("%s: %d, want 400", req, code)
		}
	}
}

// TestTokenFaults: the token faults answer a refresh of that account with
// Google's invalid_grant bodies; other accounts still refresh.
func TestTokenFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		fault         sandbox.Fault
		desc, subtype string
	}{
		{sandbox.TokenRevoked, "Token has been expired or revoked.", ""},
		{sandbox.TokenBadRequest, "Bad Request", ""},
		{sandbox.TokenInvalidRAPT, "reauth related error (invalid_rapt)", "invalid_rapt"},
	}
	for _, tc := range cases {
		t.Run(string(tc.fault), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			alice, bob := e.connect("alice@example.com"), e.connect("bob@example.com")
			if err := e.sb.InjectGmailErrors("alice@example.com", tc.fault, 1); err != nil {
				t.Fatal(err)
			}
			refresh := func(tok *oauth2.Token) error {
				ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.ts.Client())
				_, err := e.config().TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
				return err
			}
			if err := refresh(bob); err != nil {
				t.Errorf("bob: %v", err)
			}
			re := asRetrieveErr(t, refresh(alice))
			var wire map[string]string
			if err := json.Unmarshal(re.Body, &wire); err != nil {
				t.Fatal(err)
			}
			if re.Response.StatusCode != 400 || re.ErrorCode != "invalid_grant" || re.ErrorDescription != tc.desc || wire["error_subtype"] != tc.subtype {
				t.Errorf("got %d %s %q %s", re.Response.StatusCode, re.ErrorCode, re.ErrorDescription, re.Body)
			}
			if err := refresh(alice); err != nil {
				t.Errorf("after the fault: %v", err)
			}
		})
	}
	t.Run("verbatim", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		tok := e.connect("alice@example.com")
		body := `{"error":"invalid_grant","error_description":"Bad Request"}`
		if code, out := e.control("POST", "/sandbox/faults",
			`{"email":"alice@example.com","endpoint":"token","response":{"status":400,"body":`+strconvQuote(body)+`}}`); code != 200 {
			t.Fatalf("%d %s", code, out)
		}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.ts.Client())
		_, err := e.config().TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if re := asRetrieveErr(t, err); string(re.Body) != body {
			t.Errorf("body %q", re.Body)
		}
	})
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestConsumerDomain: an account on a domain marked consumer has no hd
// and no Gmail; unmarking the domain makes it Workspace again.
func TestConsumerDomain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if code, out := e.control("POST", "/sandbox/consumer", `{"domain":"Example.net","consumer":true}`); code != 200 {
		t.Fatalf("%d %s", code, out)
	}
	if code, _ := e.control("POST", "/sandbox/consumer", `{"domain":"x@example.net","consumer":true}`); code != 400 {
		t.Error("an address accepted as a domain")
	}
	tok := e.connect("carol@example.net")
	if loc := e.authorize(e.config(), "carol@example.net", "st", nil); loc.Query().Has("hd") {
		t.Errorf("consent redirect carries hd for a consumer account: %s", loc)
	}
	g := asGoogleErr(t, func() error {
		_, err := sendRaw(e.gmail(tok), message("b@example.org", "s", "b"))
		return err
	}())
	if g.Code != 400 || g.Message != "Mail service not enabled" || !contains(reasons(g), "failedPrecondition") {
		t.Errorf("send from a consumer account: %d %s", g.Code, g.Body)
	}
	e.sb.SetConsumerDomain("example.net", false)
	if loc := e.authorize(e.config(), "carol@example.net", "st", nil); loc.Query().Get("hd") != "example.net" {
		t.Errorf("Workspace again, but hd = %q", loc.Query().Get("hd"))
	}
	if _, err := sendRaw(e.gmail(tok), message("b@example.org", "s", "b")); err != nil {
		t.Errorf("send after unmarking: %v", err)
	}
}

// TestJSONSendOver5MB: the JSON raw form refuses a request over 5 MB with
// the front end's HTML 413 page; the upload form takes the same message.
func TestJSONSendOver5MB(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.connect("alice@example.com")
	svc := e.gmail(tok)
	raw := message("b@example.org", "big", strings.Repeat("x", 4<<20)) // 5.3 MB once base64-encoded
	if n := base64.URLEncoding.EncodedLen(len(raw)); n <= 5<<20 {
		t.Fatalf("the test message encodes to %d bytes, not over 5 MB", n)
	}
	g := asGoogleErr(t, func() error { _, err := sendRaw(svc, raw); return err }())
	if g.Code != http.StatusRequestEntityTooLarge || !strings.HasPrefix(g.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(g.Body, "<title>Error 413 (Request Entity Too Large)!!1</title>") || len(g.Errors) != 0 {
		t.Errorf("got %d %s %.200q", g.Code, g.Header.Get("Content-Type"), g.Body)
	}
	if _, err := svc.Users.Messages.Send("me", nil).Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822")).Do(); err != nil {
		t.Errorf("upload of the same message: %v", err)
	}
	if n := len(e.sb.Outbox()); n != 1 {
		t.Errorf("outbox holds %d, want 1", n)
	}
}
