package delegation

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Kind says what a failure means and whose fix it is.
type Kind string

const (
	// KindNotAuthorized: the Workspace admin has not authorised (or has
	// withdrawn) the delegate's client ID for gmail.send in the user's
	// domain. Permanent until the admin acts.
	KindNotAuthorized Kind = "not_authorized"
	// KindUnknownUser: Google knows no such user in the domain (never
	// created, deleted, or suspended). Permanent.
	KindUnknownUser Kind = "unknown_user"
	// KindSignerDenied: the relay's own identity may not sign as the
	// delegate (roles/iam.serviceAccountTokenCreator is missing on it).
	// Permanent until the operator applies Terraform.
	KindSignerDenied Kind = "signer_denied"
	// KindTransient: Google failed or could not be reached; try later.
	KindTransient Kind = "transient"
	// KindInternal: any other refusal; the detail says what Google said.
	KindInternal Kind = "internal"
)

// Error is a failed mint.
type Error struct {
	Kind Kind
	User string
	// Status is the HTTP status Google answered (0 if none came).
	Status int
	// Code and Description are the token endpoint's error and
	// error_description, or the IAM API's status and message.
	Code        string
	Description string
	// Detail is the underlying error's text, for logs; it holds no token.
	Detail string
	d      *Delegator
}

func (e *Error) Error() string {
	return "delegation: " + e.Message()
}

// Retryable reports whether a later attempt may succeed unchanged.
func (e *Error) Retryable() bool { return e.Kind == KindTransient }

// Message says what happened and, for a permanent failure, the fix.
func (e *Error) Message() string {
	said := e.Code
	if e.Description != "" {
		said += ": " + e.Description
	}
	switch e.Kind {
	case KindNotAuthorized:
		return fmt.Sprintf("Google refused domain-wide delegation for %s (%s): %s", e.User, said, e.Fix())
	case KindUnknownUser:
		return fmt.Sprintf("Google knows no active user %s (%s): the user does not exist in the Workspace domain, was deleted or is suspended", e.User, said)
	case KindSignerDenied:
		return fmt.Sprintf("the relay may not sign as the delegate service account (%s): %s", said, e.Fix())
	case KindTransient:
		if said == "" {
			said = e.Detail
		}
		return fmt.Sprintf("minting an access token for %s through domain-wide delegation failed for now (%s)", e.User, said)
	}
	if said == "" {
		said = e.Detail
	}
	return fmt.Sprintf("minting an access token for %s through domain-wide delegation failed (%s)", e.User, said)
}

// Fix is the step that resolves a permanent failure, naming who takes it.
func (e *Error) Fix() string {
	switch e.Kind {
	case KindNotAuthorized:
		return AdminFix(e.clientID())
	case KindSignerDenied:
		sa := ""
		if e.d != nil {
			sa = e.d.cfg.ServiceAccount
		}
		return "the operator must grant the sender's, admin's and healthcheck's service accounts roles/iam.serviceAccountTokenCreator on " + sa +
			" (terraform apply with delegated_domains set does), and enable the IAM Credentials API"
	}
	return ""
}

func (e *Error) clientID() string {
	if e.d != nil && e.d.cfg.ClientID != "" {
		return e.d.cfg.ClientID
	}
	if e.d != nil {
		return "of " + e.d.cfg.ServiceAccount + " (terraform output delegate_client_id)"
	}
	return "(terraform output delegate_client_id)"
}

// AdminFix is the Workspace admin's step for a client ID.
func AdminFix(clientID string) string {
	return "a Workspace super admin must authorise client ID " + clientID + " for " + Scope +
		" under Admin console → Security → Access and data control → API controls → Domain-wide delegation"
}

// statusRE reads impersonate's errors, which carry Google's answer only as
// text: fmt.Errorf("impersonate: status code %d: %s", code, body) in
// google.golang.org/api v0.309.0 impersonate/user.go, for both signJwt and
// the token exchange.
var statusRE = regexp.MustCompile(`(?s)^impersonate: status code (\d{3}): (.*)$`)

// translate classifies an impersonate error.
func (d *Delegator) translate(user string, err error) *Error {
	e := &Error{User: user, Detail: err.Error(), d: d}
	m := statusRE.FindStringSubmatch(err.Error())
	if m == nil {
		// No answer came: connection refused, DNS, the client's timeout.
		var de *Error
		if errors.As(err, &de) {
			return de
		}
		e.Kind = KindTransient
		return e
	}
	e.Status, _ = strconv.Atoi(m[1])
	e.Code, e.Description = parseBody([]byte(m[2]))
	e.Kind = classify(e.Status, e.Code, e.Description)
	return e
}

// parseBody reads both error shapes: the token endpoint's
// {"error":"unauthorized_client","error_description":"..."} and the IAM
// API's {"error":{"code":403,"message":"...","status":"PERMISSION_DENIED"}}.
func parseBody(body []byte) (code, desc string) {
	var b struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
	}
	if json.Unmarshal(body, &b) != nil || len(b.Error) == 0 {
		return "", strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	if json.Unmarshal(b.Error, &code) == nil {
		return code, b.Description
	}
	var api struct {
		Message string `json:"message"`
		Status  string `json:"status"`
	}
	_ = json.Unmarshal(b.Error, &api)
	return api.Status, api.Message
}

// classify maps Google's answer to a Kind, after Google's table of JWT
// error codes (developers.google.com/identity/protocols/oauth2/service-account,
// "JWT error codes") and the bodies seen in public reports (see the
// sandbox's delegation.go).
func classify(status int, code, desc string) Kind {
	switch {
	case status >= 500 || status == http.StatusTooManyRequests:
		return KindTransient
	case code == "unauthorized_client", code == "access_denied", code == "admin_policy_enforced":
		return KindNotAuthorized
	case code == "invalid_grant" && (strings.HasPrefix(desc, "Invalid email or User ID") || desc == "Not a valid email" ||
		strings.HasPrefix(desc, "The account has been deleted")):
		return KindUnknownUser
	case code == "invalid_request" && strings.Contains(desc, `Invalid impersonation "sub" field`):
		return KindUnknownUser
	case code == "PERMISSION_DENIED":
		// Only signJwt answers in the IAM API's shape: "Permission
		// 'iam.serviceAccounts.signJwt' denied on resource (or it may not
		// exist)." or "The caller does not have permission".
		return KindSignerDenied
	}
	return KindInternal
}
