package sandbox

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// Gmail keeps each mailbox's send-as aliases (Settings, Accounts, "Send
// mail as"; users.settings.sendAs in the API, which gmail.send cannot
// read). users.messages.send does not refuse a message whose From is
// neither the mailbox's address nor one of them: it sends it From the
// mailbox's address, silently, as its users keep finding
// (n8n-io/n8n#13668, googleapis/google-api-php-client#2393). The sandbox
// does the same, so that a relay which let such a From through would show
// it in the outbox rather than pass its tests.

// sendAsBook holds the aliases by normalized mailbox address. Its zero value
// is ready; it has its own lock because the accept path reads it outside
// s.mu.
type sendAsBook struct {
	mu sync.Mutex
	by map[string][]string
}

// SetAliases replaces email's verified send-as aliases; an empty list leaves
// it only its own address. Like Gmail's settings they are the mailbox's,
// so Reset keeps them.
func (s *Server) SetAliases(email string, aliases []string) {
	email = normalizeEmail(email)
	var clean []string
	for _, a := range aliases {
		if a = normalizeEmail(a); a != "" && a != email && !slices.Contains(clean, a) {
			clean = append(clean, a)
		}
	}
	b := &s.sendAs
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(clean) == 0 {
		delete(b.by, email)
		return
	}
	if b.by == nil {
		b.by = make(map[string][]string)
	}
	b.by[email] = clean
}

// Aliases returns email's send-as aliases.
func (s *Server) Aliases(email string) []string {
	b := &s.sendAs
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.by[normalizeEmail(email)])
}

func (s *Server) mayUseFrom(email, from string) bool {
	from = normalizeEmail(from)
	return from == normalizeEmail(email) || slices.Contains(s.Aliases(email), from)
}

// applySendAs returns raw as Gmail would send it from email: a From that is
// not email nor one of its aliases is replaced by email under the same
// display name, and a missing From becomes email. Other header fields are
// written back as they came. A header Gmail would refuse has already been
// refused (validateMessage), so one that does not parse here is left alone.
func (s *Server) applySendAs(email string, raw []byte) []byte {
	br := bufio.NewReader(bytes.NewReader(raw))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return raw
	}
	from := &mail.Address{Address: email}
	if v := h.Get("From"); strings.TrimSpace(v) != "" {
		list, err := (&mail.AddressParser{}).ParseList(v)
		if err != nil || len(list) != 1 {
			return raw
		}
		if s.mayUseFrom(email, list[0].Address) {
			return raw
		}
		from.Name = list[0].Name
	}
	s.log.Info("sandbox: From rewritten to the mailbox's address, as Gmail does for an address that is not a send-as alias", "email", email)
	h.Set("From", from.String())
	var b bytes.Buffer
	b.Grow(len(raw) + len(email))
	if err := textproto.WriteHeader(&b, h); err != nil {
		return raw
	}
	_, _ = io.Copy(&b, br)
	return b.Bytes()
}

// ctlAliases is POST /sandbox/aliases {"email": "...", "aliases": [...]}.
func (s *Server) ctlAliases(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email   string   `json:"email"`
		Aliases []string `json:"aliases"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if !strings.Contains(req.Email, "@") {
		writeJSON(w, http.StatusBadRequest, ctlError{"email is required: the mailbox whose send-as aliases these are"})
		return
	}
	for _, a := range req.Aliases {
		if _, err := mail.ParseAddress(a); err != nil || strings.ContainsAny(a, "<>") {
			writeJSON(w, http.StatusBadRequest, ctlError{"aliases must be bare addresses such as sales@example.com"})
			return
		}
	}
	s.SetAliases(req.Email, req.Aliases)
	writeJSON(w, http.StatusOK, map[string]any{"email": normalizeEmail(req.Email), "aliases": nonNil(s.Aliases(req.Email))})
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
