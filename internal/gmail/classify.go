package gmail

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
)

// Code is a result event's error code (DESIGN §3).
type Code string

// The result codes.
const (
	CodeReauthRequired Code = "reauth_required"
	CodeInvalidRequest Code = "invalid_request"
	CodeUnknownAccount Code = "unknown_account"
	CodeRateLimited    Code = "rate_limited"
	CodeDailyLimit     Code = "daily_limit"
	CodeMailDisabled   Code = "mail_disabled"
	CodeGmailError     Code = "gmail_error"
	CodeInternal       Code = "internal"
)

// Failure is a classified send failure.
type Failure struct {
	Code    Code
	Message string
	// Retryable failures are nacked so Pub/Sub redelivers; the others are
	// final and acknowledged with a failed result.
	Retryable bool
	// Ambiguous means the request reached Gmail but no answer came back: the
	// message may have been sent.
	Ambiguous bool
	// Unauthorized is a 401: the access token was refused, so the caller
	// refreshes once before treating the account as needing a reconnect.
	Unauthorized bool
	// RetryAfter is when Google said to try again, if it said.
	RetryAfter time.Time
}

func (f *Failure) Error() string { return string(f.Code) + ": " + f.Message }

var retryAfterRE = regexp.MustCompile(`Retry after (\d{4}-\d\d-\d\dT[0-9:.]+Z)`)

// Classify maps an error from Send (or from the token refresh underneath
// it) to a Failure. now resolves relative Retry-After values.
func Classify(err error, now time.Time) *Failure {
	if err == nil {
		return nil
	}
	var tooLarge *TooLargeError
	if errors.As(err, &tooLarge) {
		return &Failure{Code: CodeInvalidRequest, Message: tooLarge.Error()}
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return classifyTokenError(re)
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return classifyAPIError(ge, now)
	}
	if errors.Is(err, ErrBodySent) {
		return &Failure{Code: CodeGmailError, Ambiguous: true, Retryable: true,
			Message: "Gmail received the message but did not answer; it may have been sent"}
	}
	// Nothing reached Gmail (connection refused or reset, DNS, a timeout
	// before the body was written): safe to retry.
	return &Failure{Code: CodeGmailError, Retryable: true, Message: "could not reach Gmail: " + err.Error()}
}

func classifyTokenError(re *oauth2.RetrieveError) *Failure {
	desc := re.ErrorDescription
	if desc == "" {
		desc = re.ErrorCode
	}
	switch {
	case re.ErrorCode == "invalid_grant":
		return &Failure{Code: CodeReauthRequired,
			Message: "Google refused the mailbox's refresh token (" + desc + "). The owner must reconnect. If the OAuth app is in Testing status, Google expires its tokens after 7 days."}
	case re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client":
		return &Failure{Code: CodeInternal,
			Message: "Google refused the relay's OAuth client (" + desc + "): the operator must check OAUTH_CLIENT_ID and the client secret"}
	case re.Response != nil && re.Response.StatusCode >= 500, re.Response != nil && re.Response.StatusCode == http.StatusTooManyRequests:
		return &Failure{Code: CodeGmailError, Retryable: true, Message: "Google's token endpoint failed: " + desc}
	}
	return &Failure{Code: CodeGmailError, Message: "refreshing the access token failed: " + desc}
}

func reasons(ge *googleapi.Error) []string {
	var out []string
	for _, it := range ge.Errors {
		out = append(out, it.Reason)
	}
	return out
}

func hasReason(ge *googleapi.Error, want ...string) bool {
	for _, r := range reasons(ge) {
		for _, w := range want {
			if r == w {
				return true
			}
		}
	}
	return false
}

func classifyAPIError(ge *googleapi.Error, now time.Time) *Failure {
	msg := ge.Message
	if msg == "" {
		msg = http.StatusText(ge.Code)
	}
	msg = fmt.Sprintf("Gmail answered %d: %s", ge.Code, msg)
	lower := strings.ToLower(ge.Message)
	switch {
	case ge.Code == http.StatusUnauthorized:
		return &Failure{Code: CodeReauthRequired, Unauthorized: true, Message: msg}
	case ge.Code == http.StatusTooManyRequests,
		ge.Code == http.StatusForbidden && hasReason(ge, "userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded") && !strings.Contains(lower, "daily"),
		ge.Code == http.StatusForbidden && strings.Contains(lower, "per minute per user"):
		return &Failure{Code: CodeRateLimited, Retryable: true, Message: msg, RetryAfter: retryAfter(ge, now)}
	case ge.Code == http.StatusForbidden && (hasReason(ge, "dailyLimitExceeded") || strings.Contains(lower, "daily user sending limit")):
		return &Failure{Code: CodeDailyLimit, Message: msg + ". Gmail's daily sending limit is reached for this mailbox (about 500 a day for consumer accounts, 2,000 for Workspace, over a rolling 24 hours).", RetryAfter: retryAfter(ge, now)}
	case ge.Code == http.StatusBadRequest && (hasReason(ge, "failedPrecondition") || strings.Contains(lower, "mail service not enabled")):
		return &Failure{Code: CodeMailDisabled, Message: msg + ". Gmail is not enabled for this account: a Workspace administrator must turn on Gmail for the user."}
	case ge.Code == http.StatusForbidden && (hasReason(ge, "accessNotConfigured") || strings.Contains(lower, "has not been used in project") || strings.Contains(lower, "is disabled")):
		return &Failure{Code: CodeGmailError, Message: msg + " The operator must enable the Gmail API in the project (the link above), then republish."}
	case ge.Code == http.StatusForbidden && hasReason(ge, "insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"):
		return &Failure{Code: CodeReauthRequired, Message: msg + ". The token lacks the gmail.send scope; the owner must reconnect and tick \"Send email on your behalf\"."}
	case ge.Code >= 500:
		return &Failure{Code: CodeGmailError, Retryable: true, Message: msg, RetryAfter: retryAfter(ge, now)}
	case ge.Code == http.StatusRequestEntityTooLarge || ge.Code == http.StatusBadRequest:
		return &Failure{Code: CodeInvalidRequest, Message: msg}
	}
	return &Failure{Code: CodeGmailError, Message: msg}
}

// retryAfter reads "Retry after <RFC 3339>" from Google's message, or the
// Retry-After header (seconds or an HTTP date).
func retryAfter(ge *googleapi.Error, now time.Time) time.Time {
	if m := retryAfterRE.FindStringSubmatch(ge.Message); m != nil {
		if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			return t
		}
	}
	if ge.Header != nil {
		if v := ge.Header.Get("Retry-After"); v != "" {
			if s, err := strconv.Atoi(v); err == nil && s >= 0 {
				return now.Add(time.Duration(s) * time.Second)
			}
			if t, err := http.ParseTime(v); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}
