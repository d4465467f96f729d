package sandbox_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

// recorder notes the requests a Gmail client makes, to tell which upload
// protocol it used.
type recorder struct {
	mu   sync.Mutex
	base http.RoundTripper
	reqs []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery)
	r.mu.Unlock()
	return r.base.RoundTrip(req)
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

func (e *env) recordingGmail(tok *oauth2.Token) (*gmail.Service, *recorder) {
	e.t.Helper()
	rec := &recorder{base: e.ts.Client().Transport}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: rec})
	svc, err := gmail.NewService(ctx, option.WithEndpoint(e.ts.URL+"/"), option.WithHTTPClient(e.config().Client(ctx, tok)))
	if err != nil {
		e.t.Fatal(err)
	}
	return svc, rec
}

var messageID = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestSendModes(t *testing.T) {
	t.Parallel()
	big := message("Bob <bob@example.org>", "big", strings.Repeat("0123456789abcdef\r\n", 40000)) // ~720 KB
	cases := []struct {
		name     string
		raw      []byte
		threadID string
		send     func(svc *gmail.Service, raw []byte, threadID string) (*gmail.Message, error)
		wantReq  string // a request the client must have made
	}{
		{
			name: "json raw",
			raw:  message("bob@example.org", "json", "hello"),
			send: func(svc *gmail.Service, raw []byte, th string) (*gmail.Message, error) {
				return svc.Users.Messages.Send("me", &gmail.Message{Raw: base64.RawURLEncoding.EncodeToString(raw), ThreadId: th}).Do()
			},
			wantReq: "POST /gmail/v1/users/me/messages/send?",
		},
		{
			name:     "json raw with thread",
			raw:      message("bob@example.org", "Re: json", "hello again"),
			threadID: "18c0ffee00000001",
			send: func(svc *gmail.Service, raw []byte, th string) (*gmail.Message, error) {
				return svc.Users.Messages.Send("me", &gmail.Message{Raw: base64.URLEncoding.EncodeToString(raw), ThreadId: th}).Do()
			},
			wantReq: "POST /gmail/v1/users/me/messages/send?",
		},
		{
			name: "multipart upload",
			raw:  message("bob@example.org", "multipart", "über\r\nbody"),
			send: func(svc *gmail.Service, raw []byte, th string) (*gmail.Message, error) {
				return svc.Users.Messages.Send("me", &gmail.Message{ThreadId: th}).
					Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822")).Do()
			},
			wantReq: "uploadType=multipart",
		},
		{
			name:     "resumable upload",
			raw:      big,
			threadID: "18c0ffee00000002",
			send: func(svc *gmail.Service, raw []byte, th string) (*gmail.Message, error) {
				return svc.Users.Messages.Send("me", &gmail.Message{ThreadId: th}).
					Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(256*1024)).Do()
			},
			wantReq: "upload_id=",
		},
		{
			name: "resumable upload with checksum",
			raw:  big,
			send: func(svc *gmail.Service, raw []byte, th string) (*gmail.Message, error) {
				return svc.Users.Messages.Send("me", &gmail.Message{}).
					Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(256*1024), googleapi.EnableAutoChecksum()).Do()
			},
			wantReq: "upload_id=",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			svc, rec := e.recordingGmail(e.connect("Alice@Example.com"))
			got, err := tc.send(svc, tc.raw, tc.threadID)
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			if !messageID.MatchString(got.Id) || !contains(got.LabelIds, "SENT") {
				t.Errorf("answer id %q labels %v", got.Id, got.LabelIds)
			}
			wantThread := tc.threadID
			if wantThread == "" {
				wantThread = got.Id
			}
			if got.ThreadId != wantThread {
				t.Errorf("threadId = %q, want %q", got.ThreadId, wantThread)
			}
			found := false
			for _, r := range rec.requests() {
				found = found || strings.Contains(r, tc.wantReq)
			}
			if !found {
				t.Errorf("the client made no request matching %q: %v", tc.wantReq, rec.requests())
			}

			out := e.sb.Outbox()
			if len(out) != 1 {
				t.Fatalf("outbox has %d messages, want 1", len(out))
			}
			m := out[0]
			if m.ID != got.Id || m.ThreadID != wantThread || m.Email != "alice@example.com" || m.Size != int64(len(tc.raw)) {
				t.Errorf("outbox entry %+v", m)
			}
			if want := fmt.Sprintf("%d-%s.eml", e.clock.Now().UnixNano(), got.Id); filepath.Base(m.Path) != want || filepath.Dir(m.Path) != e.dir {
				t.Errorf("file %s, want %s in %s", m.Path, want, e.dir)
			}
			stored := readFile(t, m.Path)
			if !bytes.Equal(stored, tc.raw) {
				t.Errorf("stored message differs from the one sent (%d vs %d bytes)", len(stored), len(tc.raw))
			}
			if _, err := mail.ReadMessage(bytes.NewReader(stored)); err != nil {
				t.Errorf("stored message does not parse: %v", err)
			}
			// Nothing but the message is left in the outbox directory.
			entries, _ := os.ReadDir(e.dir)
			if len(entries) != 1 {
				t.Errorf("outbox dir holds %d entries, want 1", len(entries))
			}
			if s := e.sb.Stats(); s.SendsAccepted != 1 {
				t.Errorf("SendsAccepted = %d", s.SendsAccepted)
			}
		})
	}
}

