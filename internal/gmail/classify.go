package gmail

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // Pacific Time for the project quota's reset

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/gmailrelay/gmailrelay/internal/oauth"
)

// Code is a result event's error code (DESIGN §3).
type Code string

// The result codes.
const (
	CodeReauthRequired Code = "reauth_required"
	CodeInvalidRequest Code = "invalid_request"
	CodeUnknownAccount Code = "unknown_account"
	CodeRateLimited    Code = "rate_limited"
	// CodeDailyLimit is the mailbox's daily sending cap: Gmail refuses its
	// sends, for hours, until RetryAt.
	CodeDailyLimit Code = "daily_limit"
	// CodeProjectQuota is the Cloud project's Gmail API quota: every
	// mailbox is refused until it resets at midnight Pacific Time.
	CodeProjectQuota Code = "project_quota"
	CodeMailDisabled Code = "mail_disabled"
	// CodeDomainPolicy is a Workspace domain that does not let apps use
	// Gmail.
	CodeDomainPolicy Code = "domain_policy"
	CodeGmailError   Code = "gmail_error"
	CodeInternal     Code = "internal"
)

// CodeForbidden is a request the relay's policy does not allow: the app may
// not send as that account, raw, or to that many recipients (DESIGN §7).
const CodeForbidden Code = "forbidden"

// The codes of attachments by Cloud Storage reference (attachments[].gcs_uri),
// each final. A Cloud Storage outage is CodeInternal and retried.
const (
	// CodeAttachmentNotFound: the object (or its bucket) does not exist.
	CodeAttachmentNotFound Code = "attachment_not_found"
	// CodeAttachmentDenied: the relay may not read the object, by its own
	// rules (by-reference attachments disabled, a bucket it is not given,
	// another app's prefix) or Cloud Storage's IAM.
	CodeAttachmentDenied Code = "attachment_denied"
	// CodeAttachmentChanged: the object is no longer the generation the
	// request names, or changed while the relay read it.
	CodeAttachmentChanged Code = "attachment_changed"
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
	// Unauthorized is a 401: Gmail refused the access token. Only the
	// refresh under it can say the grant is dead (invalid_grant), so the
	// caller refreshes once if the token was a cached one, and otherwise
	// treats the 401 as transient.
	Unauthorized bool
	// RetryAt is when Google said to try again, or when its quota resets.
	RetryAt time.Time
}

func (f *Failure) Error() string { return string(f.Code) + ": " + f.Message }

// retryAfterRE finds the time in Gmail's "User-rate limit exceeded.  Retry
// after 2020-01-21T12:57:51.196Z (Mail sending)": two spaces in the bodies
// seen, one in some reports, so any.
var retryAfterRE = regexp.MustCompile(`Retry after\s+(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d))`)

// DailyLimitAfter is how far away a "Retry after" must be for the answer to
// be the mailbox's daily cap rather than a short rate limit: Gmail's short
// limits give about 15 minutes, the daily cap hours that keep moving.
const DailyLimitAfter = 15 * time.Minute

// sizeLimits is the fix of every answer that says the request was too big.
const sizeLimits = "Gmail takes a message of at most 35 MB (36,700,160 bytes) through the upload endpoint the relay uses, " +
	"and attachments grow by a third in base64; a request without upload is limited to 5 MB. " +
	"Send smaller attachments, or links to them."

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
		// x/oauth2 does not parse error_subtype, which tells a session
		// control policy from a dead token.
		var extra struct {
			Subtype string `json:"error_subtype"`
		}
		_ = json.Unmarshal(re.Body, &extra)
		p := oauth.ExplainInvalidGrant(re.ErrorDescription, extra.Subtype)
		return &Failure{Code: CodeReauthRequired, Message: p.Message + " " + p.Fix}
	case re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client":
		return &Failure{Code: CodeInternal,
			Message: "Google refused the relay's OAuth client (" + desc + "): the operator must check OAUTH_CLIENT_ID and the client secret"}
	case re.Response != nil && re.Response.StatusCode >= 500, re.Response != nil && re.Response.StatusCode == http.StatusTooManyRequests:
		return &Failure{Code: CodeGmailError, Retryable: true, Message: "Google's token endpoint failed: " + desc}
	}
	return &Failure{Code: CodeGmailError, Message: "refreshing the access token failed: " + desc}
}

func hasReason(ge *googleapi.Error, want ...string) bool {
	for _, it := range ge.Errors {
		if slices.Contains(want, it.Reason) {
			return true
		}
	}
	return false
}

// isHTML reports whether an error answer is one of the front end's HTML
// pages rather than Gmail's JSON.
func isHTML(ge *googleapi.Error) bool {
	if ge.Header != nil {
		if mt, _, err := mime.ParseMediaType(ge.Header.Get("Content-Type")); err == nil && mt == "text/html" {
			return true
		}
	}
	return ge.Message == "" && len(ge.Errors) == 0 && strings.HasPrefix(strings.TrimSpace(ge.Body), "<")
}

