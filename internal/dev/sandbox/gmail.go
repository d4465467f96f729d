package sandbox

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxMessageSize is users.messages.send's limit, from the Gmail discovery
// document ("maxSize": "36700160", 35 MB).
const maxMessageSize = 36700160

// maxJSONRequest is the largest request the JSON (non-upload) form of
// users.messages.send takes: "uploadType=media has a limit of max 5 mb"
// (a maintainer of Google's .NET client,
// https://github.com/googleapis/google-api-dotnet-client/issues/1357), and
// a 10 MB message fails where 5 MB passes
// (https://github.com/dacastro4/laravel-gmail/issues/111).
const maxJSONRequest = 5 << 20

// sendScopes are the scopes that allow users.messages.send.
var sendScopes = []string{ScopeGmailSend, ScopeMailGoogle, ScopeGmailCompose, ScopeGmailModify}

// OutboxMessage describes one accepted message.
type OutboxMessage struct {
	ID       string    `json:"id"`
	ThreadID string    `json:"threadId"`
	Email    string    `json:"email"` // the sending account
	Path     string    `json:"path"`  // the .eml file, exactly the bytes sent
	Size     int64     `json:"size"`
	Time     time.Time `json:"time"`
	// To and Subject are read from the message's header, for people
	// looking at the outbox; the .eml is what was sent.
	To      string `json:"to,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// summary reads To and Subject from raw's header, decoding encoded words;
// a header it cannot read leaves them empty.
func summary(raw []byte) (to, subject string) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return "", ""
	}
	subject = m.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = d
	}
	to = m.Header.Get("To")
	if d, err := new(mime.WordDecoder).DecodeHeader(to); err == nil {
		to = d
	}
	return to, subject
}

// Outbox returns the accepted messages, oldest first. With a StateDir it
// includes those accepted before a restart.
func (s *Server) Outbox() []OutboxMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outbox)
}

// principal is who a Gmail request acts for.
type principal struct {
	email    string
	clientID string
}

// sendMeta is the Message resource of a send request, as far as the sandbox
// reads it.
type sendMeta struct {
	Raw      *string `json:"raw"`
	ThreadID string  `json:"threadId"`
}

// sendResponse is the Message resource Gmail answers with.
type sendResponse struct {
	ID       string   `json:"id"`
	ThreadID string   `json:"threadId"`
	LabelIDs []string `json:"labelIds"`
}

var (
	errUnauthenticated = &googleError{
		Code:    http.StatusUnauthorized,
		Message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
		Errors: []errorItem{{
			Message: "Invalid Credentials", Domain: "global", Reason: "authError",
			Location: "Authorization", LocationType: "header",
		}},
		Status: "UNAUTHENTICATED",
	}
	// errNoCredentials is Google's answer when no credential was sent at
	// all, as opposed to a bad one.
	errNoCredentials = &googleError{
		Code:    http.StatusUnauthorized,
		Message: "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
		Errors: []errorItem{{
			Message: "Login Required.", Domain: "global", Reason: "required",
			Location: "Authorization", LocationType: "header",
		}},
		Status: "UNAUTHENTICATED",
	}
	errInsufficientScope = &googleError{
		Code:    http.StatusForbidden,
		Message: "Request had insufficient authentication scopes.",
		Errors:  []errorItem{{Message: "Insufficient Permission", Domain: "global", Reason: "insufficientPermissions"}},
		Status:  "PERMISSION_DENIED",
		Details: []any{map[string]any{
			"@type":  "type.googleapis.com/google.rpc.ErrorInfo",
			"reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
			"domain": "googleapis.com",
			"metadata": map[string]string{
				"service": "gmail.googleapis.com",
				"method":  "caribou.api.proto.MailboxService.SendMessage",
			},
		}},
	}
	errNoRaw = simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest",
		"'raw' RFC822 payload message string or uploading message via /upload/* URL required")
	errTooLarge = simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest",
		"Request payload size exceeds the limit: "+strconv.Itoa(maxMessageSize)+" bytes.")
	errNoRecipient = simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "invalidArgument",
		"Recipient address required")
	errBadBase64 = simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "invalid",
		"Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed")
	errBadJSON = simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "parseError",
		"Invalid JSON payload received.")
	errNotFound = &googleError{Code: http.StatusNotFound, Message: "Method not found.", Status: "NOT_FOUND"}
	errInternal = simpleError(http.StatusInternalServerError, "INTERNAL", "global", "backendError", "Backend Error")
)

func badRangeError() *googleError {
	return simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest", "Failed to parse Content-Range header.")
}

func mediaTypeError(ct string) *googleError {
	return simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badContent",
		"Media type '"+ct+"' is not supported. Valid media types: [message/*]")
}

func methodNotAllowed(method string) *googleError {
	return simpleError(http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "global", "httpMethodNotAllowed",
		"Method "+method+" is not allowed for this URL.")
}

// sendUserID extracts {userId} from "{userId}/messages/send".
func sendUserID(rest string) (string, bool) {
	user, tail, ok := strings.Cut(rest, "/")
	if !ok || user == "" || tail != "messages/send" {
		return "", false
	}
	return user, true
}

func (s *Server) handleGmail(w http.ResponseWriter, r *http.Request) {
	user, ok := sendUserID(strings.TrimPrefix(r.URL.Path, GmailPathPrefix))
	if !ok {
		writeGoogleError(w, errNotFound)
		return
	}
	if r.Method != http.MethodPost {
		writeGoogleError(w, methodNotAllowed(r.Method))
		return
	}
	p, fault, ok := s.preflight(w, r, user)
	if !ok {
		return
	}
	// Google's front end refuses a simple (non-upload) request over 5 MB
	// before Gmail sees it; larger messages must use the upload URL.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONRequest+1))
	if err != nil {
		s.reject(w, p, simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest", "The request body could not be read."))
		return
	}
	if r.ContentLength > maxJSONRequest || len(body) > maxJSONRequest {
		drain(r.Body)
		s.stats.sendsRejected.Add(1)
		s.log.Info("sandbox: JSON send over 5 MB refused", "email", p.email, "status", http.StatusRequestEntityTooLarge)
		tooLargeResponse().write(w)
		return
	}
	var meta sendMeta
	if err := json.Unmarshal(body, &meta); err != nil {
		s.reject(w, p, errBadJSON)
		return
	}
	if meta.Raw == nil || *meta.Raw == "" {
		s.reject(w, p, errNoRaw)
		return
	}
	raw, err := decodeRaw(*meta.Raw)
	if err != nil {
		s.reject(w, p, errBadBase64)
		return
	}
	s.deliver(w, r, p, meta.ThreadID, raw, fault)
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	user, ok := sendUserID(strings.TrimPrefix(r.URL.Path, UploadPathPrefix))
	if !ok {
		writeGoogleError(w, errNotFound)
		return
	}
	q := r.URL.Query()
	if id := q.Get("upload_id"); id != "" {
		s.uploadChunk(w, r, id)
		return
	}
	if r.Method != http.MethodPost {
		writeGoogleError(w, methodNotAllowed(r.Method))
		return
	}
	switch q.Get("uploadType") {
	case "multipart", "media", "resumable":
	default:
		writeGoogleError(w, simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest",
			"Invalid uploadType: the upload URL takes uploadType=media, multipart or resumable."))
		return
	}
	p, fault, ok := s.preflight(w, r, user)
	if !ok {
		return
	}
	switch q.Get("uploadType") {
	case "media":
		ct := r.Header.Get("Content-Type")
		if !isMessageType(ct) {
			drain(r.Body)
			s.reject(w, p, mediaTypeError(ct))
			return
		}
		raw, gerr := readBody(r, maxMessageSize)
		if gerr != nil {
			s.reject(w, p, gerr)
			return
		}
		s.deliver(w, r, p, "", raw, fault)
	case "multipart":
		if r.ContentLength > maxMessageSize+1<<20 {
			drain(r.Body)
			s.reject(w, p, errTooLarge)
			return
		}
		meta, raw, gerr := readMultipart(r)
		if gerr != nil {
			drain(r.Body)
			s.reject(w, p, gerr)
			return
		}
		s.deliver(w, r, p, meta.ThreadID, raw, fault)
	case "resumable":
		s.startResumable(w, r, p, fault)
	}
}

// preflight checks the credentials, then applies latency, the send rate, a
// consumer account's missing Gmail and a before-body fault, in the order
// Google's front end would. It returns the after-body fault, if one was
// picked, for the caller to apply once the message is stored.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request, user string) (principal, Fault, bool) {
	p, gerr := s.authenticate(r, user)
	if gerr != nil {
		drain(r.Body)
		s.stats.sendsRejected.Add(1)
		writeGoogleError(w, gerr)
		return p, "", false
	}
	s.mu.Lock()
	latency := s.knobs.latency
	retryAfter := s.knobs.faultRetryAfter
	noGmail := s.consumerWithoutGmailLocked(p.email)
	s.mu.Unlock()
	if !s.wait(r.Context(), latency) {
		return p, "", false
	}
	if noGmail {
		drain(r.Body)
		s.stats.sendsRejected.Add(1)
		s.log.Info("sandbox: send from a consumer account without Gmail", "email", p.email)
		faultResponse(MailDisabled400, s.now(), 0, p.clientID).write(w)
		return p, "", false
	}
	now := s.now()
	if at, ok := s.takeSendToken(p.email, now); !ok {
		drain(r.Body)
		s.stats.sendsRateLimited.Add(1)
		s.log.Info("sandbox: send rate-limited", "email", p.email)
		rateLimitResponse(at).write(w)
		return p, "", false
	}
	f, resp, ok := s.pickFault(p.email)
	if resp != nil {
		drain(r.Body)
		s.stats.sendsFaulted.Add(1)
		s.log.Info("sandbox: injected verbatim response", "email", p.email, "status", resp.Status)
		resp.write(w)
		return p, "", false
	}
	if !ok || f.afterBody() {
		return p, f, true
	}
	drain(r.Body)
	s.stats.sendsFaulted.Add(1)
	s.log.Info("sandbox: injected fault", "email", p.email, "fault", string(f))
	faultResponse(f, now, retryAfter, p.clientID).write(w)
	return p, "", false
}

// authenticate checks the bearer token, its scopes and the {userId}.
func (s *Server) authenticate(r *http.Request, user string) (principal, *googleError) {
	tok, ok := bearer(r)
	if !ok {
		if r.Header.Get("Authorization") == "" {
			return principal{}, errNoCredentials
		}
		return principal{}, errUnauthenticated
	}
	s.mu.Lock()
	at, live := s.st.Access[hashToken(tok)]
	if live && !s.now().Before(at.Expiry) {
		live = false
	}
	var p principal
	var scopes []string
	if live {
		p = principal{email: at.Email, clientID: at.ClientID}
		scopes = at.Scopes
	}
	s.mu.Unlock()
	if !live {
		return principal{}, errUnauthenticated
	}
	if !slices.ContainsFunc(scopes, func(sc string) bool { return slices.Contains(sendScopes, sc) }) {
		return p, errInsufficientScope
	}
	if user != "me" && normalizeEmail(user) != p.email {
		msg := "Delegation denied for " + p.email
		return p, simpleError(http.StatusForbidden, "PERMISSION_DENIED", "global", "forbidden", msg)
	}
	return p, nil
}

// bearer takes the access token from the Authorization header or, as Google
// also allows, the access_token query parameter.
func bearer(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", false
		}
		return strings.TrimSpace(tok), true
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		return tok, true
	}
	return "", false
}

func (s *Server) reject(w http.ResponseWriter, p principal, e *googleError) {
	s.stats.sendsRejected.Add(1)
	s.log.Info("sandbox: send rejected", "email", p.email, "status", e.Code, "reason", firstReason(e))
	writeGoogleError(w, e)
}

func firstReason(e *googleError) string {
	if len(e.Errors) > 0 {
		return e.Errors[0].Reason
	}
	return e.Status
}

// readBody reads a request body of at most limit bytes. A declared length
// over the limit is refused without buffering the body.
func readBody(r *http.Request, limit int64) ([]byte, *googleError) {
	if r.ContentLength > limit {
		drain(r.Body)
		return nil, errTooLarge
	}
	return readLimited(r.Body, limit)
}

// readLimited reads a whole body, refusing more than limit bytes with
// Gmail's size error.
func readLimited(r io.Reader, limit int64) ([]byte, *googleError) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest", "The request body could not be read.")
	}
	if int64(len(b)) > limit {
		drain(r)
		return nil, errTooLarge
	}
	return b, nil
}

// drain reads what the client sent, so that it is not cut off mid-upload
// and sees the error instead of a broken pipe.
func drain(r io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 2*maxMessageSize))
}

// decodeRaw accepts what Google's JSON mapping of bytes accepts: base64url
// or standard base64, with or without padding.
func decodeRaw(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("raw is not base64")
}

func isMessageType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && strings.HasPrefix(mt, "message/")
}

// readMultipart reads a multipart/related upload: the Message resource as
// JSON, then the message itself.
func readMultipart(r *http.Request) (sendMeta, []byte, *googleError) {
	var meta sendMeta
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return meta, nil, simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest",
			"Invalid multipart request: Content-Type must be multipart/related with a boundary.")
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	first, err := mr.NextPart()
	if err != nil {
		return meta, nil, errNoRaw
	}
	mb, gerr := readLimited(partReader(first), 1<<20)
	if gerr != nil {
		return meta, nil, gerr
	}
	if len(bytes.TrimSpace(mb)) > 0 {
		if err := json.Unmarshal(mb, &meta); err != nil {
			return meta, nil, errBadJSON
		}
	}
	media, err := mr.NextPart()
	if err != nil {
		return meta, nil, errNoRaw
	}
	if ct := media.Header.Get("Content-Type"); !isMessageType(ct) {
		return meta, nil, mediaTypeError(ct)
	}
	raw, gerr := readLimited(partReader(media), maxMessageSize)
	if gerr != nil {
		return meta, nil, gerr
	}
	return meta, raw, nil
}

// partReader honours a base64 Content-Transfer-Encoding, which Google's
// upload protocol allows on the media part.
func partReader(p *multipart.Part) io.Reader {
	if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "base64") {
		return base64.NewDecoder(base64.StdEncoding, p)
	}
	return p
}

// validateMessage applies the checks Gmail makes before it sends: the
// message must parse as RFC 5322 and name at least one recipient in To, Cc
// or Bcc.
func validateMessage(raw []byte) *googleError {
	if len(raw) == 0 {
		return errNoRaw
	}
	if len(raw) > maxMessageSize {
		return errTooLarge
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return errNoRecipient
	}
	n := 0
	for _, h := range []string{"To", "Cc", "Bcc"} {
		if strings.TrimSpace(m.Header.Get(h)) == "" {
			continue
		}
		list, err := m.Header.AddressList(h)
		if err != nil {
			return simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "invalidArgument", "Invalid "+h+" header")
		}
		n += len(list)
	}
	if n == 0 {
		return errNoRecipient
	}
	return nil
}

// deliver validates and stores a message, then answers, unless an
// after-body fault withholds the answer.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, p principal, threadID string, raw []byte, fault Fault) {
	if gerr := validateMessage(raw); gerr != nil {
		s.reject(w, p, gerr)
		return
	}
	msg, err := s.store(p.email, threadID, raw)
	if err != nil {
		s.log.Error("sandbox: store message", "error", err)
		writeGoogleError(w, errInternal)
		return
	}
	s.answer(w, r, msg, fault)
}

// answer writes the send response or applies an after-body fault.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, msg OutboxMessage, fault Fault) {
	switch fault {
	case HangAfterBody:
		s.stats.sendsFaulted.Add(1)
		s.log.Info("sandbox: message stored, answer withheld (HangAfterBody)", "email", msg.Email, "id", msg.ID)
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		// No response at all: a handler that returned normally would send
		// an empty 200.
		panic(http.ErrAbortHandler)
	case ResetAfterBody:
		s.stats.sendsFaulted.Add(1)
		s.log.Info("sandbox: message stored, connection reset (ResetAfterBody)", "email", msg.Email, "id", msg.ID)
		resetConnection(w)
		return
	}
	writeJSON(w, http.StatusOK, sendResponse{ID: msg.ID, ThreadID: msg.ThreadID, LabelIDs: []string{"SENT"}})
}

// resetConnection drops the connection with a TCP reset where it can, and
// aborts the response otherwise (HTTP/2, or a wrapped writer).
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST rather than FIN
	}
	_ = conn.Close()
}

// store writes the message to the outbox as <unix-nanos>-<id>.eml, through
// a temporary file in the same directory and a rename, so that a reader
// never sees part of a message.
func (s *Server) store(email, threadID string, raw []byte) (OutboxMessage, error) {
	raw = s.applySendAs(email, raw)
	now := s.now()
	id := s.newMessageID(now)
	if threadID == "" {
		threadID = id
	}
	path := filepath.Join(s.outboxDir, fmt.Sprintf("%d-%s.eml", now.UnixNano(), id))
	if err := writeOutboxFile(path, raw); err != nil {
		s.mu.Lock()
		delete(s.ids, id)
		s.mu.Unlock()
		return OutboxMessage{}, err
	}
	msg := OutboxMessage{ID: id, ThreadID: threadID, Email: email, Path: path, Size: int64(len(raw)), Time: now}
	msg.To, msg.Subject = summary(raw)
	s.mu.Lock()
	s.outbox = append(s.outbox, msg)
	s.mu.Unlock()
	s.appendOutboxIndex(msg)
	s.stats.sendsAccepted.Add(1)
	s.log.Info("sandbox: message accepted", "email", email, "id", id, "size", len(raw))
	return msg, nil
}

func writeOutboxFile(path string, raw []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".incoming-*.partial")
	if err != nil {
		return fmt.Errorf("create outbox file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(raw); err != nil {
		_ = f.Close()
		return fmt.Errorf("write outbox file: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close outbox file: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("publish outbox file: %w", err)
	}
	return nil
}

// newMessageID makes a 16-hex-digit ID that, like Gmail's, grows with time:
// milliseconds in the high bits, randomness in the low 20.
func (s *Server) newMessageID(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		v := uint64(now.UnixMilli())<<20 | uint64(binary.BigEndian.Uint32(randomBytes(4))&0xFFFFF)
		id := fmt.Sprintf("%016x", v)
		if !s.ids[id] {
			s.ids[id] = true
			return id
		}
	}
}

// appendOutboxIndex records a message in StateDir/outbox.jsonl, so that
// Outbox survives a restart.
func (s *Server) appendOutboxIndex(msg OutboxMessage) {
	if s.indexPath == "" {
		return
	}
	line, err := json.Marshal(msg)
	if err != nil {
		s.log.Error("sandbox: encode outbox index", "error", err)
		return
	}
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	f, err := os.OpenFile(s.indexPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		s.log.Error("sandbox: open outbox index", "error", err)
		return
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		s.log.Error("sandbox: append outbox index", "error", err)
	}
	if err := f.Close(); err != nil {
		s.log.Error("sandbox: close outbox index", "error", err)
	}
}

// loadOutboxIndex reads the index written by earlier runs, keeping entries
// whose file still exists. A torn last line (a crash mid-append) is skipped.
func (s *Server) loadOutboxIndex() error {
	if s.indexPath == "" {
		return nil
	}
	b, err := os.ReadFile(s.indexPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox: read outbox index: %w", err)
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var msg OutboxMessage
		if json.Unmarshal(line, &msg) != nil {
			continue
		}
		if _, err := os.Stat(msg.Path); err != nil {
			continue
		}
		s.outbox = append(s.outbox, msg)
		s.ids[msg.ID] = true
	}
	return nil
}

// uploadSession is one resumable upload.
type uploadSession struct {
	mu        sync.Mutex
	p         principal
	threadID  string
	mediaType string
	fault     Fault
	buf       []byte
	created   time.Time
	done      bool
	result    []byte // the final answer, repeated if the last chunk is resent
}

// resumableLifetime bounds how long an unfinished upload keeps its bytes.
const resumableLifetime = 24 * time.Hour

// startResumable opens an upload session and answers with its URI in
// Location, as Google's resumable protocol does.
func (s *Server) startResumable(w http.ResponseWriter, r *http.Request, p principal, fault Fault) {
	body, gerr := readLimited(r.Body, 1<<20)
	if gerr != nil {
		s.reject(w, p, gerr)
		return
	}
	var meta sendMeta
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &meta); err != nil {
			s.reject(w, p, errBadJSON)
			return
		}
	}
	ct := r.Header.Get("X-Upload-Content-Type")
	if ct != "" && !isMessageType(ct) {
		s.reject(w, p, mediaTypeError(ct))
		return
	}
	if l := r.Header.Get("X-Upload-Content-Length"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n < 0 {
			s.reject(w, p, simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest", "Invalid X-Upload-Content-Length header."))
			return
		}
		if n > maxMessageSize {
			s.reject(w, p, errTooLarge)
			return
		}
	}
	now := s.now()
	id := randomString(32)
	s.mu.Lock()
	for k, u := range s.uploads {
		if now.Sub(u.created) > resumableLifetime {
			delete(s.uploads, k)
		}
	}
	s.uploads[id] = &uploadSession{p: p, threadID: meta.ThreadID, mediaType: ct, fault: fault, created: now}
	s.mu.Unlock()

	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	q := r.URL.Query()
	q.Del("upload_id")
	q.Set("uploadType", "resumable")
	q.Set("upload_id", id)
	w.Header().Set("Location", scheme+"://"+r.Host+r.URL.Path+"?"+q.Encode())
	w.Header().Set("X-GUploader-UploadID", id)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// contentRange is a parsed "bytes first-last/total"; -1 stands for "*".
type contentRange struct {
	first, last, total int64
}

func parseContentRange(h string) (contentRange, bool) {
	cr := contentRange{first: -1, last: -1, total: -1}
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes ")
	if !ok {
		return cr, false
	}
	rng, total, ok := strings.Cut(spec, "/")
	if !ok {
		return cr, false
	}
	if total != "*" {
		n, err := strconv.ParseInt(total, 10, 64)
		if err != nil || n < 0 {
			return cr, false
		}
		cr.total = n
	}
	if rng == "*" {
		return cr, true
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return cr, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first {
		return cr, false
	}
	cr.first, cr.last = first, last
	return cr, true
}

// uploadChunk takes a piece of a resumable upload (PUT or POST, with or
// without Content-Range) and, when the last byte is in, sends the message.
func (s *Server) uploadChunk(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		writeGoogleError(w, methodNotAllowed(r.Method))
		return
	}
	s.mu.Lock()
	u := s.uploads[id]
	s.mu.Unlock()
	if u == nil {
		drain(r.Body)
		writeGoogleError(w, &googleError{Code: http.StatusNotFound, Message: "No upload session with this upload_id; it expired, failed or never existed.", Status: "NOT_FOUND"})
		return
	}

	u.mu.Lock()
	if u.done {
		// The client resent the last chunk, e.g. after losing the answer:
		// repeat the answer rather than sending the message again.
		res := u.result
		u.mu.Unlock()
		drain(r.Body)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(res)
		return
	}
	data, gerr := readBody(r, maxMessageSize)
	if gerr != nil {
		u.mu.Unlock()
		s.dropUpload(id)
		s.reject(w, u.p, gerr)
		return
	}
	received := int64(len(u.buf))
	cr := contentRange{first: 0, last: int64(len(data)) - 1, total: int64(len(data))}
	if h := r.Header.Get("Content-Range"); h != "" {
		var ok bool
		if cr, ok = parseContentRange(h); !ok || (cr.first >= 0 && cr.last-cr.first+1 != int64(len(data))) || (cr.first < 0 && len(data) > 0) {
			u.mu.Unlock()
			writeGoogleError(w, badRangeError())
			return
		}
	} else {
		// A whole upload in one request replaces anything received so far.
		u.buf, received = u.buf[:0], 0
	}
	if cr.first > received {
		u.mu.Unlock()
		writeGoogleError(w, simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "badRequest", fmt.Sprintf(
			"Invalid request. According to the Content-Range header, the upload offset is %d byte(s), which exceeds already uploaded size of %d byte(s).",
			cr.first, received)))
		return
	}
	if cr.first >= 0 && cr.last+1 > received {
		u.buf = append(u.buf, data[received-cr.first:]...)
	}
	received = int64(len(u.buf))
	if received > maxMessageSize {
		u.mu.Unlock()
		s.dropUpload(id)
		s.reject(w, u.p, errTooLarge)
		return
	}
	if cr.total < 0 || received < cr.total {
		u.mu.Unlock()
		resumeIncomplete(w, r, received)
		return
	}
	if received > cr.total {
		u.mu.Unlock()
		writeGoogleError(w, badRangeError())
		return
	}

	// The upload is complete.
	mediaType := u.mediaType
	if mediaType == "" {
		mediaType = r.Header.Get("Content-Type")
	}
	if !isMessageType(mediaType) {
		u.mu.Unlock()
		s.dropUpload(id)
		s.reject(w, u.p, mediaTypeError(mediaType))
		return
	}
	if gerr := checkCRC32C(r.Header.Get("X-Goog-Hash"), u.buf); gerr != nil {
		u.mu.Unlock()
		s.dropUpload(id)
		s.reject(w, u.p, gerr)
		return
	}
	if gerr := validateMessage(u.buf); gerr != nil {
		u.mu.Unlock()
		s.dropUpload(id)
		s.reject(w, u.p, gerr)
		return
	}
	msg, err := s.store(u.p.email, u.threadID, u.buf)
	if err != nil {
		u.mu.Unlock()
		s.log.Error("sandbox: store message", "error", err)
		writeGoogleError(w, errInternal)
		return
	}
	u.result, _ = json.Marshal(sendResponse{ID: msg.ID, ThreadID: msg.ThreadID, LabelIDs: []string{"SENT"}})
	u.done = true
	u.buf = nil
	fault := u.fault
	u.mu.Unlock()
	s.answer(w, r, msg, fault)
}

func (s *Server) dropUpload(id string) {
	s.mu.Lock()
	delete(s.uploads, id)
	s.mu.Unlock()
}

// resumeIncomplete is Google's "308 Resume Incomplete". A client that sends
// X-GUploader-No-308: yes (the Go client does) gets 200 with the 308 in
// X-HTTP-Status-Code-Override instead.
func resumeIncomplete(w http.ResponseWriter, r *http.Request, received int64) {
	if received > 0 {
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", received-1))
	}
	w.Header().Set("Content-Length", "0")
	if strings.EqualFold(r.Header.Get("X-GUploader-No-308"), "yes") {
		w.Header().Set("X-HTTP-Status-Code-Override", "308")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusPermanentRedirect)
}

// checkCRC32C verifies an "X-Goog-Hash: crc32c=<base64>" sent with the last
// chunk, as Google's upload service does.
func checkCRC32C(header string, data []byte) *googleError {
	for part := range strings.SplitSeq(header, ",") {
		v, ok := strings.CutPrefix(strings.TrimSpace(part), "crc32c=")
		if !ok {
			continue
		}
		want, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(want) != 4 {
			return simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "invalid", "Invalid X-Goog-Hash header.")
		}
		got := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
		if binary.BigEndian.Uint32(want) != got {
			return simpleError(http.StatusBadRequest, "INVALID_ARGUMENT", "global", "invalid",
				"Provided CRC32C \""+v+"\" doesn't match calculated CRC32C.")
		}
	}
	return nil
}
