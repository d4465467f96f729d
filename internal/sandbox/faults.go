package sandbox

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// Fault is a failure the sandbox's Gmail can be told to produce. Each one
// answers with the status, reason, status string and message Gmail uses.
type Fault string

// The faults Gmail is known to produce on users.messages.send.
const (
	// RateLimit429 is the per-user sending limit: 429 rateLimitExceeded
	// (domain usageLimits, RESOURCE_EXHAUSTED) with the message "User-rate
	// limit exceeded.  Retry after <RFC 3339 time> (Mail sending)" and a
	// Retry-After header. The time is SetFaultRetryAfter from now.
	RateLimit429 Fault = "RateLimit429"
	// UserRateLimit403 is the older per-user quota answer: 403
	// userRateLimitExceeded.
	UserRateLimit403 Fault = "UserRateLimit403"
	// ServerError500 is 500 backendError.
	ServerError500 Fault = "ServerError500"
	// Unavailable503 is 503 "The service is currently unavailable."
	Unavailable503 Fault = "Unavailable503"
	// DailyLimit403 is 403 dailyLimitExceeded (domain usageLimits), the
	// daily sending cap.
	DailyLimit403 Fault = "DailyLimit403"
	// MailDisabled400 is 400 failedPrecondition "Mail service not enabled":
	// the account has no Gmail.
	MailDisabled400 Fault = "MailDisabled400"
	// APIDisabled403 is 403 accessNotConfigured: the Gmail API is not
	// enabled in the client's Cloud project.
	APIDisabled403 Fault = "APIDisabled403"
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

// allFaults fixes the order in which random fault rates are applied, so
// that a seed always gives the same sequence.
var allFaults = []Fault{
	RateLimit429, UserRateLimit403, ServerError500, Unavailable503,
	DailyLimit403, MailDisabled400, APIDisabled403, HangAfterBody, ResetAfterBody,
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

// afterBody faults act once the message is stored; the others answer before
// it is.
func (f Fault) afterBody() bool { return f == HangAfterBody || f == ResetAfterBody }

// defaultFaultRetryAfter is how far ahead an injected 429 says to retry.
// Gmail often says about 15 minutes; a minute keeps `make dev` usable.
const defaultFaultRetryAfter = time.Minute

type injection struct {
	email     string // "" matches any account
	fault     Fault
	remaining int // < 0 means forever
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
}

func (k *knobs) reset() {
	*k = knobs{
		denyWith:        make(map[string]string),
		unverified:      make(map[string]bool),
		faultRetryAfter: defaultFaultRetryAfter,
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
func (s *Server) InjectGmailErrors(email string, f Fault, n int) error {
	if !f.Valid() {
		return fmt.Errorf("sandbox: unknown fault %q", f)
	}
	if n == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knobs.injections = append(s.knobs.injections, &injection{email: normalizeEmail(email), fault: f, remaining: n})
	return nil
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
// client to retry (default one minute).
func (s *Server) SetFaultRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knobs.faultRetryAfter = max(d, time.Second)
}

// Reset restores every knob (deny, unverified, rotation, latency, faults,
// rates) and zeroes the counters. Tokens, consents and the outbox stay.
func (s *Server) Reset() {
	s.mu.Lock()
	s.knobs.reset()
	s.rng, s.rates = nil, nil
	s.buckets = make(map[string]*tokenBucket)
	s.mu.Unlock()
	s.stats.reset()
}

// pickFault decides the fault, if any, for one send of email: a queued
// injection first, then a random draw.
func (s *Server) pickFault(email string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, inj := range s.knobs.injections {
		if inj.email != "" && inj.email != email {
			continue
		}
		if inj.remaining > 0 {
			inj.remaining--
			if inj.remaining == 0 {
				s.knobs.injections = append(s.knobs.injections[:i:i], s.knobs.injections[i+1:]...)
			}
		}
		return inj.fault, true
	}
	if s.rng != nil {
		x := s.rng.Float64()
		acc := 0.0
		for _, fr := range s.rates {
			acc += fr.p
			if x < acc {
				return fr.fault, true
			}
		}
	}
	return "", false
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

// rateLimitError is Gmail's answer when the per-user sending limit is hit.
func rateLimitError(now, retryAt time.Time) *googleError {
	msg := "User-rate limit exceeded.  Retry after " + retryAt.UTC().Format(retryTimeFormat) + " (Mail sending)"
	e := simpleError(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "usageLimits", "rateLimitExceeded", msg)
	secs := int64(math.Ceil(retryAt.Sub(now).Seconds()))
	e.header = http.Header{"Retry-After": {strconv.FormatInt(max(secs, 1), 10)}}
	return e
}

// faultError is the answer for a before-body fault.
func faultError(f Fault, now time.Time, retryAfter time.Duration, clientID string) *googleError {
	switch f {
	case RateLimit429:
		return rateLimitError(now, now.Add(retryAfter))
	case UserRateLimit403:
		return simpleError(http.StatusForbidden, "PERMISSION_DENIED", "usageLimits", "userRateLimitExceeded", "User Rate Limit Exceeded")
	case ServerError500:
		return simpleError(http.StatusInternalServerError, "INTERNAL", "global", "backendError", "Backend Error")
	case Unavailable503:
		return simpleError(http.StatusServiceUnavailable, "UNAVAILABLE", "global", "backendError", "The service is currently unavailable.")
	case DailyLimit403:
		return simpleError(http.StatusForbidden, "PERMISSION_DENIED", "usageLimits", "dailyLimitExceeded", "Daily user sending limit exceeded.")
	case MailDisabled400:
		return simpleError(http.StatusBadRequest, "FAILED_PRECONDITION", "global", "failedPrecondition", "Mail service not enabled")
	case APIDisabled403:
		p := projectNumber(clientID)
		msg := "Gmail API has not been used in project " + p + " before or it is disabled. Enable it by visiting " +
			"https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project=" + p +
			" then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
		e := simpleError(http.StatusForbidden, "PERMISSION_DENIED", "usageLimits", "accessNotConfigured", msg)
		e.Errors[0].ExtendedHelp = "https://console.developers.google.com"
		e.Details = []any{map[string]any{
			"@type":  "type.googleapis.com/google.rpc.ErrorInfo",
			"reason": "SERVICE_DISABLED",
			"domain": "googleapis.com",
			"metadata": map[string]string{
				"service":  "gmail.googleapis.com",
				"consumer": "projects/" + p,
			},
		}}
		return e
	}
	// After-body faults never reach here; an unknown one is a sandbox bug.
	return simpleError(http.StatusInternalServerError, "INTERNAL", "global", "backendError", "Backend Error")
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
