package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// The control surface mirrors the Go knobs over HTTP, for `make dev`,
// scripts and tests in other processes. Requests and answers are JSON.
//
//	GET    /sandbox/              index page (HTML): what this is, accounts, outbox
//	GET    /sandbox/outbox        accepted messages, oldest first
//	GET    /sandbox/outbox/{id}   one message, as sent (text/plain)
//	GET    /sandbox/accounts      consents and live token counts
//	GET    /sandbox/stats         counters
//	POST   /sandbox/revoke        {"refresh_token": "..."} or {"email": "..."}
//	POST   /sandbox/expire        {"email": "..."}
//	POST   /sandbox/latency       {"latency": "250ms"}
//	POST   /sandbox/faults        {"email": "", "fault": "RateLimit429", "count": 1}, or a verbatim
//	                              {"email": "", "response": {"status": 429, "headers": {"Retry-After": "30"},
//	                              "body": "..."}, "count": 1, "endpoint": "send" or "token"}
//	POST   /sandbox/consumer      {"domain": "example.org", "consumer": true}: no Gmail, no hd
//	DELETE /sandbox/faults        drop queued faults
//	POST   /sandbox/fault-rates   {"seed": 1, "rates": {"ServerError500": 0.05}}
//	POST   /sandbox/rate          {"per_second": 1, "burst": 5}
//	POST   /sandbox/deny          {"email": "...", "error": "admin_policy_enforced"}
//	POST   /sandbox/verified      {"email": "...", "verified": false}
//	POST   /sandbox/rotate        {"enabled": true}
//	POST   /sandbox/reset         knobs and counters back to defaults
//	POST   /sandbox/aliases       {"email": "...", "aliases": ["sales@example.com"]}: send-as aliases
//	POST   /sandbox/delegation    {"domain": "example.net", "client_id": "..." or "service_account": "...",
//	                              "scopes": ["https://www.googleapis.com/auth/gmail.send"], "enabled": true}
//	POST   /sandbox/delegation/users {"email": "...", "state": "unknown", "suspended" or "active"}
func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /sandbox/{$}", s.handleIndex)
	mux.HandleFunc("GET /sandbox/outbox", func(w http.ResponseWriter, r *http.Request) {
		out := s.Outbox()
		if out == nil {
			out = []OutboxMessage{}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /sandbox/outbox/{id}", s.handleOutboxMessage)
	mux.HandleFunc("GET /sandbox/accounts", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.accounts())
	})
	mux.HandleFunc("GET /sandbox/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("POST /sandbox/revoke", s.ctlRevoke)
	mux.HandleFunc("POST /sandbox/expire", s.ctlExpire)
	mux.HandleFunc("POST /sandbox/latency", s.ctlLatency)
	mux.HandleFunc("POST /sandbox/faults", s.ctlFaults)
	mux.HandleFunc("DELETE /sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearGmailErrors()
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /sandbox/fault-rates", s.ctlFaultRates)
	mux.HandleFunc("POST /sandbox/consumer", s.ctlConsumer)
	mux.HandleFunc("POST /sandbox/rate", s.ctlRate)
	mux.HandleFunc("POST /sandbox/deny", s.ctlDeny)
	mux.HandleFunc("POST /sandbox/verified", s.ctlVerified)
	mux.HandleFunc("POST /sandbox/rotate", s.ctlRotate)
	mux.HandleFunc("POST /sandbox/aliases", s.ctlAliases)
	mux.HandleFunc("POST /sandbox/delegation", s.ctlDelegation)
	mux.HandleFunc("POST /sandbox/delegation/users", s.ctlDelegatedUser)
	mux.HandleFunc("POST /sandbox/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
}

type ctlError struct {
	Error string `json:"error"`
}

// decodeControl reads a JSON control request strictly, so that a misspelt
// field is an error rather than a silent default.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, ctlError{"invalid JSON body: " + err.Error()})
		return false
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		writeJSON(w, http.StatusBadRequest, ctlError{"invalid JSON body: more than one value"})
		return false
	}
	return true
}

func (s *Server) ctlRevoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
		Email        string `json:"email"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	switch {
	case (req.RefreshToken == "") == (req.Email == ""):
		writeJSON(w, http.StatusBadRequest, ctlError{"give exactly one of refresh_token and email"})
	case req.RefreshToken != "":
		if !s.RevokeRefreshToken(req.RefreshToken) {
			writeJSON(w, http.StatusNotFound, ctlError{"no live refresh token matches"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"revoked": 1})
	default:
		writeJSON(w, http.StatusOK, map[string]int{"revoked": s.RevokeAll(req.Email)})
	}
}

func (s *Server) ctlExpire(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email string `json:"email"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Email) == "" {
		writeJSON(w, http.StatusBadRequest, ctlError{"email is required"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"expired": s.ExpireAccessTokens(req.Email)})
}

