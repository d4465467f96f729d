package gmail

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
)

// apiError runs a status, headers and body through the client library's
// own error parsing, as Send gets them.
func apiError(t *testing.T, status int, hdr http.Header, body string) error {
	t.Helper()
	if hdr == nil {
		hdr = http.Header{}
	}
	if hdr.Get("Content-Type") == "" {
		hdr.Set("Content-Type", "application/json; charset=UTF-8")
	}
	res := &http.Response{StatusCode: status, Header: hdr, Body: readCloser(body)}
	err := googleapi.CheckResponse(res)
	if err == nil {
		t.Fatalf("CheckResponse(%d) = nil", status)
	}
	return fmt.Errorf("gmail.Send: %w", err)
}

type stringReadCloser struct{ *strings.Reader }

func (stringReadCloser) Close() error { return nil }

func readCloser(s string) stringReadCloser { return stringReadCloser{strings.NewReader(s)} }

func tokenError(body string) error {
	return fmt.Errorf("Post: %w", &oauth2.RetrieveError{
		Response: &http.Response{StatusCode: 400}, Body: []byte(body),
		ErrorCode:        between(body, `"error": "`, `"`),
		ErrorDescription: between(body, `"error_description": "`, `"`),
	})
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

func googleBody(code int, status, domain, reason, msg string) string {
	return fmt.Sprintf(`{
  "error": {
    "code": %d,
    "message": %q,
    "errors": [
      {
        "message": %q,
        "domain": %q,
        "reason": %q
      }
    ],
    "status": %q
  }
}
`, code, msg, msg, domain, reason, status)
}

// TestClassify: each row is a body Google sends (the sandbox's bodies.go
// cites them), classified as the table says.
func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	// Midnight Pacific after 10:00 UTC on 22 November (PST, UTC-8).
	pacificMidnight := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	near := now.Add(5 * time.Minute)
	far := now.Add(3 * time.Hour)
	rfc := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	cases := []struct {
		name       string
		err        error
		code       Code
		retryable  bool
		ambiguous  bool
		retryAt    time.Time
		contains   string
		unauthoriz bool
	}{
		{name: "mail service not enabled",
			err:  apiError(t, 400, nil, `{ "error": { "code": 400, "message": "Mail service not enabled", "errors": [ { "message": "Mail service not enabled", "domain": "global", "reason": "failedPrecondition" } ], "status": "FAILED_PRECONDITION" } }`),
			code: CodeMailDisabled, contains: "no Gmail"},
		{name: "precondition check failed",
			err:  apiError(t, 400, nil, googleBody(400, "FAILED_PRECONDITION", "global", "failedPrecondition", "Precondition check failed.")),
			code: CodeGmailError, retryable: true},
		{name: "daily cap, two spaces",
			err:  apiError(t, 429, nil, googleBody(429, "RESOURCE_EXHAUSTED", "global", "rateLimitExceeded", "User-rate limit exceeded.  Retry after "+rfc(far)+" (Mail sending)")),
			code: CodeDailyLimit, retryable: true, retryAt: far, contains: "daily sending limit"},
		{name: "daily cap, one space",
			err:  apiError(t, 429, nil, googleBody(429, "RESOURCE_EXHAUSTED", "global", "rateLimitExceeded", "User-rate limit exceeded. Retry after "+rfc(far)+" (Mail sending)")),
			code: CodeDailyLimit, retryable: true, retryAt: far},
		{name: "daily cap from a Retry-After header",
			err:  apiError(t, 429, http.Header{"Retry-After": {"7200"}}, googleBody(429, "RESOURCE_EXHAUSTED", "global", "rateLimitExceeded", "User-rate limit exceeded.  Retry after "+rfc(near)+" (Mail sending)")),
			code: CodeDailyLimit, retryable: true, retryAt: now.Add(2 * time.Hour)},
		{name: "sending limit, time near",
			err:  apiError(t, 429, nil, googleBody(429, "RESOURCE_EXHAUSTED", "global", "rateLimitExceeded", "User-rate limit exceeded.  Retry after "+rfc(near)+" (Mail sending)")),
			code: CodeRateLimited, retryable: true, retryAt: near},
		{name: "sending limit, exactly 15 minutes",
			err:  apiError(t, 429, nil, googleBody(429, "RESOURCE_EXHAUSTED", "global", "rateLimitExceeded", "User-rate limit exceeded.  Retry after "+rfc(now.Add(DailyLimitAfter))+" (Mail sending)")),
			code: CodeRateLimited, retryable: true, retryAt: now.Add(DailyLimitAfter)},
		{name: "429 with a Retry-After header only",
			err:  apiError(t, 429, http.Header{"Retry-After": {"30"}}, googleBody(429, "RESOURCE_EXHAUSTED", "global", "rateLimitExceeded", "Too many concurrent requests for user")),
			code: CodeRateLimited, retryable: true, retryAt: now.Add(30 * time.Second)},
		{name: "resource exhausted",
			err:  apiError(t, 429, nil, googleBody(429, "RESOURCE_EXHAUSTED", "global", "rateLimitExceeded", "Resource has been exhausted (e.g. check quota).")),
			code: CodeRateLimited, retryable: true},
		{name: "403 userRateLimitExceeded (guide sample)",
			err:  apiError(t, 403, nil, "{\n  \"error\": {\n  \"errors\": [\n    {\n    \"domain\": \"usageLimits\",\n    \"reason\": \"userRateLimitExceeded\",\n    \"message\": \"User Rate Limit Exceeded\"\n    }\n  ],\n  \"code\": 403,\n  \"message\": \"User Rate Limit Exceeded\"\n  }\n}\n"),
			code: CodeRateLimited, retryable: true},
		{name: "403 per minute per user",
			err:  apiError(t, 403, nil, googleBody(403, "PERMISSION_DENIED", "usageLimits", "rateLimitExceeded", "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com' for consumer 'project_number:123'.")),
			code: CodeRateLimited, retryable: true},
		{name: "project quota",
			err:  apiError(t, 403, nil, `{"error":{"errors":[{"domain":"usageLimits","reason":"dailyLimitExceeded","message":"Daily Limit Exceeded. The quota will be reset at midnight Pacific Time (PT). You may monitor your quota usage and adjust limits in the API Console: https://console.developers.google.com/apis/api/gmail.googleapis.com/quotas?project=123"}],"code":403,"message":"Daily Limit Exceeded. The quota will be reset at midnight Pacific Time (PT). You may monitor your quota usage and adjust limits in the API Console: https://console.developers.google.com/apis/api/gmail.googleapis.com/quotas?project=123"}}`),
			code: CodeProjectQuota, retryable: true, retryAt: pacificMidnight, contains: "Cloud project"},
		{name: "domain policy",
			err:  apiError(t, 403, nil, "{\n  \"error\": {\n    \"errors\": [\n      {\n        \"domain\": \"global\",\n        \"reason\": \"domainPolicy\",\n        \"message\": \"The domain administrators have disabled Gmail apps.\"\n      }\n    ],\n    \"code\": 403,\n    \"message\": \"The domain administrators have disabled Gmail apps.\"\n  }\n}\n"),
			code: CodeDomainPolicy, contains: "Workspace administrator"},
		{name: "401 authError",
			err:  apiError(t, 401, nil, "{\n  \"error\": {\n    \"code\": 401,\n    \"message\": \"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.\",\n    \"errors\": [\n      {\n        \"message\": \"Invalid Credentials\",\n        \"domain\": \"global\",\n        \"reason\": \"authError\",\n        \"location\": \"Authorization\",\n        \"locationType\": \"header\"\n      }\n    ],\n    \"status\": \"UNAUTHENTICATED\"\n  }\n}\n"),
			code: CodeGmailError, retryable: true, unauthoriz: true},
		{name: "invalid_grant expired or revoked",
			err:  tokenError("{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"Token has been expired or revoked.\"\n}"),
			code: CodeReauthRequired, contains: "Testing status"},
		{name: "invalid_grant Bad Request",
			err:  tokenError("{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"Bad Request\"\n}"),
			code: CodeReauthRequired, contains: "died some time ago"},
		{name: "invalid_grant invalid_rapt",
			err:  tokenError("{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"reauth related error (invalid_rapt)\",\n  \"error_subtype\": \"invalid_rapt\"\n}"),
			code: CodeReauthRequired, contains: "session control"},
		{name: "413 HTML",
			err:  apiError(t, 413, http.Header{"Content-Type": {"text/html; charset=UTF-8"}}, "<!DOCTYPE html>\n<html lang=en>\n  <title>Error 413 (Request Entity Too Large)!!1</title>\n  <p><b>413.</b> <ins>That’s an error.</ins>\n"),
			code: CodeInvalidRequest, contains: "35 MB"},
		{name: "400 HTML",
			err:  apiError(t, 400, http.Header{"Content-Type": {"text/html; charset=UTF-8"}}, "<HTML>\n<HEAD>\n<TITLE>Bad Request</TITLE>\n</HEAD>\n<BODY BGCOLOR=\"#FFFFFF\" TEXT=\"#000000\">\n<H1>Bad Request</H1>\n<H2>Error 400</H2>\n</BODY>\n</HTML>\n"),
			code: CodeInvalidRequest, contains: "5 MB"},
		{name: "502 HTML stays transient",
			err:  apiError(t, 502, http.Header{"Content-Type": {"text/html; charset=UTF-8"}}, "<html><title>Error 502 (Server Error)!!1</title></html>"),
			code: CodeGmailError, retryable: true},
		{name: "api disabled",
			err:  apiError(t, 403, nil, googleBody(403, "PERMISSION_DENIED", "usageLimits", "accessNotConfigured", "Gmail API has not been used in project 123 before or it is disabled.")),
			code: CodeGmailError},
		{name: "scope", err: apiError(t, 403, nil, googleBody(403, "PERMISSION_DENIED", "global", "insufficientPermissions", "Request had insufficient authentication scopes.")), code: CodeReauthRequired},
		{name: "500", err: apiError(t, 500, nil, googleBody(500, "INTERNAL", "global", "backendError", "Backend Error")), code: CodeGmailError, retryable: true},
		{name: "400 invalid argument", err: apiError(t, 400, nil, googleBody(400, "INVALID_ARGUMENT", "global", "invalidArgument", "Invalid To header")), code: CodeInvalidRequest},
		{name: "too large", err: &TooLargeError{Size: 40 << 20}, code: CodeInvalidRequest},
		{name: "body sent", err: &bodySentError{err: errors.New("context deadline exceeded")}, code: CodeGmailError, retryable: true, ambiguous: true},
		{name: "refused", err: errors.New("dial tcp: connection refused"), code: CodeGmailError, retryable: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := Classify(c.err, now)
			if f.Code != c.code || f.Retryable != c.retryable || f.Ambiguous != c.ambiguous || !f.RetryAt.Equal(c.retryAt) || f.Unauthorized != c.unauthoriz {
				t.Errorf("Classify = %+v; want code %s retryable %v ambiguous %v retryAt %v unauthorized %v", f, c.code, c.retryable, c.ambiguous, c.retryAt, c.unauthoriz)
			}
			if f.Message == "" || !strings.Contains(f.Message, c.contains) {
				t.Errorf("message %q does not contain %q", f.Message, c.contains)
			}
		})
	}
	if Classify(nil, now) != nil {
		t.Error("Classify(nil) != nil")
	}
}

