package sandbox

import (
	"net/http"
	"strings"
	"time"
)

// The bodies of the named faults, as Google sends them. Each cites where it
// was seen. WHOLE: the source quotes the whole body. RECONSTRUCTED: the
// source quotes only some of it; the comment says where each part is from.
// Variable parts (a time, a project number) are substituted into the text.

// bodyMailServiceNotEnabled: WHOLE, quoted on one line exactly like this in
// https://github.com/WPManageNinja/fluent-smtp/issues/152 (a send through
// the Gmail API, 2023). The same message, reason and domain in the older
// format: https://github.com/FlowCrypt/flowcrypt-browser/issues/435.
const bodyMailServiceNotEnabled = `{ "error": { "code": 400, "message": "Mail service not enabled", "errors": [ { "message": "Mail service not enabled", "domain": "global", "reason": "failedPrecondition" } ], "status": "FAILED_PRECONDITION" } }`

// bodyPreconditionFailed: the error object is WHOLE in
// https://github.com/googleapis/google-api-java-client/issues/1648 (a send
// from "me", 2020), printed by the Java client without the {"error": ...}
// wrapper; the wrapper and Google's key order are RECONSTRUCTED. Also
// quoted for users.messages.send in
// https://github.com/googleapis/google-api-python-client/issues/984.
const bodyPreconditionFailed = `{
  "error": {
    "code": 400,
    "message": "Precondition check failed.",
    "errors": [
      {
        "message": "Precondition check failed.",
        "domain": "global",
        "reason": "failedPrecondition"
      }
    ],
    "status": "FAILED_PRECONDITION"
  }
}
`

// bodyUserRateLimit is RECONSTRUCTED. The message, with two spaces after
// "exceeded." and the time in RFC 3339 with milliseconds, is quoted in
// https://github.com/levz0r/gmail-tester/issues/23; the reason
// rateLimitExceeded in https://github.com/taers232c/GAMADV-XTD3/issues/149
// (GAM prints "reason - message"); the " (Mail sending)" suffix of a send
// that hit the mailbox's sending limit is from Google's "Resolve errors"
// guide, https://developers.google.com/workspace/gmail/api/guides/handle-errors
// ("an HTTP 429 "Too many requests: User-rate limit exceeded (Mail
// sending)" error is returned with a time to retry"). Domain global and
// status RESOURCE_EXHAUSTED are those of the whole 429 body in
// https://github.com/elie222/inbox-zero/issues/379. No source shows a
// Retry-After header; the time is in the message.
func bodyUserRateLimit(retryAt time.Time) string {
	msg := "User-rate limit exceeded.  Retry after " + retryAt.UTC().Format(retryTimeFormat) + " (Mail sending)"
	return `{
  "error": {
    "code": 429,
    "message": "` + msg + `",
    "errors": [
      {
        "message": "` + msg + `",
        "domain": "global",
        "reason": "rateLimitExceeded"
      }
    ],
    "status": "RESOURCE_EXHAUSTED"
  }
}
`
}

// bodyResourceExhausted: the error object is WHOLE in
// https://github.com/elie222/inbox-zero/issues/379 (logged by gaxios, which
// shows the body's "error" member); the same message and reason in
// https://github.com/mxngls/gmail-cleaner/issues/5.
const bodyResourceExhausted = `{
  "error": {
    "code": 429,
    "message": "Resource has been exhausted (e.g. check quota).",
    "errors": [
      {
        "message": "Resource has been exhausted (e.g. check quota).",
        "domain": "global",
        "reason": "rateLimitExceeded"
      }
    ],
    "status": "RESOURCE_EXHAUSTED"
  }
}
`

// bodyUserRateLimit403 is the sample of Google's "Resolve errors" guide,
// https://developers.google.com/workspace/gmail/api/guides/handle-errors
// (403 userRateLimitExceeded), as the guide prints it.
const bodyUserRateLimit403 = `{
  "error": {
  "errors": [
    {
    "domain": "usageLimits",
    "reason": "userRateLimitExceeded",
    "message": "User Rate Limit Exceeded"
    }
  ],
  "code": 403,
  "message": "User Rate Limit Exceeded"
  }
}
`