func TestSendRawEncodings(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.gmail(e.connect("alice@example.com"))
	raw := message("bob@example.org", "enc", "??>>??~~ bytes that differ between alphabets ÿþ")
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		got, err := svc.Users.Messages.Send("me", &gmail.Message{Raw: enc.EncodeToString(raw)}).Do()
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		out := e.sb.Outbox()
		if !bytes.Equal(readFile(t, out[len(out)-1].Path), raw) || out[len(out)-1].ID != got.Id {
			t.Error("stored bytes differ")
		}
	}
	_, err := svc.Users.Messages.Send("me", &gmail.Message{Raw: "not*base64!"}).Do()
	if g := asGoogleErr(t, err); g.Code != 400 || !strings.Contains(g.Message, "Base64 decoding failed") {
		t.Errorf("bad base64: %v", err)
	}
}

func TestSendValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.connect("alice@example.com")
	svc := e.gmail(tok)
	cases := []struct {
		name   string
		send   func() error
		code   int
		reason string
		msg    string
	}{
		{"no recipient", func() error { _, err := sendRaw(svc, message("", "s", "b")); return err },
			400, "invalidArgument", "Recipient address required"},
		{"not a message", func() error { _, err := sendRaw(svc, []byte("just some words")); return err },
			400, "invalidArgument", "Recipient address required"},
		{"bad To", func() error { _, err := sendRaw(svc, message("<<not an address", "s", "b")); return err },
			400, "invalidArgument", "Invalid To header"},
		{"no raw", func() error { _, err := svc.Users.Messages.Send("me", &gmail.Message{}).Do(); return err },
			400, "badRequest", "'raw' RFC822 payload message string or uploading message via /upload/* URL required"},
		{"upload without message media type", func() error {
			_, err := svc.Users.Messages.Send("me", &gmail.Message{}).Media(bytes.NewReader(message("b@example.org", "s", "b")), googleapi.ContentType("application/octet-stream")).Do()
			return err
		}, 400, "badContent", "Media type 'application/octet-stream' is not supported. Valid media types: [message/*]"},
	}
	for _, tc := range cases {
		err := tc.send()
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		g := asGoogleErr(t, err)
		if g.Code != tc.code || g.Message != tc.msg || !contains(reasons(g), tc.reason) {
			t.Errorf("%s: got %d %q %v, want %d %q %s", tc.name, g.Code, g.Message, reasons(g), tc.code, tc.msg, tc.reason)
		}
	}
	// Over 35 MB. This goes as one uploadType=media request: the limit is
	// the same code for every upload form, and 35 MB through the client's
	// multipart writer takes seconds under the race detector.
	head := message("b@example.org", "big", "")
	for _, declared := range []bool{true, false} {
		body := io.MultiReader(bytes.NewReader(head), io.LimitReader(repeatByte('x'), 36700160))
		req, _ := http.NewRequest("POST", e.ts.URL+"/upload/gmail/v1/users/me/messages/send?uploadType=media", body)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Content-Type", "message/rfc822")
		if declared {
			req.ContentLength = int64(len(head)) + 36700160
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := googleapi.CheckResponse(resp); err == nil {
			t.Errorf("a message over 35 MB was accepted (length declared: %v)", declared)
		} else if g := asGoogleErr(t, err); g.Code != 400 || g.Message != "Request payload size exceeds the limit: 36700160 bytes." || !contains(reasons(g), "badRequest") {
			t.Errorf("over 35 MB (length declared: %v): %d %q %v", declared, g.Code, g.Message, reasons(g))
		}
		resp.Body.Close()
	}

	// Cc or Bcc alone is enough.
	for _, h := range []string{"Cc", "Bcc"} {
		raw := []byte("From: a@example.com\r\n" + h + ": c@example.org\r\nSubject: s\r\n\r\nb\r\n")
		if _, err := sendRaw(svc, raw); err != nil {
			t.Errorf("%s only: %v", h, err)
		}
	}
	if s := e.sb.Stats(); s.SendsRejected != int64(len(cases))+2 || s.SendsAccepted != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestSendAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.connect("alice@example.com")
	const wantMsg = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
	check401 := func(name string, err error) {
		t.Helper()
		g := asGoogleErr(t, err)
		if g.Code != 401 || g.Message != wantMsg || len(g.Errors) != 1 || g.Errors[0].Reason != "authError" || g.Errors[0].Message != "Invalid Credentials" {
			t.Errorf("%s: %d %q %+v", name, g.Code, g.Message, g.Errors)
		}
		if !strings.Contains(string(g.Body), `"status":"UNAUTHENTICATED"`) || !strings.Contains(string(g.Body), `"location":"Authorization","locationType":"header"`) {
			t.Errorf("%s: body %s", name, g.Body)
		}
	}

	_, err := sendRaw(e.gmail(&oauth2.Token{AccessToken: "ya29.unknown"}), message("b@example.org", "s", "b"))
	check401("unknown token", err)

	// No credential at all is a different 401.
	resp, err := http.Post(e.ts.URL+"/gmail/v1/users/me/messages/send", "application/json", strings.NewReader(`{"raw":"eA"}`))
	if err != nil {
		t.Fatal(err)
	}
	g := asGoogleErr(t, googleapi.CheckResponse(resp))
	resp.Body.Close()
	if g.Code != 401 || !strings.HasPrefix(g.Message, "Request is missing required authentication credential.") || !contains(reasons(g), "required") {
		t.Errorf("no credential: %d %q %v", g.Code, g.Message, reasons(g))
	}

	svc := e.gmail(tok)
	if _, err := sendRaw(svc, message("b@example.org", "s", "b")); err != nil {
		t.Fatal(err)
	}
	// The client still holds its token, which it believes valid for an
	// hour: it must handle the 401 by refreshing.
	if n := e.sb.ExpireAccessTokens("alice@example.com"); n != 1 {
		t.Errorf("ExpireAccessTokens = %d, want 1", n)
	}
	_, err = sendRaw(svc, message("b@example.org", "s", "b"))
	check401("expired token", err)
	fresh := e.gmail(&oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)})
	if _, err := sendRaw(fresh, message("b@example.org", "s", "b")); err != nil {
		t.Errorf("after refresh: %v", err)
	}

	// The token's own lifetime ends too.
	tok2 := e.connect("carol@example.com")
	e.clock.Advance(3599 * time.Second)
	_, err = sendRaw(e.gmail(tok2), message("b@example.org", "s", "b"))
	check401("token past its hour", err)

	// {userId} is "me" or the account itself.
	tok3 := e.connect("dave@example.com")
	raw := base64.URLEncoding.EncodeToString(message("b@example.org", "s", "b"))
	if _, err := e.gmail(tok3).Users.Messages.Send("Dave@Example.com", &gmail.Message{Raw: raw}).Do(); err != nil {
		t.Errorf("userId = own address: %v", err)
	}
	_, err = e.gmail(tok3).Users.Messages.Send("alice@example.com", &gmail.Message{Raw: raw}).Do()
	if g := asGoogleErr(t, err); g.Code != 403 || g.Message != "Delegation denied for dave@example.com" {
		t.Errorf("other userId: %v", err)
	}
}