// TestInvalidGrantTestingExpiry: the 7-day expiry of Testing apps is named
// for dead tokens, never for a session-control refusal.
func TestInvalidGrantTestingExpiry(t *testing.T) {
	t.Parallel()
	f := Classify(tokenError("{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"reauth related error (invalid_rapt)\",\n  \"error_subtype\": \"invalid_rapt\"\n}"), time.Now())
	if strings.Contains(f.Message, "7 days") || strings.Contains(f.Message, "Testing") {
		t.Errorf("invalid_rapt explanation mentions the Testing expiry: %q", f.Message)
	}
}

func TestNextPacificMidnight(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want time.Time }{
		{time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}, // PST
		{time.Date(2026, 7, 1, 6, 59, 0, 0, time.UTC), time.Date(2026, 7, 1, 7, 0, 0, 0, time.UTC)},     // PDT, 23:59 in LA
		{time.Date(2026, 7, 1, 7, 0, 0, 0, time.UTC), time.Date(2026, 7, 2, 7, 0, 0, 0, time.UTC)},      // midnight in LA: the next one
	} {
		if got := NextPacificMidnight(c.in); !got.Equal(c.want) {
			t.Errorf("NextPacificMidnight(%v) = %v; want %v", c.in, got.UTC(), c.want)
		}
	}
}
