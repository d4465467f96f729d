package sandbox

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Fault is a failure the sandbox's Gmail (or, for the Token faults, its
// token endpoint) can be told to produce. Each one answers with a body
// Google really sends: bodies.go cites the source of each.
type Fault string

// The faults Google is known to produce on users.messages.send.
const (
	// RateLimit429 is a mailbox's sending limit, with a retry time near:
	// 429 rateLimitExceeded "User-rate limit exceeded.  Retry after <RFC
	// 3339 time> (Mail sending)", the time SetFaultRetryAfter from now.
	RateLimit429 Fault = "RateLimit429"
	// DailyLimit429 is the same answer once the mailbox's daily sending cap
	// is reached: the time is hours away (DailyLimitRetryAfter), and moves
	// later while Gmail keeps refusing.
	DailyLimit429 Fault = "DailyLimit429"
	// ResourceExhausted429 is 429 rateLimitExceeded "Resource has been
	// exhausted (e.g. check quota).", without a retry time.
	ResourceExhausted429 Fault = "ResourceExhausted429"
	// UserRateLimit403 is the older per-user quota answer: 403
	// userRateLimitExceeded.
	UserRateLimit403 Fault = "UserRateLimit403"
	// RateLimit403 is 403 rateLimitExceeded "Quota exceeded for quota
	// metric 'Queries' and limit 'Queries per minute per user' …".
	RateLimit403 Fault = "RateLimit403"
	// ServerError500 is 500 backendError.
	ServerError500 Fault = "ServerError500"
	// Unavailable503 is 503 "The service is currently unavailable."
	Unavailable503 Fault = "Unavailable503"
	// ProjectQuota403 is 403 dailyLimitExceeded "Daily Limit Exceeded. The
	// quota will be reset at midnight Pacific Time (PT). …": the Cloud
	// project's API quota, not the mailbox's.
	ProjectQuota403 Fault = "ProjectQuota403"
	// MailDisabled400 is 400 failedPrecondition "Mail service not enabled":
	// the account has no Gmail. It is also what every send of an account on
	// a consumer domain gets (SetConsumerDomain).
	MailDisabled400 Fault = "MailDisabled400"
	// PreconditionFailed400 is 400 failedPrecondition "Precondition check
	// failed.", which Gmail returns intermittently.
	PreconditionFailed400 Fault = "PreconditionFailed400"
	// DomainPolicy403 is 403 domainPolicy "The domain administrators have
	// disabled Gmail apps."
	DomainPolicy403 Fault = "DomainPolicy403"
	// Unauthenticated401 is 401 authError on a token the sandbox had
	// accepted: what Gmail answers, intermittently, to a valid token.
	Unauthenticated401 Fault = "Unauthenticated401"
	// APIDisabled403 is 403 accessNotConfigured: the Gmail API is not
	// enabled in the client's Cloud project.
	APIDisabled403 Fault = "APIDisabled403"
	// TooLarge413 is Google's front-end HTML page for 413.
	TooLarge413 Fault = "TooLarge413"
	// BadRequestHTML400 is the front end's HTML 400 page, which it answered
	// an oversized JSON send with.
	BadRequestHTML400 Fault = "BadRequestHTML400"
	// HangAfterBody reads the whole request, accepts the message into the
	// outbox as Gmail may have done, and then never answers: the request
	// ends only when the client gives up (its context ends) or Close is
	// called, and then the connection is dropped without a response. This is
	// the ambiguous case: the message exists, the sender cannot know.
	HangAfterBody Fault = "HangAfterBody"
	// ResetAfterBody reads the whole request, accepts the message into the
	// outbox, and then resets the connection instead of answering.
	ResetAfterBody Fault = "ResetAfterBody"
)

