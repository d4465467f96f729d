package oauth

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/oauth2"
)

// Problem is what a person sees when connecting fails: a stable code, a
// sentence about what happened, and what to do about it. The connect
// handlers show it as a page or in the relay's one JSON error shape.
type Problem struct {
	Code    string
	Title   string
	Message string
	Fix     string
	// Status is the HTTP status confirm answers with.
	Status int
	// GoogleSays is Google's own error_description, shown beside Message
	// as Google's words. Only confirm sets it, and only for a state this
	// browser started: anyone can put text in a link's query.
	GoogleSays string
}

// authErrorCode is the shape of OAuth error codes (RFC 6749 §4.1.2.1 uses
// lowercase words joined by underscores).
var authErrorCode = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func (p *Problem) Error() string { return p.Code + ": " + p.Message }

// ExplainAuthError translates the error= parameter Google puts on the
// redirect when the consent step fails. The explanation is the relay's own
// and never carries the link's error_description: callers that trust the
// link (a verified state) set GoogleSays to it.
func ExplainAuthError(code string) *Problem {
	switch code {
	case "access_denied":
		return &Problem{Code: code, Status: 403,
			Title:   "Access was not granted",
			Message: "Google did not grant access. Either Deny was chosen on the consent screen, or the OAuth app is in Testing status and this Google account is not one of its test users (Google then says the app \"has not completed the Google verification process\").",
			Fix:     "If you chose Deny, start again and choose Allow. Otherwise, in the Google Cloud console open Google Auth Platform → Audience, add this address under Test users (or publish the app to Production), then connect again.",
		}
	case "admin_policy_enforced":
		return &Problem{Code: code, Status: 403,
			Title:   "Your Workspace administrator blocks this app",
			Message: "The Google Workspace domain's administrator does not allow this OAuth client to access Gmail.",
			Fix:     "Ask the Workspace administrator to mark this app's client ID as Trusted under Admin console → Security → Access and data control → API controls → Manage third-party app access, then connect again.",
		}
	case "org_internal":
		return &Problem{Code: code, Status: 403,
			Title:   "This app is for one organisation only",
			Message: "The OAuth consent screen's user type is Internal, so only accounts of the Google Workspace organisation that owns the project can connect.",
			Fix:     "Connect an account of that organisation, or change the user type to External in Google Auth Platform → Audience.",
		}
	case "invalid_scope":
		return &Problem{Code: code, Status: 400,
			Title:   "Google rejected the requested permissions",
			Message: "Google says a requested scope is invalid.",
			Fix:     "Check that the Gmail API is enabled in the project and that gmail.send is listed under Data access on the consent screen configuration.",
		}
	}
	// The code itself is echoed only as a fixed-shape token, so a forged
	// link cannot put a sentence on the page.
	if !authErrorCode.MatchString(code) {
		code = "google_error"
	}
	return &Problem{Code: code, Status: 400,
		Title:   "Google returned an error",
		Message: fmt.Sprintf("Google stopped the sign-in with the error code %s.", code),
		Fix:     "Start again from the connect link. If it happens again, give the operator this error code.",
	}
}