func (s *Server) ctlLatency(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Latency string `json:"latency"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	d, err := time.ParseDuration(req.Latency)
	if err != nil || d < 0 {
		writeJSON(w, http.StatusBadRequest, ctlError{"latency must be a non-negative Go duration such as \"250ms\""})
		return
	}
	s.SetLatency(d)
	writeJSON(w, http.StatusOK, map[string]string{"latency": d.String()})
}

func (s *Server) ctlFaults(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string    `json:"email"`
		Fault    Fault     `json:"fault"`
		Response *Response `json:"response"`
		Endpoint Endpoint  `json:"endpoint"`
		Count    *int      `json:"count"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	n := 1
	if req.Count != nil {
		n = *req.Count
	}
	var err error
	switch {
	case (req.Fault == "") == (req.Response == nil):
		err = errors.New("give exactly one of fault and response")
	case req.Response != nil && (req.Endpoint == "" || req.Endpoint == EndpointSend):
		err = s.InjectResponse(req.Email, *req.Response, n)
	case req.Response != nil && req.Endpoint == EndpointToken:
		err = s.InjectTokenResponse(req.Email, *req.Response, n)
	case req.Response != nil:
		err = fmt.Errorf("endpoint must be %q (the default) or %q", EndpointSend, EndpointToken)
	case req.Endpoint != "" && req.Endpoint != req.Fault.endpoint():
		err = fmt.Errorf("a named fault is served where it belongs (%s at %q); leave endpoint out", req.Fault, req.Fault.endpoint())
	default:
		if err = s.InjectGmailErrors(req.Email, req.Fault, n); err != nil {
			err = fmt.Errorf("%v; faults: %v", err, allFaults)
		}
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ctlError{err.Error()})
		return
	}
	out := map[string]any{"email": normalizeEmail(req.Email), "count": n}
	if req.Response != nil {
		out["response"] = req.Response
		out["endpoint"] = orEndpoint(req.Endpoint)
	} else {
		out["fault"] = req.Fault
		out["endpoint"] = req.Fault.endpoint()
	}
	writeJSON(w, http.StatusOK, out)
}

func orEndpoint(e Endpoint) Endpoint {
	if e == "" {
		return EndpointSend
	}
	return e
}

