package sender_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
)

// Google's bodies, verbatim or reconstructed as internal/sandbox/bodies.go
// says (it cites the source of each). %s is a "Retry after" time.
const (
	mailServiceNotEnabled = `{ "error": { "code": 400, "message": "Mail service not enabled", "errors": [ { "message": "Mail service not enabled", "domain": "global", "reason": "failedPrecondition" } ], "status": "FAILED_PRECONDITION" } }`
	preconditionFailed    = "{\n  \"error\": {\n    \"code\": 400,\n    \"message\": \"Precondition check failed.\",\n    \"errors\": [\n      {\n        \"message\": \"Precondition check failed.\",\n        \"domain\": \"global\",\n        \"reason\": \"failedPrecondition\"\n      }\n    ],\n    \"status\": \"FAILED_PRECONDITION\"\n  }\n}\n"
	userRateLimitMailing  = "{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"User-rate limit exceeded.  Retry after %[1]s (Mail sending)\",\n    \"errors\": [\n      {\n        \"message\": \"User-rate limit exceeded.  Retry after %[1]s (Mail sending)\",\n        \"domain\": \"global\",\n        \"reason\": \"rateLimitExceeded\"\n      }\n    ],\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}\n"
	resourceExhausted     = "{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"Resource has been exhausted (e.g. check quota).\",\n    \"errors\": [\n      {\n        \"message\": \"Resource has been exhausted (e.g. check quota).\",\n        \"domain\": \"global\",\n        \"reason\": \"rateLimitExceeded\"\n      }\n    ],\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}\n"
	userRateLimit403      = "{\n  \"error\": {\n  \"errors\": [\n    {\n    \"domain\": \"usageLimits\",\n    \"reason\": \"userRateLimitExceeded\",\n    \"message\": \"User Rate Limit Exceeded\"\n    }\n  ],\n  \"code\": 403,\n  \"message\": \"User Rate Limit Exceeded\"\n  }\n}\n"
	projectQuota          = "{\n \"error\": {\n  \"errors\": [\n   {\n    \"domain\": \"usageLimits\",\n    \"reason\": \"dailyLimitExceeded\",\n    \"message\": \"Daily Limit Exceeded. The quota will be reset at midnight Pacific Time (PT). You may monitor your quota usage and adjust limits in the API Console: https://console.developers.google.com/apis/api/gmail.googleapis.com/quotas?project=123456789012\",\n    \"extendedHelp\": \"https://console.developers.google.com/apis/api/gmail.googleapis.com/quotas?project=123456789012\"\n   }\n  ],\n  \"code\": 403,\n  \"message\": \"Daily Limit Exceeded. The quota will be reset at midnight Pacific Time (PT). You may monitor your quota usage and adjust limits in the API Console: https://console.developers.google.com/apis/api/gmail.googleapis.com/quotas?project=123456789012\"\n }\n}\n"
	domainPolicy          = "{\n  \"error\": {\n    \"errors\": [\n      {\n        \"domain\": \"global\",\n        \"reason\": \"domainPolicy\",\n        \"message\": \"The domain administrators have disabled Gmail apps.\"\n      }\n    ],\n    \"code\": 403,\n    \"message\": \"The domain administrators have disabled Gmail apps.\"\n  }\n}\n"
	unauthenticated       = "{\n  \"error\": {\n    \"code\": 401,\n    \"message\": \"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.\",\n    \"errors\": [\n      {\n        \"message\": \"Invalid Credentials\",\n        \"domain\": \"global\",\n        \"reason\": \"authError\",\n        \"location\": \"Authorization\",\n        \"locationType\": \"header\"\n      }\n    ],\n    \"status\": \"UNAUTHENTICATED\"\n  }\n}\n"
	tokenRevoked          = "{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"Token has been expired or revoked.\"\n}"
	tokenBadRequest       = "{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"Bad Request\"\n}"
	tokenInvalidRAPT      = "{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"reauth related error (invalid_rapt)\",\n  \"error_subtype\": \"invalid_rapt\"\n}"
	tooLargeHTML          = "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <meta name=viewport content=\"initial-scale=1, minimum-scale=1, width=device-width\">\n  <title>Error 413 (Request Entity Too Large)!!1</title>\n  <style>\n  </style>\n  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>\n  <p><b>413.</b> <ins>That’s an error.</ins>\n  <p>Your client issued a request that was too large.  <ins>That’s all we know.</ins>\n"
	badRequestHTML        = "<HTML>\n<HEAD>\n<TITLE>Bad Request</TITLE>\n</HEAD>\n<BODY BGCOLOR=\"#FFFFFF\" TEXT=\"#000000\">\n<H1>Bad Request</H1>\n<H2>Error 400</H2>\n</BODY>\n</HTML>\n"
)

