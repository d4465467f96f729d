package sandbox

import (
	"html/template"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// scopeAliases maps the short scope names Google accepts to the long forms
// it reports back.
var scopeAliases = map[string]string{
	"email":   ScopeEmail,
	"profile": ScopeProfile,
}

// scopeLabels are the lines of Google's consent screen.
var scopeLabels = map[string]string{
	ScopeGmailSend:    "Send email on your behalf",
	ScopeEmail:        "See your primary Google Account email address",
	ScopeOpenID:       "Associate you with your personal info on Google",
	ScopeProfile:      "See your personal info, including any personal info you've made publicly available",
	ScopeMailGoogle:   "Read, compose, send, and permanently delete all your email from Gmail",
	ScopeGmailCompose: "Manage drafts and send emails",
	ScopeGmailModify:  "Read, compose, and send emails from your Gmail account",
	ScopeGmailRead:    "View your email messages and settings",
}

// authParams are the request parameters that ride through the consent form
// in hidden fields, in this order.
var authParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state",
	"access_type", "prompt", "include_granted_scopes", "login_hint", "hd",
	"code_challenge", "code_challenge_method", "nonce",
}

// pkceValue is RFC 7636's shape for a code_verifier or S256 challenge.
var pkceValue = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// authRequest is a validated authorization request.
type authRequest struct {
	Params        url.Values
	Client        Client
	RedirectURI   string
	Scopes        []string // normalized, deduplicated, in request order
	Offline       bool
	PromptConsent bool
	PromptNone    bool
	IncludeOld    bool
	Challenge     string
	Method        string
}