func TestSendScopes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		scope string
		ok    bool
	}{
		{sandbox.ScopeGmailSend, true},
		{sandbox.ScopeMailGoogle, true},
		{sandbox.ScopeGmailCompose, true},
		{sandbox.ScopeGmailModify, true},
		{sandbox.ScopeGmailRead, false},
		{"email", false},
	}
	for _, tc := range cases {
		t.Run(tc.scope, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			_, err := sendRaw(e.gmail(e.connect("alice@example.com", tc.scope)), message("b@example.org", "s", "b"))
			if tc.ok {
				if err != nil {
					t.Errorf("send: %v", err)
				}
				return
			}
			g := asGoogleErr(t, err)
			if g.Code != 403 || !contains(reasons(g), "insufficientPermissions") || !strings.Contains(string(g.Body), "ACCESS_TOKEN_SCOPE_INSUFFICIENT") {
				t.Errorf("got %d %v", g.Code, reasons(g))
			}
		})
	}
}

// repeatByte is an endless stream of one byte. It copies whole blocks:
// a byte loop over 35 MB is slow under the race detector.
type repeatByte byte

func (b repeatByte) Read(p []byte) (int, error) {
	block := bytes.Repeat([]byte{byte(b)}, 32<<10)
	n := 0
	for n < len(p) {
		n += copy(p[n:], block)
	}
	return n, nil
}

