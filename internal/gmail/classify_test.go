package gmail

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	apiErr := func(code int, msg string, reason string, hdr http.Header) error {
		return fmt.Errorf("gmail.Send: %w", &googleapi.Error{Code: code, Message: msg, Header: hdr,
			Errors: []googleapi.ErrorItem{{Reason: reason, Message: msg}}})
	}
	cases := []struct {
		name       string
		err        error
		code       Code
		retryable  bool
		ambiguous  bool
		retryAfter time.Time
	}{
		{"invalid_grant", &oauth2.RetrieveError{ErrorCode: "invalid_grant", ErrorDescription: "Token has been expired or revoked."}, CodeReauthRequired, false, false, time.Time{}},
		{"invalid_grant wrapped", fmt.Errorf("Post: %w", &oauth2.RetrieveError{ErrorCode: "invalid_grant"}), CodeReauthRequired, false, false, time.Time{}},
		{"401", apiErr(401, "Request had invalid authentication credentials.", "authError", nil), CodeReauthRequired, false, false, time.Time{}},
		{"429 retry after", apiErr(429, "User-rate limit exceeded.  Retry after 2026-11-22T10:05:00.000Z", "rateLimitExceeded", nil), CodeRateLimited, true, false, now.Add(5 * time.Minute)},
		{"429 header", apiErr(429, "Too many", "rateLimitExceeded", http.Header{"Retry-After": {"30"}}), CodeRateLimited, true, false, now.Add(30 * time.Second)},
		{"403 user rate", apiErr(403, "User Rate Limit Exceeded", "userRateLimitExceeded", nil), CodeRateLimited, true, false, time.Time{}},
		{"403 per minute", apiErr(403, "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'", "rateLimitExceeded", nil), CodeRateLimited, true, false, time.Time{}},
		{"daily", apiErr(403, "Daily user sending limit exceeded.", "dailyLimitExceeded", nil), CodeDailyLimit, false, false, time.Time{}},
		{"mail disabled", apiErr(400, "Mail service not enabled", "failedPrecondition", nil), CodeMailDisabled, false, false, time.Time{}},
		{"api disabled", apiErr(403, "Gmail API has not been used in project 123 before or it is disabled.", "accessNotConfigured", nil), CodeGmailError, false, false, time.Time{}},
		{"scope", apiErr(403, "Request had insufficient authentication scopes.", "insufficientPermissions", nil), CodeReauthRequired, false, false, time.Time{}},
		{"500", apiErr(500, "Backend Error", "backendError", nil), CodeGmailError, true, false, time.Time{}},
		{"503", apiErr(503, "The service is currently unavailable.", "backendError", nil), CodeGmailError, true, false, time.Time{}},
		{"400", apiErr(400, "Invalid To header", "invalidArgument", nil), CodeInvalidRequest, false, false, time.Time{}},
		{"too large", &TooLargeError{Size: 40 << 20}, CodeInvalidRequest, false, false, time.Time{}},
		{"body sent", &bodySentError{err: errors.New("context deadline exceeded")}, CodeGmailError, true, true, time.Time{}},
		{"refused", errors.New("dial tcp: connection refused"), CodeGmailError, true, false, time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := Classify(c.err, now)
			if f.Code != c.code || f.Retryable != c.retryable || f.Ambiguous != c.ambiguous || !f.RetryAfter.Equal(c.retryAfter) {
				t.Errorf("Classify = %+v; want code %s retryable %v ambiguous %v retryAfter %v", f, c.code, c.retryable, c.ambiguous, c.retryAfter)
			}
			if f.Message == "" {
				t.Error("empty message")
			}
		})
	}
	if Classify(nil, now) != nil {
		t.Error("Classify(nil) != nil")
	}
}