// The faults of the token endpoint, served to refresh_token grants of the
// account instead of a new access token.
const (
	// TokenRevoked is 400 invalid_grant "Token has been expired or
	// revoked."
	TokenRevoked Fault = "TokenRevoked"
	// TokenBadRequest is 400 invalid_grant "Bad Request", what Google
	// answers for the same dead token later on.
	TokenBadRequest Fault = "TokenBadRequest"
	// TokenInvalidRAPT is 400 invalid_grant "reauth related error
	// (invalid_rapt)": a Workspace session-control policy wants the user to
	// sign in again.
	TokenInvalidRAPT Fault = "TokenInvalidRAPT"
)

// allFaults fixes the order in which random fault rates are applied, so
// that a seed always gives the same sequence.
var allFaults = []Fault{
	RateLimit429, UserRateLimit403, ServerError500, Unavailable503,
	ProjectQuota403, MailDisabled400, APIDisabled403, HangAfterBody, ResetAfterBody,
	DailyLimit429, ResourceExhausted429, RateLimit403, PreconditionFailed400,
	DomainPolicy403, Unauthenticated401, TooLarge413, BadRequestHTML400,
	TokenRevoked, TokenBadRequest, TokenInvalidRAPT,
}

// Valid reports whether f is one of the sandbox's faults.
func (f Fault) Valid() bool {
	for _, g := range allFaults {
		if f == g {
			return true
		}
	}
	return false
}

// endpoint is where a fault is served.
func (f Fault) endpoint() Endpoint {
	switch f {
	case TokenRevoked, TokenBadRequest, TokenInvalidRAPT:
		return EndpointToken
	}
	return EndpointSend
}

// Endpoint names where an injected answer is served.
type Endpoint string

// The endpoints injections are served at.
const (
	// EndpointSend is users.messages.send, in either form.
	EndpointSend Endpoint = "send"
	// EndpointToken is the token endpoint's refresh_token grant.
	EndpointToken Endpoint = "token"
)

// Response is a verbatim answer: the status, the headers and the body are
// sent exactly as given. Without a Content-Type header, a body starting
// with "{" is sent as JSON and one starting with "<" as HTML, as Google
// labels them.
type Response struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body"`
}

func (r Response) validate() error {
	if r.Status < 200 || r.Status > 599 {
		return fmt.Errorf("sandbox: response status %d is not an HTTP status", r.Status)
	}
	for k := range r.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return fmt.Errorf("sandbox: response header name %q is invalid", k)
		}
	}
	return nil
}