// ExplainExchangeError translates a failed code exchange.
func ExplainExchangeError(err error) *Problem {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return &Problem{Code: "google_unreachable", Status: 502,
			Title:   "Google could not be reached",
			Message: "The relay could not complete the exchange with Google's token endpoint.",
			Fix:     "Nothing was saved. Wait a moment and connect again.",
		}
	}
	desc := orDefault(re.ErrorDescription, "no description given")
	switch re.ErrorCode {
	case "redirect_uri_mismatch":
		return &Problem{Code: re.ErrorCode, Status: 400,
			Title:   "The redirect URI does not match",
			Message: "Google says: " + desc + ". The redirect URI the relay sends is not registered for this OAuth client.",
			Fix:     "In the Google Cloud console, open the OAuth client (type Web application) and add the redirect URI exactly as the Terraform output redirect_uri prints it, then connect again.",
		}
	case "invalid_client":
		return &Problem{Code: re.ErrorCode, Status: 502,
			Title:   "The relay's OAuth credentials are wrong",
			Message: "Google says: " + desc + ". The client ID or client secret the relay uses is not valid.",
			Fix:     "The operator must store the current client secret of this client ID in Secret Manager (see README, Deploy) and redeploy.",
		}
	case "invalid_grant":
		return &Problem{Code: re.ErrorCode, Status: 400,
			Title:   "This sign-in link was already used or has expired",
			Message: "Google says: " + desc + ". An authorization code works once and only for a few minutes.",
			Fix:     "Start again from the connect link.",
		}
	}
	return &Problem{Code: orDefault(re.ErrorCode, "token_error"), Status: 502,
		Title:   "Google refused the exchange",
		Message: "Google says: " + desc + ".",
		Fix:     "Nothing was saved. Connect again; if it persists, give the operator this error code.",
	}
}

// The error_description values of Google's invalid_grant answers to a
// refresh that ExplainInvalidGrant tells apart.
const (
	DescriptionRevoked     = "Token has been expired or revoked."
	DescriptionBadRequest  = "Bad Request"
	DescriptionInvalidRAPT = "reauth related error (invalid_rapt)"
)

// ExplainInvalidGrant says why Google refused a refresh token with
// invalid_grant, from its error_description and error_subtype, and what
// the mailbox's owner or administrator can do. Each variant has its own
// explanation: a dead token (revoked, expired, or no longer known), or a
// Workspace session-control policy that wants the user to sign in again,
// where the token is not dead and the 7-day expiry of Testing apps has
// nothing to do with it.
func ExplainInvalidGrant(description, subtype string) *Problem {
	const code = "reauth_required"
	// Google's reasons a refresh token stops working
	// (https://developers.google.com/identity/protocols/oauth2#expiration).
	const deadCauses = "the owner removed the app's access, changed the password (the token carries a Gmail scope), " +
		"did not use it for six months, or connected the app more than 100 times (the oldest token is dropped); " +
		"and if the OAuth app is in Testing status, Google expires its tokens 7 days after they were issued"
	switch {
	case subtype == "invalid_rapt" || subtype == "rapt_required" || strings.Contains(description, "invalid_rapt"):
		return &Problem{Code: code, Status: 400,
			Title:   "The Workspace session must be renewed",
			Message: "Google refused the mailbox's refresh token (" + orDefault(description, "invalid_rapt") + "): the Workspace domain's session control requires the user to sign in again after a set time. The grant itself was not revoked.",
			Fix:     "The owner must reconnect the mailbox. To stop this recurring, a Workspace administrator can mark the relay's OAuth client ID as Trusted, or exempt it from re-authentication, under Admin console → Security → Access and data control → Google Cloud session control.",
		}
	case description == DescriptionRevoked:
		return &Problem{Code: code, Status: 400,
			Title:   "The mailbox's access was revoked or has expired",
			Message: "Google refused the mailbox's refresh token (" + description + "). It happens when " + deadCauses + ".",
			Fix:     "The owner must reconnect the mailbox from the connect link. If the app is in Testing status, publish it to Production so that tokens stop expiring after 7 days.",
		}
	case description == DescriptionBadRequest:
		return &Problem{Code: code, Status: 400,
			Title:   "Google no longer recognises the mailbox's token",
			Message: "Google refused the mailbox's refresh token (Bad Request), which it answers for a token that died some time ago and was refused before as \"expired or revoked\". It died because " + deadCauses + ".",
			Fix:     "The owner must reconnect the mailbox from the connect link. If the app is in Testing status, publish it to Production so that tokens stop expiring after 7 days.",
		}
	}
	return &Problem{Code: code, Status: 400,
		Title:   "Google refused the mailbox's token",
		Message: "Google refused the mailbox's refresh token (" + orDefault(description, "invalid_grant") + ").",
		Fix:     "The owner must reconnect the mailbox from the connect link.",
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