// pageError is an error Google shows on its own page instead of redirecting:
// the user never reaches the client.
type pageError struct {
	Status  int
	Code    string // e.g. redirect_uri_mismatch
	Title   string // e.g. "Access blocked: This app's request is invalid"
	Message string
	Details string
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.showConsent(w, r)
	case http.MethodPost:
		s.submitConsent(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// parseAuthRequest validates in Google's order: the client first, then the
// redirect URI (a mismatch is shown, never redirected to), then the rest.
func (s *Server) parseAuthRequest(q url.Values) (*authRequest, *pageError) {
	clientID := q.Get("client_id")
	if clientID == "" {
		return nil, invalidRequest("Missing required parameter: client_id")
	}
	s.mu.Lock()
	c, ok := s.st.Clients[clientID]
	s.mu.Unlock()
	if !ok {
		return nil, &pageError{
			Status: http.StatusUnauthorized, Code: "invalid_client",
			Title: "Access blocked: Authorization Error", Message: "The OAuth client was not found.",
		}
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		return nil, invalidRequest("Missing required parameter: redirect_uri")
	}
	if !slices.Contains(c.RedirectURIs, redirect) {
		return nil, &pageError{
			Status: http.StatusBadRequest, Code: "redirect_uri_mismatch",
			Title:   "Access blocked: This app's request is invalid",
			Message: "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. If you're the app developer, register the redirect URI in the Google Cloud Console.",
			Details: "redirect_uri=" + redirect,
		}
	}
	if u, err := url.Parse(redirect); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, invalidRequest("Invalid parameter value for redirect_uri: Missing scheme or host")
	}

	switch rt := q.Get("response_type"); rt {
	case "":
		return nil, invalidRequest("Missing required parameter: response_type")
	case "code":
	default:
		return nil, &pageError{
			Status: http.StatusBadRequest, Code: "unsupported_response_type",
			Title:   "Access blocked: This app's request is invalid",
			Message: "Unsupported response_type: " + rt + ". The sandbox serves the authorization code flow only.",
		}
	}

	raw := strings.Fields(q.Get("scope"))
	if len(raw) == 0 {
		return nil, invalidRequest("Missing required parameter: scope")
	}
	var scopes, invalid []string
	for _, sc := range raw {
		if long, ok := scopeAliases[sc]; ok {
			sc = long
		}
		if !knownScope(sc) {
			invalid = append(invalid, sc)
			continue
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	if len(invalid) > 0 {
		return nil, &pageError{
			Status: http.StatusBadRequest, Code: "invalid_scope",
			Title:   "Access blocked: This app's request is invalid",
			Message: "Some requested scopes were invalid. {invalid=[" + strings.Join(invalid, ", ") + "]}",
		}
	}

	ar := &authRequest{Params: q, Client: c, RedirectURI: redirect, Scopes: scopes}
	switch at := q.Get("access_type"); at {
	case "", "online":
	case "offline":
		ar.Offline = true
	default:
		return nil, invalidRequest("Invalid access_type: " + at)
	}
	for _, p := range strings.Fields(q.Get("prompt")) {
		switch p {
		case "consent":
			ar.PromptConsent = true
		case "none":
			ar.PromptNone = true
		case "select_account":
		default:
			return nil, invalidRequest("Invalid prompt: " + p)
		}
	}
	if ar.PromptNone && len(strings.Fields(q.Get("prompt"))) > 1 {
		return nil, invalidRequest("Invalid prompt: none cannot be combined with other values")
	}
	ar.IncludeOld = q.Get("include_granted_scopes") == "true"

	ar.Challenge = q.Get("code_challenge")
	ar.Method = q.Get("code_challenge_method")
	switch {
	case ar.Challenge == "" && ar.Method != "":
		return nil, invalidRequest("Missing required parameter: code_challenge")
	case ar.Challenge != "":
		if ar.Method == "" {
			ar.Method = "plain" // RFC 7636's default
		}
		if ar.Method != "S256" && ar.Method != "plain" {
			return nil, invalidRequest("Invalid code_challenge_method value.")
		}
		if !pkceValue.MatchString(ar.Challenge) {
			return nil, invalidRequest("Invalid code_challenge value.")
		}
	}
	return ar, nil
}

func invalidRequest(msg string) *pageError {
	return &pageError{
		Status: http.StatusBadRequest, Code: "invalid_request",
		Title: "Access blocked: This app's request is invalid", Message: msg,
	}
}

func knownScope(sc string) bool {
	if _, ok := scopeLabels[sc]; ok {
		return true
	}
	return strings.HasPrefix(sc, "https://www.googleapis.com/auth/")
}

func scopeLabel(sc string) string {
	if l, ok := scopeLabels[sc]; ok {
		return l
	}
	return sc
}

func (s *Server) showConsent(w http.ResponseWriter, r *http.Request) {
	ar, perr := s.parseAuthRequest(r.URL.Query())
	if perr != nil {
		s.renderError(w, perr)
		return
	}
	if ar.PromptNone {
		s.promptNone(w, r, ar)
		return
	}
	s.renderConsent(w, http.StatusOK, ar, ar.Params.Get("login_hint"), "")
}

// promptNone answers without a page, as Google does: with a code when the
// hinted account already granted every scope, with an error otherwise.
func (s *Server) promptNone(w http.ResponseWriter, r *http.Request, ar *authRequest) {
	email := normalizeEmail(ar.Params.Get("login_hint"))
	if email == "" {
		s.redirectError(w, r, ar, "login_required")
		return
	}
	s.mu.Lock()
	g := s.st.Grants[grantKey(ar.Client.ID, email)]
	covered := g != nil
	for _, sc := range ar.Scopes {
		if covered && !slices.Contains(g.Scopes, sc) {
			covered = false
		}
	}
	s.mu.Unlock()
	if !covered {
		s.redirectError(w, r, ar, "consent_required")
		return
	}
	s.approve(w, r, ar, email, ar.Scopes)
}

type consentScope struct {
	Value string
	Label string
}

type consentPage struct {
	Action   string
	Client   string
	Email    string
	Problem  string
	Hidden   []hiddenField
	Scopes   []consentScope
	Redirect string
}

type hiddenField struct{ Name, Value string }

func (s *Server) renderConsent(w http.ResponseWriter, status int, ar *authRequest, email, problem string) {
	p := consentPage{
		Action: AuthPath, Client: ar.Client.ID, Email: email, Problem: problem,
		Redirect: ar.RedirectURI,
	}
	for _, name := range authParams {
		if v, ok := ar.Params[name]; ok && len(v) > 0 {
			p.Hidden = append(p.Hidden, hiddenField{name, v[0]})
		}
	}
	for _, sc := range ar.Scopes {
		p.Scopes = append(p.Scopes, consentScope{Value: sc, Label: scopeLabel(sc)})
	}
	writeHTML(w, status, consentTmpl, p)
}

func (s *Server) submitConsent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, invalidRequest("The consent form could not be read."))
		return
	}
	// Validate the hidden fields again: they came back from the browser.
	q := url.Values{}
	for _, name := range authParams {
		if v, ok := r.PostForm[name]; ok {
			q[name] = v
		}
	}
	ar, perr := s.parseAuthRequest(q)
	if perr != nil {
		s.renderError(w, perr)
		return
	}
	email := normalizeEmail(r.PostForm.Get("email"))
	switch r.PostForm.Get("action") {
	case "deny":
		s.redirectError(w, r, ar, "access_denied")
		return
	case "allow":
	default:
		s.renderConsent(w, http.StatusBadRequest, ar, email, "Choose Allow or Deny.")
		return
	}
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email || !strings.Contains(email, "@") {
		s.renderConsent(w, http.StatusBadRequest, ar, r.PostForm.Get("email"), "Enter a valid email address.")
		return
	}
	s.mu.Lock()
	deny := s.knobs.denyWith[email]
	s.mu.Unlock()
	if deny != "" {
		s.redirectError(w, r, ar, deny)
		return
	}
	ticked := r.PostForm["grant"]
	var granted []string
	for _, sc := range ar.Scopes {
		if slices.Contains(ticked, sc) {
			granted = append(granted, sc)
		}
	}
	s.approve(w, r, ar, email, granted)
}