func (r Response) write(w http.ResponseWriter) {
	for k, v := range r.Headers {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", contentTypeFor(r.Body))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(r.Body)))
	w.WriteHeader(r.Status)
	_, _ = io.WriteString(w, r.Body)
}

// afterBody faults act once the message is stored; the others answer before
// it is.
func (f Fault) afterBody() bool { return f == HangAfterBody || f == ResetAfterBody }

// defaultFaultRetryAfter is how far ahead an injected 429 says to retry.
// Gmail often says about 15 minutes; a minute keeps `make dev` usable.
const defaultFaultRetryAfter = time.Minute

// DailyLimitRetryAfter is how far ahead DailyLimit429 says to retry: the
// daily cap holds a mailbox for hours.
const DailyLimitRetryAfter = 3 * time.Hour

type injection struct {
	email     string // "" matches any account
	at        Endpoint
	fault     Fault     // a named fault, or
	resp      *Response // a verbatim answer
	remaining int       // < 0 means forever
}

type faultRate struct {
	fault Fault
	p     float64
}

// knobs are test settings. They are never persisted: a restart of `make
// dev` starts with a well-behaved Gmail.
type knobs struct {
	denyWith        map[string]string // email → OAuth error for Allow
	unverified      map[string]bool   // email → email_verified=false
	rotate          bool
	latency         time.Duration
	injections      []*injection
	ratePerSecond   float64
	burst           int
	faultRetryAfter time.Duration
	// consumer holds domains whose Google accounts have no Gmail: no hd
	// claim, and every send answers "Mail service not enabled".
	consumer map[string]bool
}

func (k *knobs) reset() {
	*k = knobs{
		denyWith:        make(map[string]string),
		unverified:      make(map[string]bool),
		faultRetryAfter: defaultFaultRetryAfter,
		consumer:        make(map[string]bool),
	}
}

// oauthErrorCode is the shape of an OAuth error code (RFC 6749 §4.1.2.1
// allows printable ASCII without quotes and backslashes).
var oauthErrorCode = regexp.MustCompile(`^[\x20-\x21\x23-\x5B\x5D-\x7E]+$`)

// DenyWithError makes Allow on the consent page for email redirect with
// error=code instead of a code, e.g. "admin_policy_enforced" (a Workspace
// admin blocked the client) or "access_denied" (the app is in Testing and
// the address is not a test user). An empty code restores normal consent.
func (s *Server) DenyWithError(email, code string) {
	email = normalizeEmail(email)
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == "" {
		delete(s.knobs.denyWith, email)
		return
	}
	s.knobs.denyWith[email] = code
}

// SetEmailVerified sets the email_verified claim of ID tokens issued for
// email from now on. Addresses are verified unless told otherwise.
func (s *Server) SetEmailVerified(email string, verified bool) {
	email = normalizeEmail(email)
	s.mu.Lock()
	defer s.mu.Unlock()
	if verified {
		delete(s.knobs.unverified, email)
	} else {
		s.knobs.unverified[email] = true
	}
}

// RotateRefreshTokens makes refresh grants return a new refresh token and
// invalidate the one presented, so that a client that fails to save the new
// token is caught.
func (s *Server) RotateRefreshTokens(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knobs.rotate = on
}

// RevokeRefreshToken revokes a refresh token and the access tokens minted
// from it, as if the user had removed the app. It reports whether the token
// was live.
func (s *Server) RevokeRefreshToken(token string) bool {
	s.mu.Lock()
	rt, ok := s.st.Refresh[hashToken(token)]
	if ok {
		s.revokeFamilyLocked(rt.Family)
	}
	s.mu.Unlock()
	if ok {
		s.saveOrLog()
	}
	return ok
}

// RevokeAll revokes every token and consent of email, for every client, as
// a password change does. It returns the number of tokens revoked.
func (s *Server) RevokeAll(email string) int {
	email = normalizeEmail(email)
	s.mu.Lock()
	n := 0
	for h, r := range s.st.Refresh {
		if r.Email == email {
			delete(s.st.Refresh, h)
			n++
		}
	}
	for h, a := range s.st.Access {
		if a.Email == email {
			delete(s.st.Access, h)
			n++
		}
	}
	for k, g := range s.st.Grants {
		if g.Email == email {
			delete(s.st.Grants, k)
		}
	}
	s.stateV++
	s.mu.Unlock()
	s.saveOrLog()
	return n
}

// ExpireAccessTokens ends the life of every access token of email, so the
// next Gmail call answers 401 and the client must refresh. Refresh tokens
// stay valid. It returns the number of tokens expired.
func (s *Server) ExpireAccessTokens(email string) int {
	email = normalizeEmail(email)
	s.mu.Lock()
	n := 0
	for h, a := range s.st.Access {
		if a.Email == email {
			delete(s.st.Access, h)
			n++
		}
	}
	s.stateV++
	s.mu.Unlock()
	s.saveOrLog()
	return n
}

// SetLatency delays every Gmail send by d before it is processed. A client
// whose context ends first gets no answer.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knobs.latency = max(d, 0)
}