const maxAttempts = 5

func retryTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func jsonAnswer(status int, body string) sandbox.Response {
	return sandbox.Response{Status: status, Body: body}
}

func htmlAnswer(status int, body string) sandbox.Response {
	return sandbox.Response{Status: status, Headers: map[string]string{"Content-Type": "text/html; charset=UTF-8"}, Body: body}
}

// TestGoogleErrorBodies drives the relay through each row of the issue's
// table: the sandbox answers with Google's body, through the real Gmail
// client and token refresh, and the result, the account and ack or nack
// are what the table says. A row that nacks is delivered twice: on an
// early attempt (nack, no result) and on the last (nack, and the failed
// result that the last attempt publishes, with its code and retry_at).
func TestGoogleErrorBodies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// warm sends one message first, so the access token is cached.
		warm bool
		// inject sets the fault up; now is the shared clock's time.
		inject func(t *testing.T, e *sendertest.Env, now time.Time)
		ack    bool
		code   gmail.Code
		// retryable is the result's error.retryable.
		retryable bool
		retryAt   func(now time.Time) time.Time
		reauth    bool
		contains  []string
		// gmailCalls and refreshes count the first delivery's requests.
		gmailCalls, refreshes int
		// heldFor names an account whose next message must not reach
		// Gmail before retry_at.
		heldFor string
	}{
		{name: "400 failedPrecondition Mail service not enabled",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(400, mailServiceNotEnabled), 1))
			},
			ack: true, code: gmail.CodeMailDisabled, contains: []string{"Mail service not enabled", "no Gmail"}, gmailCalls: 1},
		{name: "a consumer domain's account without Gmail",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) { e.Sandbox.SetConsumerDomain("example.com", true) },
			ack:    true, code: gmail.CodeMailDisabled, contains: []string{"Mail service not enabled"}, gmailCalls: 1},
		{name: "400 failedPrecondition Precondition check failed.",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(400, preconditionFailed), 1))
			},
			code: gmail.CodeGmailError, retryable: true, contains: []string{"Precondition check failed."}, gmailCalls: 1},
		{name: "429 Mail sending, retry in 3 hours: the daily cap",
			inject: func(t *testing.T, e *sendertest.Env, now time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(429, fmt.Sprintf(userRateLimitMailing, retryTime(now.Add(3*time.Hour)))), 1))
			},
			code: gmail.CodeDailyLimit, retryable: true, retryAt: func(now time.Time) time.Time { return now.Add(3 * time.Hour) },
			contains: []string{"daily sending limit"}, gmailCalls: 1, heldFor: alice},
		{name: "429 Mail sending with a Retry-After header 2 hours away",
			inject: func(t *testing.T, e *sendertest.Env, now time.Time) {
				r := jsonAnswer(429, fmt.Sprintf(userRateLimitMailing, retryTime(now.Add(2*time.Minute))))
				r.Headers = map[string]string{"Retry-After": "7200"}
				must(t, e.Sandbox.InjectResponse(alice, r, 1))
			},
			code: gmail.CodeDailyLimit, retryable: true, retryAt: func(now time.Time) time.Time { return now.Add(2 * time.Hour) },
			gmailCalls: 1, heldFor: alice},
		{name: "429 Mail sending, retry in 2 minutes: a rate limit",
			inject: func(t *testing.T, e *sendertest.Env, now time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(429, fmt.Sprintf(userRateLimitMailing, retryTime(now.Add(2*time.Minute)))), 1))
			},
			code: gmail.CodeRateLimited, retryable: true, retryAt: func(now time.Time) time.Time { return now.Add(2 * time.Minute) },
			gmailCalls: 1, heldFor: alice},
		{name: "429 rateLimitExceeded Resource has been exhausted",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(429, resourceExhausted), 1))
			},
			code: gmail.CodeRateLimited, retryable: true, gmailCalls: 1},
		{name: "403 userRateLimitExceeded",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(403, userRateLimit403), 1))
			},
			code: gmail.CodeRateLimited, retryable: true, gmailCalls: 1},
		{name: "403 dailyLimitExceeded: the project's quota",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(403, projectQuota), 1))
			},
			code: gmail.CodeProjectQuota, retryable: true, retryAt: gmail.NextPacificMidnight,
			contains: []string{"Cloud project", "midnight Pacific Time"}, gmailCalls: 1, heldFor: bob},
		{name: "403 domainPolicy",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(403, domainPolicy), 1))
			},
			ack: true, code: gmail.CodeDomainPolicy, contains: []string{"The domain administrators have disabled Gmail apps.", "Workspace administrator", "Trusted"}, gmailCalls: 1},
		{name: "401 right after the first refresh",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(401, unauthenticated), 1))
			},
			code: gmail.CodeGmailError, retryable: true, contains: []string{"grant is alive"}, gmailCalls: 1, refreshes: 1},
		{name: "401 on a cached token, and again after the refresh",
			warm: true,
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, jsonAnswer(401, unauthenticated), 2))
			},
			code: gmail.CodeGmailError, retryable: true, contains: []string{"grant is alive"}, gmailCalls: 2, refreshes: 1},
		{name: "invalid_grant Token has been expired or revoked.",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectTokenResponse(alice, jsonAnswer(400, tokenRevoked), 1))
			},
			ack: true, code: gmail.CodeReauthRequired, reauth: true, refreshes: 0,
			contains: []string{"Token has been expired or revoked.", "reconnect", "Testing status"}},
		{name: "invalid_grant Bad Request",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectTokenResponse(alice, jsonAnswer(400, tokenBadRequest), 1))
			},
			ack: true, code: gmail.CodeReauthRequired, reauth: true,
			contains: []string{"Bad Request", "died some time ago", "reconnect"}},
		{name: "invalid_grant reauth related error (invalid_rapt)",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectTokenResponse(alice, jsonAnswer(400, tokenInvalidRAPT), 1))
			},
			ack: true, code: gmail.CodeReauthRequired, reauth: true,
			contains: []string{"invalid_rapt", "session control", "reconnect"}},
		{name: "413 HTML page",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, htmlAnswer(413, tooLargeHTML), 1))
			},
			ack: true, code: gmail.CodeInvalidRequest, contains: []string{"413", "35 MB", "5 MB"}, gmailCalls: 1},
		{name: "400 HTML page",
			inject: func(t *testing.T, e *sendertest.Env, _ time.Time) {
				must(t, e.Sandbox.InjectResponse(alice, htmlAnswer(400, badRequestHTML), 1))
			},
			ack: true, code: gmail.CodeInvalidRequest, contains: []string{"HTML", "35 MB"}, gmailCalls: 1},
	}
	for _, c := range cases {
		attempts := []int{1}
		if !c.ack {
			attempts = []int{1, maxAttempts}
		}
		for _, attempt := range attempts {
			t.Run(fmt.Sprintf("%s/attempt %d", c.name, attempt), func(t *testing.T) {
				t.Parallel()
				e := sendertest.New(t, sendertest.Options{Store: sendertest.Local, MaxDeliveryAttempts: maxAttempts})
				e.Connect(alice)
				e.Connect(bob)
				if c.warm {
					wantAck(t, e.Deliver(delivery("ps-0", sendertest.NewRequest(alice, "warm"))))
					e.Results()
				}
				now := e.Clock.Now()
				c.inject(t, e, now)
				gm, refreshes := e.Requests.Gmail(), e.Sandbox.Stats().TokenRefreshes
				d := delivery("ps-1", sendertest.NewRequest(alice, "g-1"))
				d.DeliveryAttempt = attempt

				err := e.Deliver(d)

				if n := e.Requests.Gmail() - gm; n != c.gmailCalls {
					t.Errorf("Gmail saw %d sends; want %d", n, c.gmailCalls)
				}
				if c.refreshes > 0 || c.warm {
					if n := e.Sandbox.Stats().TokenRefreshes - refreshes; n != int64(c.refreshes) {
						t.Errorf("%d refreshes; want %d", n, c.refreshes)
					}
				}
				wantStatus := registry.StatusConnected
				if c.reauth {
					wantStatus = registry.StatusReauthRequired
				}
				if a := e.Account(alice); a.Status != wantStatus {
					t.Errorf("account status %s (%q); want %s", a.Status, a.LastError, wantStatus)
				}
				wantOutbox(t, e, map[bool]int{true: 1, false: 0}[c.warm])

				if !c.ack {
					wantNack(t, err)
					rec := record(e, alice, "g-1")
					if rec.State != ledger.StateSending || rec.ErrorCode != string(c.code) || !rec.LeaseUntil.IsZero() {
						t.Errorf("record %+v; want sending, %s, the lease released", rec, c.code)
					}
					if attempt < maxAttempts {
						noResult(t, e)
						if c.heldFor != "" {
							checkHeld(t, e, c.heldFor)
						}
						return
					}
				} else {
					wantAck(t, err)
					if rec := record(e, alice, "g-1"); rec.State != ledger.StateFailed || rec.ErrorCode != string(c.code) {
						t.Errorf("record %+v; want failed, %s", rec, c.code)
					}
				}
				r := oneResult(t, e)
				wantFailed(t, r, string(c.code), c.retryable, c.contains...)
				var want time.Time
				if c.retryAt != nil {
					want = c.retryAt(now)
				}
				if !r.Event.Error.RetryAt.Equal(want) {
					t.Errorf("retry_at = %v; want %v", r.Event.Error.RetryAt, want)
				}
				if wantURL := c.code == gmail.CodeReauthRequired; (r.Event.Error.ReconnectURL != "") != wantURL {
					t.Errorf("reconnect_url = %q", r.Event.Error.ReconnectURL)
				}
				if c.code == gmail.CodeProjectQuota && !strings.Contains(e.Logs.String(), `"alert":"project_quota"`) {
					t.Errorf("no alert log line for the project quota in\n%s", e.Logs.String())
				}
			})
		}
	}
}