var retryAfterMsg = regexp.MustCompile(`^User-rate limit exceeded\.  Retry after (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) \(Mail sending\)$`)

func TestInjectedFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		fault  sandbox.Fault
		code   int
		reason string
		msg    string
		status string
	}{
		{sandbox.RateLimit429, 429, "rateLimitExceeded", "", "RESOURCE_EXHAUSTED"},
		{sandbox.DailyLimit429, 429, "rateLimitExceeded", "", "RESOURCE_EXHAUSTED"},
		{sandbox.ResourceExhausted429, 429, "rateLimitExceeded", "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"},
		{sandbox.UserRateLimit403, 403, "userRateLimitExceeded", "User Rate Limit Exceeded", ""},
		{sandbox.RateLimit403, 403, "rateLimitExceeded", "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com' for consumer 'project_number:123456789012'.", "PERMISSION_DENIED"},
		{sandbox.ServerError500, 500, "backendError", "Backend Error", "INTERNAL"},
		{sandbox.Unavailable503, 503, "backendError", "The service is currently unavailable.", "UNAVAILABLE"},
		{sandbox.ProjectQuota403, 403, "dailyLimitExceeded", "Daily Limit Exceeded. The quota will be reset at midnight Pacific Time (PT). You may monitor your quota usage and adjust limits in the API Console: https://console.developers.google.com/apis/api/gmail.googleapis.com/quotas?project=123456789012", ""},
		{sandbox.MailDisabled400, 400, "failedPrecondition", "Mail service not enabled", "FAILED_PRECONDITION"},
		{sandbox.PreconditionFailed400, 400, "failedPrecondition", "Precondition check failed.", "FAILED_PRECONDITION"},
		{sandbox.DomainPolicy403, 403, "domainPolicy", "The domain administrators have disabled Gmail apps.", ""},
		{sandbox.Unauthenticated401, 401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.", "UNAUTHENTICATED"},
		{sandbox.APIDisabled403, 403, "accessNotConfigured",
			"Gmail API has not been used in project 123456789012 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project=123456789012 then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry.",
			"PERMISSION_DENIED"},
	}
	for _, tc := range cases {
		t.Run(string(tc.fault), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			svc := e.gmail(e.connect("alice@example.com"))
			if err := e.sb.InjectGmailErrors("", tc.fault, 2); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				_, err := sendRaw(svc, message("b@example.org", "s", "b"))
				g := asGoogleErr(t, err)
				var wire struct {
					Error struct {
						Status string `json:"status"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(g.Body), &wire); err != nil {
					t.Errorf("send %d: the body is not JSON: %v", i, err)
				}
				if g.Code != tc.code || !contains(reasons(g), tc.reason) || wire.Error.Status != tc.status {
					t.Errorf("send %d: %d %v %s", i, g.Code, reasons(g), g.Body)
				}
				if tc.msg != "" && g.Message != tc.msg {
					t.Errorf("send %d: message %q, want %q", i, g.Message, tc.msg)
				}
				if tc.fault == sandbox.RateLimit429 || tc.fault == sandbox.DailyLimit429 {
					m := retryAfterMsg.FindStringSubmatch(g.Message)
					if m == nil {
						t.Fatalf("429 message %q", g.Message)
					}
					in := time.Minute
					if tc.fault == sandbox.DailyLimit429 {
						in = sandbox.DailyLimitRetryAfter
					}
					if want := e.clock.Now().Add(in).UTC().Format("2006-01-02T15:04:05.000Z"); m[1] != want {
						t.Errorf("retry after %s, want %s", m[1], want)
					}
					// No source shows a Retry-After header on this answer.
					if ra := g.Header.Get("Retry-After"); ra != "" {
						t.Errorf("Retry-After = %q, want none", ra)
					}
				}
			}
			// Consumed: the third send goes through, and nothing was stored
			// for the failed ones.
			if _, err := sendRaw(svc, message("b@example.org", "s", "b")); err != nil {
				t.Errorf("third send: %v", err)
			}
			if n := len(e.sb.Outbox()); n != 1 {
				t.Errorf("outbox holds %d, want 1", n)
			}
			if s := e.sb.Stats(); s.SendsFaulted != 2 || s.SendsAccepted != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestFaultTargeting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.gmail(e.connect("alice@example.com"))
	bob := e.gmail(e.connect("bob@example.com"))
	if err := e.sb.InjectGmailErrors("ALICE@example.com", sandbox.ServerError500, -1); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.InjectGmailErrors("", sandbox.Unavailable503, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := sendRaw(alice, message("x@example.org", "s", "b")); asGoogleErr(t, err).Code != 500 {
			t.Errorf("alice send %d: %v", i, err)
		}
	}
	// Alice's forever-fault never matches Bob; the any-account one does,
	// once.
	if _, err := sendRaw(bob, message("x@example.org", "s", "b")); asGoogleErr(t, err).Code != 503 {
		t.Errorf("bob first send: %v", err)
	}
	if _, err := sendRaw(bob, message("x@example.org", "s", "b")); err != nil {
		t.Errorf("bob second send: %v", err)
	}
	e.sb.ClearGmailErrors()
	if _, err := sendRaw(alice, message("x@example.org", "s", "b")); err != nil {
		t.Errorf("alice after clear: %v", err)
	}
	if err := e.sb.InjectGmailErrors("", sandbox.Fault("Teapot418"), 1); err == nil {
		t.Error("an unknown fault was accepted")
	}
}

// HangAfterBody is the ambiguous case: the message is stored, and the
// client hears nothing until it gives up.
func TestHangAfterBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.gmail(e.connect("alice@example.com"))
	if err := e.sb.InjectGmailErrors("", sandbox.HangAfterBody, 2); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		raw := base64.URLEncoding.EncodeToString(message("b@example.org", "s", "b"))
		_, err := svc.Users.Messages.Send("me", &gmail.Message{Raw: raw}).Context(ctx).Do()
		done <- err
	}()
	waitFor(t, "the message to be stored", func() bool { return len(e.sb.Outbox()) == 1 })
	select {
	case err := <-done:
		t.Fatalf("the send returned before its context ended: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("send error = %v, want context.Canceled", err)
	}

	// Close releases a hanging request: the client sees the connection end
	// without an answer.
	go func() {
		_, err := sendRaw(svc, message("b@example.org", "s2", "b"))
		done <- err
	}()
	waitFor(t, "the second message to be stored", func() bool { return len(e.sb.Outbox()) == 2 })
	_ = e.sb.Close()
	err := <-done
	var gerr *googleapi.Error
	if err == nil || errors.As(err, &gerr) {
		t.Errorf("send released by Close: %v, want a transport error", err)
	}
	if s := e.sb.Stats(); s.SendsAccepted != 2 || s.SendsFaulted != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestResetAfterBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.gmail(e.connect("alice@example.com"))
	if err := e.sb.InjectGmailErrors("", sandbox.ResetAfterBody, 1); err != nil {
		t.Fatal(err)
	}
	_, err := sendRaw(svc, message("b@example.org", "s", "b"))
	var gerr *googleapi.Error
	if err == nil || errors.As(err, &gerr) {
		t.Fatalf("send: %v, want a transport error", err)
	}
	if n := len(e.sb.Outbox()); n != 1 {
		t.Errorf("outbox holds %d, want 1: the message was accepted before the reset", n)
	}
}

// A resumable upload survives a lost answer to its last chunk: the client
// resends the chunk and gets the same answer, and the message is stored
// once.
func TestResumableLastChunkRetryIsNotADuplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.gmail(e.connect("alice@example.com"))
	if err := e.sb.InjectGmailErrors("", sandbox.ResetAfterBody, 1); err != nil {
		t.Fatal(err)
	}
	raw := message("b@example.org", "s", strings.Repeat("line\r\n", 100000))
	got, err := svc.Users.Messages.Send("me", &gmail.Message{}).
		Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(256*1024)).Do()
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	out := e.sb.Outbox()
	if len(out) != 1 || out[0].ID != got.Id {
		t.Errorf("outbox %+v, want exactly message %s", out, got.Id)
	}
	if s := e.sb.Stats(); s.SendsFaulted != 1 {
		t.Errorf("SendsFaulted = %d: the reset never happened", s.SendsFaulted)
	}
}

func TestSendRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.gmail(e.connect("alice@example.com"))
	bob := e.gmail(e.connect("bob@example.com"))
	e.sb.SetSendRate(0.5, 2) // one send every two seconds, bursts of two
	send := func(svc *gmail.Service) error {
		_, err := sendRaw(svc, message("x@example.org", "s", "b"))
		return err
	}
	for i := range 2 {
		if err := send(alice); err != nil {
			t.Fatalf("burst send %d: %v", i, err)
		}
	}
	err := send(alice)
	g := asGoogleErr(t, err)
	m := retryAfterMsg.FindStringSubmatch(g.Message)
	if g.Code != 429 || m == nil || !contains(reasons(g), "rateLimitExceeded") {
		t.Fatalf("over the limit: %v", err)
	}
	if want := e.clock.Now().Add(2 * time.Second).UTC().Format("2006-01-02T15:04:05.000Z"); m[1] != want {
		t.Errorf("retry after %s, want %s", m[1], want)
	}
	if ra := g.Header.Get("Retry-After"); ra != "" {
		t.Errorf("Retry-After = %q, want none: the time is in the message", ra)
	}
	// The limit is per user.
	if err := send(bob); err != nil {
		t.Errorf("bob: %v", err)
	}
	e.clock.Advance(time.Second)
	if err := send(alice); err == nil {
		t.Error("accepted before the retry time")
	}
	e.clock.Advance(time.Second)
	if err := send(alice); err != nil {
		t.Errorf("at the retry time: %v", err)
	}
	if s := e.sb.Stats(); s.SendsRateLimited != 2 || s.SendsAccepted != 4 {
		t.Errorf("stats %+v", s)
	}
	e.sb.SetSendRate(0, 0)
	for range 5 {
		if err := send(alice); err != nil {
			t.Errorf("after removing the limit: %v", err)
		}
	}
}

func TestLatencyRespectsContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.gmail(e.connect("alice@example.com"))
	e.sb.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	raw := base64.URLEncoding.EncodeToString(message("b@example.org", "s", "b"))
	_, err := svc.Users.Messages.Send("me", &gmail.Message{Raw: raw}).Context(ctx).Do()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if n := len(e.sb.Outbox()); n != 0 {
		t.Errorf("a message was stored although the client gave up first")
	}
	e.sb.SetLatency(0)
	if _, err := svc.Users.Messages.Send("me", &gmail.Message{Raw: raw}).Do(); err != nil {
		t.Errorf("without latency: %v", err)
	}
}

func TestRandomFaults(t *testing.T) {
	t.Parallel()
	run := func(seed int64) []int {
		e := newEnv(t)
		svc := e.gmail(e.connect("alice@example.com"))
		if err := e.sb.SetFaultRates(seed, map[sandbox.Fault]float64{sandbox.ServerError500: 0.3, sandbox.RateLimit429: 0.2}); err != nil {
			t.Fatal(err)
		}
		var codes []int
		for range 40 {
			_, err := sendRaw(svc, message("b@example.org", "s", "b"))
			code := 200
			if err != nil {
				code = asGoogleErr(t, err).Code
			}
			codes = append(codes, code)
		}
		s := e.sb.Stats()
		if s.SendsFaulted+s.SendsAccepted != 40 {
			t.Errorf("stats %+v do not add up to 40 sends", s)
		}
		return codes
	}
	a, b := run(7), run(7)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("the same seed gave different runs:\n%v\n%v", a, b)
	}
	count := map[int]int{}
	for _, c := range a {
		count[c]++
	}
	if count[500] == 0 || count[429] == 0 || count[200] == 0 || len(count) != 3 {
		t.Errorf("outcomes %v, want a mix of 200, 429 and 500 only", count)
	}

	e := newEnv(t)
	for _, bad := range []map[sandbox.Fault]float64{
		{sandbox.ServerError500: 0.7, sandbox.Unavailable503: 0.5},
		{sandbox.ServerError500: -0.1},
		{sandbox.Fault("nope"): 0.1},
	} {
		if err := e.sb.SetFaultRates(1, bad); err == nil {
			t.Errorf("SetFaultRates(%v) accepted", bad)
		}
	}
}

func TestResumableProtocol(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.connect("alice@example.com")
	raw := message("b@example.org", "raw protocol", strings.Repeat("z", 1000))
	base := e.ts.URL + "/upload/gmail/v1/users/me/messages/send"

	do := func(method, u string, body []byte, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, u, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := do("POST", base+"?uploadType=resumable", []byte(`{"threadId":"t1"}`), map[string]string{"X-Upload-Content-Type": "message/rfc822", "Content-Type": "application/json"})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 200 || !strings.Contains(loc, "upload_id=") {
		t.Fatalf("initiation: %d Location %q", resp.StatusCode, loc)
	}
	// Without X-GUploader-No-308 an incomplete upload answers 308 and a Range.
	resp = do("PUT", loc, raw[:400], map[string]string{"Content-Range": "bytes 0-399/*"})
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Range") != "bytes=0-399" {
		t.Errorf("first chunk: %d Range %q", resp.StatusCode, resp.Header.Get("Range"))
	}
	// A resent chunk overlapping what arrived is accepted once.
	resp = do("PUT", loc, raw[200:700], map[string]string{"Content-Range": "bytes 200-699/*", "X-GUploader-No-308": "yes"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Http-Status-Code-Override") != "308" || resp.Header.Get("Range") != "bytes=0-699" {
		t.Errorf("overlapping chunk: %d %v", resp.StatusCode, resp.Header)
	}
	// A gap is refused.
	resp = do("PUT", loc, raw[800:], map[string]string{"Content-Range": fmt.Sprintf("bytes 800-%d/%d", len(raw)-1, len(raw))})
	if resp.StatusCode != 400 {
		t.Errorf("chunk past a gap: %d", resp.StatusCode)
	}
	resp = do("PUT", loc, raw[700:], map[string]string{"Content-Range": fmt.Sprintf("bytes 700-%d/%d", len(raw)-1, len(raw))})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"threadId":"t1"`) {
		t.Fatalf("last chunk: %d %s", resp.StatusCode, body)
	}
	// Resending the last chunk repeats the answer and stores nothing new.
	resp = do("PUT", loc, raw[700:], map[string]string{"Content-Range": fmt.Sprintf("bytes 700-%d/%d", len(raw)-1, len(raw))})
	again, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(again) != string(body) {
		t.Errorf("repeat: %d %s", resp.StatusCode, again)
	}
	out := e.sb.Outbox()
	if len(out) != 1 || !bytes.Equal(readFile(t, out[0].Path), raw) {
		t.Errorf("outbox %+v", out)
	}
	// An unknown session is a 404.
	if resp := do("PUT", base+"?uploadType=resumable&upload_id=nope", raw, nil); resp.StatusCode != 404 {
		t.Errorf("unknown session: %d", resp.StatusCode)
	}
	// A declared size over the limit is refused at once.
	resp = do("POST", base+"?uploadType=resumable", nil, map[string]string{"X-Upload-Content-Type": "message/rfc822", "X-Upload-Content-Length": "36700161"})
	if resp.StatusCode != 400 {
		t.Errorf("oversized initiation: %d", resp.StatusCode)
	}
	// One PUT without Content-Range carries the whole message; a wrong
	// CRC32C fails the upload and stores nothing.
	for _, tc := range []struct {
		hash string
		want int
	}{{"crc32c=AAAAAA==", 400}, {"", 200}} {
		resp = do("POST", base+"?uploadType=resumable", nil, map[string]string{"X-Upload-Content-Type": "message/rfc822"})
		hdr := map[string]string{}
		if tc.hash != "" {
			hdr["X-Goog-Hash"] = tc.hash
		}
		if resp = do("PUT", resp.Header.Get("Location"), raw, hdr); resp.StatusCode != tc.want {
			t.Errorf("whole-body PUT with hash %q: %d, want %d", tc.hash, resp.StatusCode, tc.want)
		}
	}
	if n := len(e.sb.Outbox()); n != 2 {
		t.Errorf("outbox holds %d, want 2", n)
	}

	// uploadType=media takes the message as the body.
	resp = do("POST", base+"?uploadType=media", raw, map[string]string{"Content-Type": "message/rfc822"})
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("media upload: %d %s", resp.StatusCode, b)
	}
}

// TestOutboxSummary: the outbox lists each message's To and Subject, with
// encoded words decoded, so a person can find a message without opening it.
func TestOutboxSummary(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.gmail(e.connect("alice@example.com"))
	raw := message("Bob <bob@example.org>", "=?utf-8?q?Caf=C3=A9_42?=", "hello")
	if _, err := svc.Users.Messages.Send("me", &gmail.Message{Raw: base64.URLEncoding.EncodeToString(raw)}).Do(); err != nil {
		t.Fatal(err)
	}
	out := e.sb.Outbox()
	if got := out[len(out)-1]; got.To != "Bob <bob@example.org>" || got.Subject != "Café 42" {
		t.Errorf("outbox entry To %q, Subject %q; want %q, %q", got.To, got.Subject, "Bob <bob@example.org>", "Café 42")
	}
}