// InjectGmailErrors queues fault for the next n sends of email ("" for any
// account); n < 0 means every send from now on. Injections are served in
// the order queued; each matching send consumes one, after its credentials
// are checked. A resumable upload consumes it when the session is opened,
// and an after-body fault then acts on its last chunk; since the Go client
// resends a last chunk whose answer was lost and the sandbox repeats its
// answer, ResetAfterBody on a resumable upload heals without a duplicate.
// An after-body fault drawn by a send that then fails validation is spent.
// The Token faults are served instead to the account's next n refresh
// grants at the token endpoint.
func (s *Server) InjectGmailErrors(email string, f Fault, n int) error {
	if !f.Valid() {
		return fmt.Errorf("sandbox: unknown fault %q", f)
	}
	s.queue(&injection{email: normalizeEmail(email), at: f.endpoint(), fault: f, remaining: n})
	return nil
}

// InjectResponse queues a verbatim answer for the next n sends of email
// ("" for any account; n < 0 for every send), served like a named fault of
// InjectGmailErrors: after the credentials are checked, in the order
// queued.
func (s *Server) InjectResponse(email string, r Response, n int) error {
	return s.injectResponse(email, EndpointSend, r, n)
}

// InjectTokenResponse queues a verbatim answer for the next n refresh
// grants of email at the token endpoint ("" for any account), served in
// place of a new access token once the refresh token is recognised.
func (s *Server) InjectTokenResponse(email string, r Response, n int) error {
	return s.injectResponse(email, EndpointToken, r, n)
}

func (s *Server) injectResponse(email string, at Endpoint, r Response, n int) error {
	if err := r.validate(); err != nil {
		return err
	}
	r.Headers = maps.Clone(r.Headers)
	s.queue(&injection{email: normalizeEmail(email), at: at, resp: &r, remaining: n})
	return nil
}

func (s *Server) queue(inj *injection) {
	if inj.remaining == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knobs.injections = append(s.knobs.injections, inj)
}

// SetConsumerDomain marks domain as one whose Google accounts are consumer
// accounts without Gmail (a Google account made on a non-Gmail address),
// or, with consumer false, as a Workspace domain again. Such accounts get
// no hd claim or parameter, and every send answers 400 "Mail service not
// enabled". gmail.com and googlemail.com are always consumer accounts with
// Gmail; every other domain is Workspace unless marked.
func (s *Server) SetConsumerDomain(domain string, consumer bool) {
	domain = strings.ToLower(strings.TrimSpace(domain))
	s.mu.Lock()
	defer s.mu.Unlock()
	if consumer {
		s.knobs.consumer[domain] = true
	} else {
		delete(s.knobs.consumer, domain)
	}
}

// consumerWithoutGmailLocked reports whether email is on a domain marked
// by SetConsumerDomain.
func (s *Server) consumerWithoutGmailLocked(email string) bool {
	_, domain, ok := strings.Cut(email, "@")
	return ok && s.knobs.consumer[domain]
}

// hostedDomainLocked is the hd claim: absent for consumer accounts, the
// domain for Workspace ones.
func (s *Server) hostedDomainLocked(email string) string {
	if s.consumerWithoutGmailLocked(email) {
		return ""
	}
	return hostedDomain(email)
}

// ClearGmailErrors drops every queued injection.
func (s *Server) ClearGmailErrors() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knobs.injections = nil
}