func classifyAPIError(ge *googleapi.Error, now time.Time) *Failure {
	msg := ge.Message
	html := isHTML(ge)
	if msg == "" {
		msg = http.StatusText(ge.Code)
		if html {
			msg += " (an HTML page from Google's front end)"
		}
	}
	msg = fmt.Sprintf("Gmail answered %d: %s", ge.Code, msg)
	lower := strings.ToLower(ge.Message)
	switch {
	case ge.Code == http.StatusUnauthorized:
		// A 401 never proves the grant dead: only the refresh can.
		return &Failure{Code: CodeGmailError, Retryable: true, Unauthorized: true, Message: msg}
	case ge.Code == http.StatusForbidden && hasReason(ge, "dailyLimitExceeded"):
		reset := NextPacificMidnight(now)
		return &Failure{Code: CodeProjectQuota, Retryable: true, RetryAt: reset,
			Message: msg + ". This is the Cloud project's Gmail API quota, shared by every mailbox, not a mailbox's sending limit; Google resets it at midnight Pacific Time (" +
				reset.UTC().Format(time.RFC3339) + "). The operator can check and raise it under APIs & Services → Gmail API → Quotas."}
	case ge.Code == http.StatusTooManyRequests,
		ge.Code == http.StatusForbidden && hasReason(ge, "userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded"),
		ge.Code == http.StatusForbidden && strings.Contains(lower, "per minute per user"):
		at := retryAt(ge, now)
		if !at.IsZero() && at.Sub(now) > DailyLimitAfter {
			return &Failure{Code: CodeDailyLimit, Retryable: true, RetryAt: at,
				Message: msg + ". The mailbox has reached Gmail's daily sending limit (about 500 messages a day for consumer accounts, 2,000 for Workspace, over a rolling 24 hours; https://support.google.com/a/answer/166852), shared with its other mail clients; Gmail accepts its sends again from " +
					at.UTC().Format(time.RFC3339) + ", and may move that time later while sends keep arriving."}
		}
		return &Failure{Code: CodeRateLimited, Retryable: true, Message: msg, RetryAt: at}
	case ge.Code == http.StatusBadRequest && hasReason(ge, "failedPrecondition") && strings.Contains(lower, "mail service not enabled"):
		return &Failure{Code: CodeMailDisabled, Message: msg + ". The account has no Gmail: either it is a Google account on a non-Gmail address (connect an account that has Gmail), or a Workspace administrator has turned Gmail off for the user (Admin console → Apps → Google Workspace → Gmail → Service status)."}
	case ge.Code == http.StatusBadRequest && hasReason(ge, "failedPrecondition"):
		// "Precondition check failed." comes and goes for a mailbox that
		// works; the delivery attempts bound the retries.
		return &Failure{Code: CodeGmailError, Retryable: true, Message: msg + ". Gmail reports this intermittently for working mailboxes; the relay retries."}
	case ge.Code == http.StatusForbidden && hasReason(ge, "domainPolicy"):
		return &Failure{Code: CodeDomainPolicy, Message: msg + ". The mailbox's Workspace domain does not let apps use Gmail: a Workspace administrator must allow this app, under Admin console → Security → Access and data control → API controls, by marking the relay's OAuth client ID as Trusted in Manage third-party app access (or by not restricting Gmail in Manage Google services)."}
	case ge.Code == http.StatusForbidden && (hasReason(ge, "accessNotConfigured") || strings.Contains(lower, "has not been used in project") || strings.Contains(lower, "is disabled")):
		return &Failure{Code: CodeGmailError, Message: msg + " The operator must enable the Gmail API in the project (the link above), then republish."}
	case ge.Code == http.StatusForbidden && hasReason(ge, "insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"):
		return &Failure{Code: CodeReauthRequired, Message: msg + ". The token lacks the gmail.send scope; the owner must reconnect and tick \"Send email on your behalf\"."}
	case ge.Code >= 500:
		return &Failure{Code: CodeGmailError, Retryable: true, Message: msg, RetryAt: retryAt(ge, now)}
	case ge.Code == http.StatusRequestEntityTooLarge, html && ge.Code >= 400:
		// Google's front end answers an oversized request with an HTML page
		// (413, or 400 on the JSON path) before Gmail reads it.
		return &Failure{Code: CodeInvalidRequest, Message: msg + ". Google's front end refused the request, which happens when it is too large. " + sizeLimits}
	case ge.Code == http.StatusBadRequest:
		return &Failure{Code: CodeInvalidRequest, Message: msg}
	}
	return &Failure{Code: CodeGmailError, Message: msg}
}

// retryAt reads "Retry after <RFC 3339>" from Google's message, or the
// Retry-After header (seconds or an HTTP date), whichever is later.
func retryAt(ge *googleapi.Error, now time.Time) time.Time {
	var at time.Time
	if m := retryAfterRE.FindStringSubmatch(ge.Message); m != nil {
		if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			at = t
		}
	}
	if ge.Header != nil {
		if v := strings.TrimSpace(ge.Header.Get("Retry-After")); v != "" {
			var h time.Time
			if s, err := strconv.Atoi(v); err == nil && s >= 0 {
				h = now.Add(time.Duration(s) * time.Second)
			} else if t, err := http.ParseTime(v); err == nil {
				h = t
			}
			if h.After(at) {
				at = h
			}
		}
	}
	return at
}

// pacific is where Google resets daily API quotas. time/tzdata is linked in
// so that a minimal container without zoneinfo has it too.
var pacific = func() *time.Location {
	loc, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		panic("gmail: loading America/Los_Angeles: " + err.Error())
	}
	return loc
}()

// NextPacificMidnight is the first midnight in Pacific Time after t.
func NextPacificMidnight(t time.Time) time.Time {
	p := t.In(pacific)
	return time.Date(p.Year(), p.Month(), p.Day()+1, 0, 0, 0, 0, pacific)
}