// checkHeld: a new message for account, before the hold ends, is nacked
// without a Gmail call.
func checkHeld(t *testing.T, e *sendertest.Env, account string) {
	t.Helper()
	gm := e.Requests.Gmail()
	e.Clock.Advance(time.Minute)
	wantNack(t, e.Deliver(delivery("ps-2", sendertest.NewRequest(account, "g-2"))))
	if n := e.Requests.Gmail() - gm; n != 0 {
		t.Errorf("a message for %s reached Gmail during the hold", account)
	}
	noResult(t, e)
}

// TestDailyLimitNotDeadLettered: a daily-capped message is nacked, never
// failed, until its last delivery attempt, and sends once the time Gmail
// gave has passed.
func TestDailyLimitSendsAfterRetryAt(t *testing.T) {
	t.Parallel()
	e := sendertest.New(t, sendertest.Options{Store: sendertest.Local, MaxDeliveryAttempts: maxAttempts})
	e.Connect(alice)
	must(t, e.Sandbox.InjectGmailErrors(alice, sandbox.DailyLimit429, 1))
	d := delivery("ps-1", sendertest.NewRequest(alice, "d-1"))
	wantNack(t, e.Deliver(d))
	e.Clock.Advance(time.Hour)
	wantNack(t, e.Deliver(d))
	noResult(t, e)
	if n := e.Requests.Gmail(); n != 1 {
		t.Errorf("Gmail saw %d sends during the hold; want 1", n)
	}
	e.Clock.Advance(sandbox.DailyLimitRetryAfter)
	wantAck(t, e.Deliver(d))
	if r := oneResult(t, e); r.Event.Status != results.StatusSent {
		t.Errorf("after retry_at: %+v", r.Event)
	}
	wantOutbox(t, e, 1)
}