// SetFaultRates turns on random faults for load tests: each send fails with
// fault f with probability rates[f], drawn from a generator seeded with
// seed, so that a run can be replayed. The rates must not add up to more
// than 1. An empty map turns random faults off. Queued injections take
// precedence.
func (s *Server) SetFaultRates(seed int64, rates map[Fault]float64) error {
	var list []faultRate
	sum := 0.0
	for _, f := range allFaults { // fixed order, not map order
		p, ok := rates[f]
		if !ok || p == 0 {
			continue
		}
		if p < 0 || math.IsNaN(p) {
			return fmt.Errorf("sandbox: fault rate for %s is %v", f, p)
		}
		sum += p
		list = append(list, faultRate{f, p})
	}
	for f := range rates {
		if !f.Valid() {
			return fmt.Errorf("sandbox: unknown fault %q", f)
		}
		if f.endpoint() != EndpointSend {
			return fmt.Errorf("sandbox: %s is a token endpoint fault; random rates apply to sends", f)
		}
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("sandbox: fault rates add up to %v, more than 1", sum)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(list) == 0 {
		s.rng, s.rates = nil, nil
		return nil
	}
	s.rng = rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	s.rates = list
	return nil
}

// SetSendRate limits each account to perUserPerSecond sends with bursts of
// burst, as a token bucket; sends over it get Gmail's 429 with the time the
// next send will be accepted. A rate of 0 or less removes the limit.
func (s *Server) SetSendRate(perUserPerSecond float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perUserPerSecond <= 0 || math.IsNaN(perUserPerSecond) {
		s.knobs.ratePerSecond, s.knobs.burst = 0, 0
	} else {
		s.knobs.ratePerSecond, s.knobs.burst = perUserPerSecond, max(burst, 1)
	}
	s.buckets = make(map[string]*tokenBucket)
}

// SetFaultRetryAfter sets how far ahead an injected RateLimit429 tells the
// client to retry (default one minute; DailyLimit429 says
// DailyLimitRetryAfter).
func (s *Server) SetFaultRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knobs.faultRetryAfter = max(d, time.Second)
}

// Reset restores every knob (deny, unverified, rotation, latency, faults,
// rates, consumer domains) and zeroes the counters. Tokens, consents and the outbox stay.
func (s *Server) Reset() {
	s.mu.Lock()
	s.knobs.reset()
	s.rng, s.rates = nil, nil
	s.buckets = make(map[string]*tokenBucket)
	s.mu.Unlock()
	s.stats.reset()
}

// pickFault decides the fault, if any, for one send of email: a queued
// injection first, then a random draw. A verbatim injection comes back as
// resp.
func (s *Server) pickFault(email string) (Fault, *Response, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inj := s.takeInjectionLocked(email, EndpointSend); inj != nil {
		return inj.fault, inj.resp, true
	}
	if s.rng != nil {
		x := s.rng.Float64()
		acc := 0.0
		for _, fr := range s.rates {
			acc += fr.p
			if x < acc {
				return fr.fault, nil, true
			}
		}
	}
	return "", nil, false
}

// takeInjectionLocked consumes the first injection queued for email at
// the endpoint.
func (s *Server) takeInjectionLocked(email string, at Endpoint) *injection {
	for i, inj := range s.knobs.injections {
		if inj.at != at || (inj.email != "" && inj.email != email) {
			continue
		}
		if inj.remaining > 0 {
			inj.remaining--
			if inj.remaining == 0 {
				s.knobs.injections = append(s.knobs.injections[:i:i], s.knobs.injections[i+1:]...)
			}
		}
		return inj
	}
	return nil
}

// takeSendToken applies SetSendRate. When the send is over the limit it
// returns the time at which one will be accepted.
func (s *Server) takeSendToken(email string, now time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rate, burst := s.knobs.ratePerSecond, s.knobs.burst
	if rate <= 0 {
		return time.Time{}, true
	}
	b := s.buckets[email]
	if b == nil {
		b = &tokenBucket{tokens: float64(burst), last: now}
		s.buckets[email] = b
	}
	return b.take(now, rate, float64(burst))
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

func (b *tokenBucket) take(now time.Time, rate, burst float64) (time.Time, bool) {
	if now.After(b.last) {
		b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return time.Time{}, true
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / rate * float64(time.Second)))
	return b.last.Add(wait), false
}

// wait sleeps for d unless the request ends (then it reports false) or the
// server is closed (then it returns early).
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closed:
		return true
	case <-ctx.Done():
		return false
	}
}

// googleError is the body of a Google API error, in the field order Google
// uses.
type googleError struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Errors  []errorItem `json:"errors,omitempty"`
	Status  string      `json:"status,omitempty"`
	Details []any       `json:"details,omitempty"`
	header  http.Header // extra response headers
}