// approve records the consent, mints a code and sends the browser back.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, ar *authRequest, email string, granted []string) {
	now := s.now()
	key := grantKey(ar.Client.ID, email)

	s.mu.Lock()
	g := s.st.Grants[key]
	// A refresh token comes with the first offline consent, or with any
	// offline consent the user was explicitly prompted for.
	issueRefresh := ar.Offline && (ar.PromptConsent || g == nil || !g.Offline)
	if ar.IncludeOld && g != nil {
		for _, sc := range g.Scopes {
			if !slices.Contains(granted, sc) {
				granted = append(granted, sc)
			}
		}
	}
	if g == nil {
		g = &grant{ClientID: ar.Client.ID, Email: email}
		s.st.Grants[key] = g
	}
	for _, sc := range granted {
		if !slices.Contains(g.Scopes, sc) {
			g.Scopes = append(g.Scopes, sc)
		}
	}
	g.Offline = g.Offline || ar.Offline
	g.GrantedAt = now
	s.stateV++

	code := newAuthCode()
	s.codes[hashToken(code)] = &authCode{
		ClientID:     ar.Client.ID,
		RedirectURI:  ar.RedirectURI,
		Email:        email,
		Scopes:       slices.Clone(granted),
		Challenge:    ar.Challenge,
		Method:       ar.Method,
		Nonce:        ar.Params.Get("nonce"),
		IssueRefresh: issueRefresh,
		Expiry:       now.Add(codeLifetime),
	}
	s.mu.Unlock()
	s.saveOrLog()

	s.log.Info("sandbox: consent granted", "client_id", ar.Client.ID, "email", email, "scopes", strings.Join(granted, " "))
	extra := url.Values{}
	extra.Set("code", code)
	extra.Set("scope", strings.Join(granted, " "))
	extra.Set("authuser", "0")
	s.mu.Lock()
	hd := s.hostedDomainLocked(email)
	s.mu.Unlock()
	if hd != "" {
		extra.Set("hd", hd)
	}
	if !ar.PromptNone {
		extra.Set("prompt", "consent")
	}
	s.redirectBack(w, r, ar, extra)
}

func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, ar *authRequest, code string) {
	s.log.Info("sandbox: authorization refused", "client_id", ar.Client.ID, "error", code)
	extra := url.Values{}
	extra.Set("error", code)
	s.redirectBack(w, r, ar, extra)
}

// redirectBack appends the answer to the registered redirect URI, keeping
// its own query and the state byte for byte.
func (s *Server) redirectBack(w http.ResponseWriter, r *http.Request, ar *authRequest, extra url.Values) {
	u, err := url.Parse(ar.RedirectURI)
	if err != nil {
		s.renderError(w, invalidRequest("Invalid parameter value for redirect_uri"))
		return
	}
	q := u.Query()
	for k, v := range extra {
		q[k] = v
	}
	if st, ok := ar.Params["state"]; ok && len(st) > 0 {
		q.Set("state", st[0])
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (s *Server) renderError(w http.ResponseWriter, e *pageError) {
	writeHTML(w, e.Status, errorTmpl, e)
}

func writeHTML(w http.ResponseWriter, status int, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = t.Execute(w, data) // the status is sent; a broken pipe has no one to tell
}

const pageStyle = `<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#202124}
h1{font-weight:400}.banner{background:#fef7e0;border:1px solid #f9ab00;padding:.5rem 1rem;border-radius:4px}
.problem{color:#d93025}label{display:block;margin:.5rem 0}button{margin-right:1rem;padding:.5rem 1.5rem}
code,pre{background:#f1f3f4;padding:.1rem .3rem}table{border-collapse:collapse}td,th{border:1px solid #dadce0;padding:.2rem .5rem;text-align:left;overflow-wrap:anywhere}
body.wide{max-width:75rem}
</style>`

var consentTmpl = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in with Google (sandbox)</title>` + pageStyle + `</head>
<body>
<p class="banner">This is the gmail-relay sandbox, a local imitation of Google. Nothing here reaches Google; no password is asked.</p>
<h1>Sign in with Google (sandbox)</h1>
<p><code>{{.Client}}</code> wants to access your Google Account.</p>
{{if .Problem}}<p class="problem" id="problem">{{.Problem}}</p>{{end}}
<form id="consent" method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label>Email <input type="email" name="email" value="{{.Email}}" required autofocus></label>
<p>Select what it can access:</p>
{{range .Scopes}}<label><input type="checkbox" name="grant" value="{{.Value}}" checked> {{.Label}} <small><code>{{.Value}}</code></small></label>
{{end}}<p>You will be sent back to <code>{{.Redirect}}</code>.</p>
<button type="submit" name="action" value="allow">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
</body></html>
`))

var errorTmpl = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Error {{.Status}}: {{.Code}}</title>` + pageStyle + `</head>
<body>
<p class="banner">gmail-relay sandbox</p>
<h2>{{.Title}}</h2>
<p>{{.Message}}</p>
<h1 id="error">Error {{.Status}}: {{.Code}}</h1>
{{if .Details}}<p>Request details: <code>{{.Details}}</code></p>{{end}}
</body></html>
`))
