package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/html"
)

// Consent plays the user on the sandbox's consent page: it GETs authURL with
// client (following redirects, so authURL may be the application's own
// "connect" URL that redirects to the consent page, and a cookie jar in
// client keeps what the application sets on the way), fills in email,
// unticks the scopes named in untick (full scope strings, or their last path
// element such as "gmail.send", or "email"), and presses Allow. It does not
// follow the final redirect: it returns its Location, the redirect URI with
// code, state and scope (or error), for the caller to deliver.
//
// An error page (redirect_uri_mismatch, invalid_client, ...) is returned as
// a *ConsentPageError.
func Consent(ctx context.Context, client *http.Client, authURL, email string, untick ...string) (*url.URL, error) {
	return submitConsent(ctx, client, authURL, email, "allow", untick)
}

// ConsentDeny is Consent pressing Deny: the returned Location carries
// error=access_denied.
func ConsentDeny(ctx context.Context, client *http.Client, authURL, email string) (*url.URL, error) {
	return submitConsent(ctx, client, authURL, email, "deny", nil)
}

// ConsentPageError is a page the sandbox showed instead of the consent form
// or instead of redirecting, such as "Error 400: redirect_uri_mismatch".
type ConsentPageError struct {
	StatusCode int
	// Error is the page's error line, e.g. "Error 400: redirect_uri_mismatch"
	// or, on a consent form shown again, its problem text.
	Text string
}

func (e *ConsentPageError) Error() string {
	return fmt.Sprintf("sandbox consent: HTTP %d: %s", e.StatusCode, e.Text)
}

func submitConsent(ctx context.Context, client *http.Client, authURL, email, action string, untick []string) (*url.URL, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("sandbox consent: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sandbox consent: open consent page: %w", err)
	}
	doc, err := html.Parse(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("sandbox consent: parse consent page: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &ConsentPageError{StatusCode: resp.StatusCode, Text: pageErrorText(doc)}
	}
	form := findConsentForm(doc)
	if form == nil {
		return nil, fmt.Errorf("sandbox consent: %s has no consent form", resp.Request.URL)
	}
	pageURL := resp.Request.URL

	values, err := fillConsentForm(form, email, action, untick)
	if err != nil {
		return nil, err
	}
	target, err := pageURL.Parse(attr(form, "action"))
	if err != nil {
		return nil, fmt.Errorf("sandbox consent: form action: %w", err)
	}
	post, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), strings.NewReader(values.Encode()))
	if err != nil {
		return nil, fmt.Errorf("sandbox consent: %w", err)
	}
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")

	noFollow := *client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = noFollow.Do(post)
	if err != nil {
		return nil, fmt.Errorf("sandbox consent: submit: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 300 || resp.StatusCode > 399 {
		doc, perr := html.Parse(io.LimitReader(resp.Body, 1<<20))
		text := http.StatusText(resp.StatusCode)
		if perr == nil {
			text = pageErrorText(doc)
		}
		return nil, &ConsentPageError{StatusCode: resp.StatusCode, Text: text}
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("sandbox consent: redirect without Location: %w", err)
	}
	return loc, nil
}

// fillConsentForm collects what a browser would submit: hidden fields as
// they are, the email, the ticked boxes minus untick, and the button.
func fillConsentForm(form *html.Node, email, action string, untick []string) (url.Values, error) {
	v := url.Values{}
	matched := make([]bool, len(untick))
	haveEmail, haveButton := false, false
	for n := range form.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		name := attr(n, "name")
		switch n.Data {
		case "input":
			if name == "" {
				continue
			}
			switch strings.ToLower(attr(n, "type")) {
			case "hidden":
				v.Add(name, attr(n, "value"))
			case "email", "text":
				if name == "email" {
					v.Set(name, email)
					haveEmail = true
				} else {
					v.Add(name, attr(n, "value"))
				}
			case "checkbox":
				if !hasAttr(n, "checked") {
					continue
				}
				val := attr(n, "value")
				drop := false
				for i, u := range untick {
					if scopeMatches(val, u) {
						matched[i], drop = true, true
					}
				}
				if !drop {
					v.Add(name, val)
				}
			}
		case "button":
			if name == "action" && attr(n, "value") == action {
				haveButton = true
			}
		}
	}
	if i := slices.Index(matched, false); i >= 0 {
		return nil, fmt.Errorf("sandbox consent: no ticked scope matches %q", untick[i])
	}
	if !haveEmail {
		return nil, errors.New("sandbox consent: the form has no email field")
	}
	if !haveButton {
		return nil, fmt.Errorf("sandbox consent: the form has no %q button", action)
	}
	v.Set("action", action)
	return v, nil
}

// scopeMatches lets tests untick "gmail.send" or "email" instead of the full
// scope URL.
func scopeMatches(scope, name string) bool {
	if scope == name {
		return true
	}
	if long, ok := scopeAliases[name]; ok && long == scope {
		return true
	}
	return strings.HasSuffix(scope, "/"+name)
}

func findConsentForm(doc *html.Node) *html.Node {
	var fallback *html.Node
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode || n.Data != "form" {
			continue
		}
		if attr(n, "id") == "consent" {
			return n
		}
		for d := range n.Descendants() {
			if d.Type == html.ElementNode && d.Data == "button" && attr(d, "name") == "action" && fallback == nil {
				fallback = n
			}
		}
	}
	return fallback
}

// pageErrorText finds what went wrong on a sandbox page: the error heading,
// else the consent form's problem line, else the title.
func pageErrorText(doc *html.Node) string {
	var title, problem string
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		switch {
		case attr(n, "id") == "error":
			return strings.TrimSpace(textOf(n))
		case attr(n, "id") == "problem":
			problem = strings.TrimSpace(textOf(n))
		case n.Data == "title" && title == "":
			title = strings.TrimSpace(textOf(n))
		}
	}
	if problem != "" {
		return problem
	}
	return title
}

func textOf(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return b.String()
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	return slices.ContainsFunc(n.Attr, func(a html.Attribute) bool { return a.Key == key })
}