type errorItem struct {
	Message      string `json:"message"`
	Domain       string `json:"domain"`
	Reason       string `json:"reason"`
	Location     string `json:"location,omitempty"`
	LocationType string `json:"locationType,omitempty"`
	ExtendedHelp string `json:"extendedHelp,omitempty"`
}

func simpleError(code int, status, domain, reason, msg string) *googleError {
	return &googleError{
		Code: code, Message: msg, Status: status,
		Errors: []errorItem{{Message: msg, Domain: domain, Reason: reason}},
	}
}

func writeGoogleError(w http.ResponseWriter, e *googleError) {
	for k, v := range e.header {
		w.Header()[k] = v
	}
	writeJSON(w, e.Code, map[string]*googleError{"error": e})
}

// retryTimeFormat is how Gmail prints the time in "Retry after": RFC 3339
// in UTC with milliseconds.
const retryTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// rateLimitResponse is Gmail's answer when the mailbox's sending limit is
// hit: the time to retry is in the message, not in a header.
func rateLimitResponse(retryAt time.Time) Response {
	return jsonResponse(http.StatusTooManyRequests, bodyUserRateLimit(retryAt))
}

// faultResponse is the answer for a before-body fault.
func faultResponse(f Fault, now time.Time, retryAfter time.Duration, clientID string) Response {
	switch f {
	case RateLimit429:
		return rateLimitResponse(now.Add(retryAfter))
	case DailyLimit429:
		return rateLimitResponse(now.Add(DailyLimitRetryAfter))
	case ResourceExhausted429:
		return jsonResponse(http.StatusTooManyRequests, bodyResourceExhausted)
	case UserRateLimit403:
		return jsonResponse(http.StatusForbidden, bodyUserRateLimit403)
	case RateLimit403:
		return jsonResponse(http.StatusForbidden, bodyQuotaPerMinute(projectNumber(clientID)))
	case ServerError500:
		return jsonResponse(http.StatusInternalServerError, bodyBackendError)
	case Unavailable503:
		return jsonResponse(http.StatusServiceUnavailable, bodyUnavailable)
	case ProjectQuota403:
		return jsonResponse(http.StatusForbidden, bodyProjectQuota(projectNumber(clientID)))
	case MailDisabled400:
		return jsonResponse(http.StatusBadRequest, bodyMailServiceNotEnabled)
	case PreconditionFailed400:
		return jsonResponse(http.StatusBadRequest, bodyPreconditionFailed)
	case DomainPolicy403:
		return jsonResponse(http.StatusForbidden, bodyDomainPolicy)
	case Unauthenticated401:
		return jsonResponse(http.StatusUnauthorized, bodyUnauthenticated)
	case APIDisabled403:
		return jsonResponse(http.StatusForbidden, bodyAPIDisabled(projectNumber(clientID)))
	case TooLarge413:
		return tooLargeResponse()
	case BadRequestHTML400:
		return Response{Status: http.StatusBadRequest, Headers: map[string]string{"Content-Type": htmlContentType}, Body: bodyBadRequestHTML}
	case TokenRevoked:
		return jsonResponse(http.StatusBadRequest, bodyTokenRevoked)
	case TokenBadRequest:
		return jsonResponse(http.StatusBadRequest, bodyTokenBadRequest)
	case TokenInvalidRAPT:
		return jsonResponse(http.StatusBadRequest, bodyTokenInvalidRAPT)
	}
	// After-body faults never reach here; an unknown one is a sandbox bug.
	return jsonResponse(http.StatusInternalServerError, bodyBackendError)
}

// projectNumber takes the project number from a Google-style client ID
// ("<number>-<hash>.apps.googleusercontent.com"), or a fixed sandbox one.
var clientProject = regexp.MustCompile(`^([0-9]+)-`)

func projectNumber(clientID string) string {
	if m := clientProject.FindStringSubmatch(clientID); m != nil {
		return m[1]
	}
	return "123456789012"
}
