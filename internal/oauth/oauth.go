// Package oauth is gmail-relay's side of Google's OAuth 2.0 web-server flow:
// the consent URL (least-privilege scopes, offline access, PKCE S256), the
// stateless signed state, the code exchange, the identity read from the ID
// token, token refresh and revocation, and the translation of Google's error
// codes into a message and a fix a person can act on.
package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailrelay/gmailrelay/internal/account"
)

// Scopes. gmail.send is the only Gmail scope the relay ever asks for: it can
// send but not read, list or delete mail. openid and email let the relay learn
// which mailbox was connected without any Gmail read scope.
const (
	ScopeOpenID    = "openid"
	ScopeEmail     = "email"
	ScopeGmailSend = "https://www.googleapis.com/auth/gmail.send"
)

// Scopes is what the consent screen asks for, and nothing broader.
var Scopes = []string{ScopeOpenID, ScopeEmail, ScopeGmailSend}

// Google's ID tokens carry one of these issuers.
var googleIssuers = []string{"https://accounts.google.com", "accounts.google.com"}

// Config is what a Client needs.
type Config struct {
	ClientID     string
	ClientSecret string
	RedirectURL  string
	AuthURL      string
	TokenURL     string
	RevokeURL    string
	// HTTPClient carries every call to Google; nil means a client with a
	// 30-second timeout.
	HTTPClient *http.Client
	Now        func() time.Time
}

// Client talks to Google's OAuth endpoints as one OAuth client.
type Client struct {
	conf      *oauth2.Config
	revokeURL string
	hc        *http.Client
	now       func() time.Time
	keys      *StateKeys
}

// New checks c and returns a Client.
func New(c Config) (*Client, error) {
	var errs []error
	if c.ClientID == "" {
		errs = append(errs, errors.New("client ID is empty"))
	}
	if c.AuthURL == "" || c.TokenURL == "" || c.RevokeURL == "" {
		errs = append(errs, errors.New("an endpoint URL is empty"))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	keys, err := NewStateKeys(c.ClientSecret, c.Now)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("oauth.New: %w", err)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{
		conf: &oauth2.Config{
			ClientID:     c.ClientID,
			ClientSecret: c.ClientSecret,
			RedirectURL:  c.RedirectURL,
			Scopes:       Scopes,
			Endpoint: oauth2.Endpoint{
				AuthURL:   c.AuthURL,
				TokenURL:  c.TokenURL,
				AuthStyle: oauth2.AuthStyleInParams,
			},
		},
		revokeURL: c.RevokeURL,
		hc:        hc,
		now:       c.Now,
		keys:      keys,
	}, nil
}

// ClientID returns the OAuth client ID.
func (c *Client) ClientID() string { return c.conf.ClientID }

// RedirectURL returns the redirect URI sent in both steps of the flow.
func (c *Client) RedirectURL() string { return c.conf.RedirectURL }

// Keys returns the state keys.
func (c *Client) Keys() *StateKeys { return c.keys }

func (c *Client) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.hc)
}

// ConsentURL is Google's consent screen for one state. prompt=consent is what
// makes Google return a refresh token every time. There is no
// include_granted_scopes: it would fold scopes granted earlier to the same
// client into this grant, and the relay keeps only a grant of exactly
// Scopes (see Grant.ExtraScopes).
func (c *Client) ConsentURL(iss *Issued, loginHint, hostedDomain string) string {
	opts := []oauth2.AuthCodeOption{
		oauth2.AccessTypeOffline,
		oauth2.ApprovalForce,
		oauth2.S256ChallengeOption(iss.Verifier),
	}
	if loginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", loginHint))
	}
	if hostedDomain != "" {
		opts = append(opts, oauth2.SetAuthURLParam("hd", hostedDomain))
	}
	return c.conf.AuthCodeURL(iss.State, opts...)
}

// Identity is who connected, from the ID token's claims.
type Identity struct {
	Email         string
	EmailVerified bool
	HostedDomain  string
	Subject       string
}

// Grant is the result of a successful exchange.
type Grant struct {
	Identity
	Scopes       []string
	RefreshToken string
	Token        *oauth2.Token
	IssuedAt     time.Time
}

// LogValue keeps tokens out of logs.
func (g *Grant) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("email", g.Email),
		slog.String("scopes", strings.Join(g.Scopes, " ")),
		slog.Bool("has_refresh_token", g.RefreshToken != ""))
}

// HasScope reports whether s was granted.
func (g *Grant) HasScope(s string) bool { return slices.Contains(g.Scopes, s) }

// scopeEmailLong is the form Google reports the email scope in.
const scopeEmailLong = "https://www.googleapis.com/auth/userinfo.email"