// bodyQuotaPerMinute is RECONSTRUCTED: message, domain and reason are
// quoted in https://github.com/mxngls/gmail-cleaner/issues/5 (a 403 from
// gmail.googleapis.com, 2025); the wrapper and status are Google's usual
// ones for a 403. The project number is substituted.
func bodyQuotaPerMinute(project string) string {
	msg := "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com' for consumer 'project_number:" + project + "'."
	return `{
  "error": {
    "code": 403,
    "message": "` + msg + `",
    "errors": [
      {
        "message": "` + msg + `",
        "domain": "usageLimits",
        "reason": "rateLimitExceeded"
      }
    ],
    "status": "PERMISSION_DENIED"
  }
}
`
}

// bodyProjectQuota is RECONSTRUCTED for Gmail: the whole body, in this
// format, is quoted for the Datastore API in
// https://github.com/murer/dsopz/issues/3 and for YouTube in
// https://github.com/tokland/youtube-upload/issues/165; the service-name
// form of the quota URL is from https://github.com/artemklevtsov/RGA/issues/59;
// the reason and the "Daily Limit Exceeded" start of the message are in the
// Gmail sample of Google's "Resolve errors" guide,
// https://developers.google.com/workspace/gmail/api/guides/handle-errors.
func bodyProjectQuota(project string) string {
	u := "https://console.developers.google.com/apis/api/gmail.googleapis.com/quotas?project=" + project
	msg := "Daily Limit Exceeded. The quota will be reset at midnight Pacific Time (PT). You may monitor your quota usage and adjust limits in the API Console: " + u
	return `{
 "error": {
  "errors": [
   {
    "domain": "usageLimits",
    "reason": "dailyLimitExceeded",
    "message": "` + msg + `",
    "extendedHelp": "` + u + `"
   }
  ],
  "code": 403,
  "message": "` + msg + `"
 }
}
`
}

// bodyDomainPolicy is the sample of Google's "Resolve errors" guide,
// https://developers.google.com/workspace/gmail/api/guides/handle-errors
// (403 domainPolicy), as the guide prints it.
const bodyDomainPolicy = `{
  "error": {
    "errors": [
      {
        "domain": "global",
        "reason": "domainPolicy",
        "message": "The domain administrators have disabled Gmail apps."
      }
    ],
    "code": 403,
    "message": "The domain administrators have disabled Gmail apps."
  }
}
`

// bodyUnauthenticated: WHOLE in
// https://github.com/dacastro4/laravel-gmail/issues/273; the same body on
// one line, intermittent on valid tokens, in
// https://github.com/googleapis/google-api-nodejs-client/issues/2665.
const bodyUnauthenticated = `{
  "error": {
    "code": 401,
    "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    "errors": [
      {
        "message": "Invalid Credentials",
        "domain": "global",
        "reason": "authError",
        "location": "Authorization",
        "locationType": "header"
      }
    ],
    "status": "UNAUTHENTICATED"
  }
}
`

// bodyAPIDisabled: WHOLE in https://github.com/DSchau/gatsby-mail/issues/35
// (Gmail, 2020); the project number is substituted.
func bodyAPIDisabled(project string) string {
	msg := "Gmail API has not been used in project " + project + " before or it is disabled. Enable it by visiting " +
		"https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project=" + project +
		" then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
	return `{
  "error": {
    "code": 403,
    "message": "` + msg + `",
    "errors": [
      {
        "message": "` + msg + `",
        "domain": "usageLimits",
        "reason": "accessNotConfigured",
        "extendedHelp": "https://console.developers.google.com"
      }
    ],
    "status": "PERMISSION_DENIED"
  }
}
`
}

// bodyBackendError is RECONSTRUCTED: the message and reason of a 500 on a
// send are in https://github.com/kevinburke/multi-emailer/issues/1 (the Go
// client's "googleapi: Error 500: Backend Error, backendError"); the
// wrapper, domain and status are Google's usual ones.
const bodyBackendError = `{
  "error": {
    "code": 500,
    "message": "Backend Error",
    "errors": [
      {
        "message": "Backend Error",
        "domain": "global",
        "reason": "backendError"
      }
    ],
    "status": "INTERNAL"
  }
}
`