func (s *Server) ctlConsumer(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Domain   string `json:"domain"`
		Consumer *bool  `json:"consumer"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	d := strings.TrimSpace(req.Domain)
	if d == "" || strings.Contains(d, "@") || req.Consumer == nil {
		writeJSON(w, http.StatusBadRequest, ctlError{"domain (without @) and consumer are required"})
		return
	}
	s.SetConsumerDomain(d, *req.Consumer)
	writeJSON(w, http.StatusOK, map[string]any{"domain": strings.ToLower(d), "consumer": *req.Consumer})
}

func (s *Server) ctlFaultRates(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Seed  int64             `json:"seed"`
		Rates map[Fault]float64 `json:"rates"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if err := s.SetFaultRates(req.Seed, req.Rates); err != nil {
		writeJSON(w, http.StatusBadRequest, ctlError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) ctlRate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PerSecond float64 `json:"per_second"`
		Burst     int     `json:"burst"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if req.PerSecond < 0 || req.Burst < 0 {
		writeJSON(w, http.StatusBadRequest, ctlError{"per_second and burst must not be negative (0 removes the limit)"})
		return
	}
	s.SetSendRate(req.PerSecond, req.Burst)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) ctlDeny(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email string `json:"email"`
		Error string `json:"error"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Email) == "" {
		writeJSON(w, http.StatusBadRequest, ctlError{"email is required"})
		return
	}
	if req.Error != "" && !oauthErrorCode.MatchString(req.Error) {
		writeJSON(w, http.StatusBadRequest, ctlError{"error must be an OAuth error code such as admin_policy_enforced"})
		return
	}
	s.DenyWithError(req.Email, req.Error)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) ctlVerified(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string `json:"email"`
		Verified *bool  `json:"verified"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Email) == "" || req.Verified == nil {
		writeJSON(w, http.StatusBadRequest, ctlError{"email and verified are required"})
		return
	}
	s.SetEmailVerified(req.Email, *req.Verified)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) ctlRotate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if req.Enabled == nil {
		writeJSON(w, http.StatusBadRequest, ctlError{"enabled is required"})
		return
	}
	s.RotateRefreshTokens(*req.Enabled)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) handleOutboxMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	i := slices.IndexFunc(s.outbox, func(m OutboxMessage) bool { return m.ID == id })
	var msg OutboxMessage
	if i >= 0 {
		msg = s.outbox[i]
	}
	s.mu.Unlock()
	if i < 0 {
		writeJSON(w, http.StatusNotFound, ctlError{"no message with that id"})
		return
	}
	f, err := os.Open(msg.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			writeJSON(w, http.StatusGone, ctlError{"the message file was removed"})
			return
		}
		writeJSON(w, http.StatusInternalServerError, ctlError{"open message file"})
		return
	}
	defer f.Close()
	// text/plain so that a browser shows it rather than downloading it.
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = io.Copy(w, f)
}

// Account is one consent as the control surface reports it.
type Account struct {
	Email         string    `json:"email"`
	ClientID      string    `json:"client_id"`
	Scopes        []string  `json:"scopes"`
	GrantedAt     time.Time `json:"granted_at"`
	RefreshTokens int       `json:"refresh_tokens"`
	AccessTokens  int       `json:"access_tokens"`
}

func (s *Server) accounts() []Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := []Account{}
	for _, g := range s.st.Grants {
		a := Account{Email: g.Email, ClientID: g.ClientID, Scopes: slices.Clone(g.Scopes), GrantedAt: g.GrantedAt}
		for _, rt := range s.st.Refresh {
			if rt.ClientID == g.ClientID && rt.Email == g.Email {
				a.RefreshTokens++
			}
		}
		for _, at := range s.st.Access {
			if at.ClientID == g.ClientID && at.Email == g.Email && now.Before(at.Expiry) {
				a.AccessTokens++
			}
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Email != out[j].Email {
			return out[i].Email < out[j].Email
		}
		return out[i].ClientID < out[j].ClientID
	})
	return out
}

type indexClient struct {
	ID           string
	RedirectURIs []string
}

type indexPage struct {
	Clients  []indexClient
	Accounts []Account
	Outbox   []OutboxMessage
	Shown    int
	Total    int
	Stats    Stats
	Latency  time.Duration
	Faults   []string
	Rate     string
	Rotate   bool
	Dir      string
}

// indexOutboxLimit bounds the index page; /sandbox/outbox lists everything.
const indexOutboxLimit = 200

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	p := indexPage{Accounts: s.accounts(), Stats: s.Stats(), Dir: s.outboxDir}
	s.mu.Lock()
	for _, c := range s.st.Clients {
		p.Clients = append(p.Clients, indexClient{c.ID, slices.Clone(c.RedirectURIs)})
	}
	p.Total = len(s.outbox)
	for i := len(s.outbox) - 1; i >= 0 && len(p.Outbox) < indexOutboxLimit; i-- {
		p.Outbox = append(p.Outbox, s.outbox[i])
	}
	p.Latency = s.knobs.latency
	for _, inj := range s.knobs.injections {
		who := inj.email
		if who == "" {
			who = "any account"
		}
		n := "forever"
		if inj.remaining > 0 {
			n = fmt.Sprintf("%d more", inj.remaining)
		}
		what := string(inj.fault)
		if inj.resp != nil {
			what = fmt.Sprintf("verbatim %d", inj.resp.Status)
		}
		if inj.at == EndpointToken {
			what += " at the token endpoint"
		}
		p.Faults = append(p.Faults, fmt.Sprintf("%s for %s (%s)", what, who, n))
	}
	for _, fr := range s.rates {
		p.Faults = append(p.Faults, fmt.Sprintf("%s at random, p=%g", fr.fault, fr.p))
	}
	if s.knobs.ratePerSecond > 0 {
		p.Rate = fmt.Sprintf("%g per second per account, burst %d", s.knobs.ratePerSecond, s.knobs.burst)
	}
	p.Rotate = s.knobs.rotate
	s.mu.Unlock()
	sort.Slice(p.Clients, func(i, j int) bool { return p.Clients[i].ID < p.Clients[j].ID })
	p.Shown = len(p.Outbox)
	writeHTML(w, http.StatusOK, indexTmpl, p)
}

var indexTmpl = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gmail-relay sandbox</title>` + pageStyle + `</head>
<body class="wide">
<h1>gmail-relay sandbox</h1>
<p class="banner">A local imitation of Google's OAuth endpoints and of Gmail's users.messages.send, for tests and <code>make dev</code>.
Nothing sent here leaves this machine: accepted messages are written as .eml files to <code>{{.Dir}}</code>.</p>
<p>Endpoints: <code>/o/oauth2/v2/auth</code>, <code>/token</code>, <code>/revoke</code>, <code>/oauth2/v3/certs</code>,
<code>/gmail/v1/users/{userId}/messages/send</code>, <code>/upload/gmail/v1/users/{userId}/messages/send</code>.
Control (JSON): <code>/sandbox/outbox</code>, <code>/sandbox/accounts</code>, <code>/sandbox/stats</code>, and POST
<code>/sandbox/revoke</code>, <code>expire</code>, <code>latency</code>, <code>faults</code>, <code>fault-rates</code>,
<code>rate</code>, <code>deny</code>, <code>verified</code>, <code>rotate</code>, <code>consumer</code>, <code>reset</code>.</p>

<h2>Knobs</h2>
<ul>
<li>Latency: {{if .Latency}}{{.Latency}}{{else}}none{{end}}</li>
<li>Send rate: {{if .Rate}}{{.Rate}}{{else}}unlimited{{end}}</li>
<li>Refresh token rotation: {{if .Rotate}}on{{else}}off{{end}}</li>
<li>Faults: {{if .Faults}}{{range .Faults}}<br>{{.}}{{end}}{{else}}none{{end}}</li>
</ul>
<p>Counters: {{.Stats.TokenExchanges}} code exchanges, {{.Stats.TokenRefreshes}} refreshes,
{{.Stats.SendsAccepted}} sends accepted, {{.Stats.SendsFaulted}} faulted, {{.Stats.SendsRateLimited}} rate-limited, {{.Stats.SendsRejected}} rejected.</p>

<h2>OAuth clients</h2>
{{if .Clients}}<table><tr><th>Client ID</th><th>Redirect URIs</th></tr>
{{range .Clients}}<tr><td><code>{{.ID}}</code></td><td>{{range .RedirectURIs}}<code>{{.}}</code> {{end}}</td></tr>
{{end}}</table>{{else}}<p>None registered.</p>{{end}}

<h2>Accounts</h2>
{{if .Accounts}}<table><tr><th>Email</th><th>Client</th><th>Scopes</th><th>Refresh tokens</th><th>Live access tokens</th></tr>
{{range .Accounts}}<tr><td>{{.Email}}</td><td><code>{{.ClientID}}</code></td><td>{{range .Scopes}}<code>{{.}}</code> {{end}}</td><td>{{.RefreshTokens}}</td><td>{{.AccessTokens}}</td></tr>
{{end}}</table>{{else}}<p>No account has consented yet.</p>{{end}}

<h2>Outbox</h2>
{{if .Outbox}}<p>Newest first; {{.Shown}} of {{.Total}}.</p>
<table><tr><th>Time</th><th>From account</th><th>To</th><th>Subject</th><th>ID</th><th>Thread</th><th>Size</th></tr>
{{range .Outbox}}<tr><td>{{.Time.Format "2006-01-02 15:04:05"}}</td><td>{{.Email}}</td><td>{{.To}}</td><td>{{.Subject}}</td><td><a href="/sandbox/outbox/{{.ID}}"><code>{{.ID}}</code></a></td><td><code>{{.ThreadID}}</code></td><td>{{.Size}}</td></tr>
{{end}}</table>{{else}}<p>Empty: no message accepted yet.</p>{{end}}
</body></html>
`))