// ExtraScopes returns the granted scopes beyond Scopes. A token that can do
// more than send (a consent URL edited to ask for https://mail.google.com/,
// say) is more than the relay may hold, so confirm refuses and revokes it.
func (g *Grant) ExtraScopes() []string {
	var extra []string
	for _, s := range g.Scopes {
		if !slices.Contains(Scopes, s) && s != scopeEmailLong {
			extra = append(extra, s)
		}
	}
	return extra
}

// Exchange trades an authorization code for tokens, sending the PKCE
// verifier, and reads the identity from the ID token. A Google error comes
// back as *oauth2.RetrieveError; see Explain.
func (c *Client) Exchange(ctx context.Context, code, verifier string) (*Grant, error) {
	tok, err := c.conf.Exchange(c.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("oauth.Exchange: %w", err)
	}
	g := &Grant{Token: tok, RefreshToken: tok.RefreshToken, IssuedAt: c.now()}
	if s, _ := tok.Extra("scope").(string); s != "" {
		g.Scopes = strings.Fields(s)
	}
	raw, _ := tok.Extra("id_token").(string)
	id, err := c.identity(raw)
	if err != nil {
		// The grant exists at Google even though we refuse it; callers revoke.
		return g, fmt.Errorf("oauth.Exchange: %w", err)
	}
	g.Identity = *id
	return g, nil
}

// ErrIdentity means the ID token is missing or does not identify a verified
// Google account for this client.
var ErrIdentity = errors.New("oauth: the ID token does not identify a verified account for this client")

// identity reads the ID token's claims. The token came straight from Google's
// token endpoint over TLS in answer to our own authenticated request, which
// OpenID Connect Core §3.1.3.7 accepts in place of checking the signature; the
// claims are still checked.
func (c *Client) identity(raw string) (*Identity, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: Google returned no ID token (was the openid scope granted?)", ErrIdentity)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: malformed ID token", ErrIdentity)
	}
	body, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("%w: malformed ID token payload", ErrIdentity)
	}
	var claims struct {
		Iss           string          `json:"iss"`
		Aud           json.RawMessage `json:"aud"`
		Sub           string          `json:"sub"`
		Email         string          `json:"email"`
		EmailVerified any             `json:"email_verified"`
		HD            string          `json:"hd"`
		Exp           int64           `json:"exp"`
	}
	if err := json.Unmarshal(body, &claims); err != nil {
		return nil, fmt.Errorf("%w: malformed ID token claims", ErrIdentity)
	}
	if !slices.Contains(googleIssuers, claims.Iss) {
		return nil, fmt.Errorf("%w: issuer %q is not Google", ErrIdentity, claims.Iss)
	}
	if !audienceContains(claims.Aud, c.conf.ClientID) {
		return nil, fmt.Errorf("%w: audience is not this client", ErrIdentity)
	}
	if claims.Exp != 0 && c.now().After(time.Unix(claims.Exp, 0).Add(5*time.Minute)) {
		return nil, fmt.Errorf("%w: ID token expired", ErrIdentity)
	}
	if claims.Email == "" {
		return nil, fmt.Errorf("%w: no email claim (was the email scope granted?)", ErrIdentity)
	}
	verified := claims.EmailVerified == true || claims.EmailVerified == "true"
	return &Identity{
		Email:         account.Normalize(claims.Email),
		EmailVerified: verified,
		HostedDomain:  strings.ToLower(claims.HD),
		Subject:       claims.Sub,
	}, nil
}

func audienceContains(raw json.RawMessage, clientID string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == clientID
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return slices.Contains(many, clientID)
	}
	return false
}

// Refresh uses a refresh token once and returns the new token. Google may
// return a new refresh token; callers store it when it differs.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	tok, err := c.conf.TokenSource(c.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return nil, fmt.Errorf("oauth.Refresh: %w", err)
	}
	return tok, nil
}

// TokenSource returns a source that refreshes with refreshToken as needed.
func (c *Client) TokenSource(ctx context.Context, t *oauth2.Token) oauth2.TokenSource {
	return c.conf.TokenSource(c.ctx(ctx), t)
}

// Revoke revokes a grant at Google (either of its tokens revokes both). A
// token Google no longer knows is already revoked, so that is success.
func (c *Client) Revoke(ctx context.Context, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.revokeURL,
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return fmt.Errorf("oauth.Revoke: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("oauth.Revoke: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Error == "invalid_token" || e.Error == "invalid_grant") {
		return nil
	}
	return fmt.Errorf("oauth.Revoke: Google answered %d %s", resp.StatusCode, e.Error)
}

// IsInvalidGrant reports whether err (from an exchange, a refresh, or a
// Gmail call that refreshed underneath) says the grant is dead: revoked,
// expired, or a code already used.
func IsInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}