// bodyUnavailable is RECONSTRUCTED from Google's usual 503 shape; no public
// Gmail 503 body was found. It is here for load tests, not for
// classification by message.
const bodyUnavailable = `{
  "error": {
    "code": 503,
    "message": "The service is currently unavailable.",
    "errors": [
      {
        "message": "The service is currently unavailable.",
        "domain": "global",
        "reason": "backendError"
      }
    ],
    "status": "UNAVAILABLE"
  }
}
`

// bodyBadRequestHTML: WHOLE, with its headers, in
// https://github.com/googleapis/google-api-dotnet-client/issues/804: what
// Google's front end answered a users.messages.send of 8.5 MB on the JSON
// path.
const bodyBadRequestHTML = "<HTML>\n<HEAD>\n<TITLE>Bad Request</TITLE>\n</HEAD>\n<BODY BGCOLOR=\"#FFFFFF\" TEXT=\"#000000\">\n<H1>Bad Request</H1>\n<H2>Error 400</H2>\n</BODY>\n</HTML>\n"

// bodyTooLargeHTML is Google's front-end error page for 413. RECONSTRUCTED:
// the head, up to <style>, is WHOLE in
// https://github.com/googleapis/google-cloud-ruby/pull/31568; the text
// ("413. That’s an error." / "Your client issued a request that was too
// large. That’s all we know.", with U+2019) is from
// https://github.com/noitcudni/google-search-console-bulk-url-removal/issues/16;
// the body's markup is the same page's for other statuses (the logo link,
// <p><b>N.</b> <ins>…</ins>, two spaces before the last <ins>). The style
// sheet is left out: no source quotes it, and no client reads it.
const bodyTooLargeHTML = `<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">
  <title>Error 413 (Request Entity Too Large)!!1</title>
  <style>
  </style>
  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>
  <p><b>413.</b> <ins>That’s an error.</ins>
  <p>Your client issued a request that was too large.  <ins>That’s all we know.</ins>
`

// The token endpoint's invalid_grant answers to a refresh.
const (
	// bodyTokenRevoked: WHOLE, with its headers, in
	// https://github.com/apache/opendal/issues/3901 (2024); the same,
	// printed by golang.org/x/oauth2, in
	// https://github.com/GeneralTask/task-manager/pull/2169.
	bodyTokenRevoked = "{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"Token has been expired or revoked.\"\n}"
	// bodyTokenBadRequest: WHOLE in
	// https://github.com/vitalif/grive2/issues/326 (2020).
	bodyTokenBadRequest = "{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"Bad Request\"\n}"
	// bodyTokenInvalidRAPT is RECONSTRUCTED: status 400, error and
	// error_description as logged in https://github.com/anthropics/blobfile/pull/2
	// (2024); error_subtype from Google's "Using OAuth 2.0 to Access Google
	// APIs", https://developers.google.com/identity/protocols/oauth2 (session
	// control policies: "error_subtype": "invalid_rapt").
	bodyTokenInvalidRAPT = "{\n  \"error\": \"invalid_grant\",\n  \"error_description\": \"reauth related error (invalid_rapt)\",\n  \"error_subtype\": \"invalid_rapt\"\n}"
)

// jsonContentType and htmlContentType are Google's Content-Type values for
// its two kinds of error body.
const (
	jsonContentType = "application/json; charset=UTF-8"
	htmlContentType = "text/html; charset=UTF-8"
)

// contentTypeFor guesses a Content-Type for a verbatim body given none.
func contentTypeFor(body string) string {
	switch t := strings.TrimLeft(body, " \t\r\n"); {
	case strings.HasPrefix(t, "{"), strings.HasPrefix(t, "["):
		return jsonContentType
	case strings.HasPrefix(t, "<"):
		return htmlContentType
	}
	return "text/plain; charset=UTF-8"
}

func jsonResponse(status int, body string) Response {
	return Response{Status: status, Body: body}
}

// tooLargeResponse is what the JSON raw path answers a body over
// maxJSONRequest with.
func tooLargeResponse() Response {
	return Response{Status: http.StatusRequestEntityTooLarge, Headers: map[string]string{"Content-Type": htmlContentType}, Body: bodyTooLargeHTML}
}
