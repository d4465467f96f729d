package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/respond"
)

// Settings stores what an operator sets on an account in the registry.
type Settings interface {
	SetAliases(ctx context.Context, email string, aliases []string, now time.Time) (*registry.Account, error)
	SetDailyLimit(ctx context.Context, email string, limit int, now time.Time) (*registry.Account, error)
}

var (
	_ Settings = (*registry.Local)(nil)
	_ Settings = (*registry.Firestore)(nil)
)

// aliasFix says what an alias needs besides the registration here: Gmail
// sends only from addresses the owner verified, and silently replaces any
// other From.
const aliasFix = "The mailbox's owner must first add and verify each alias in Gmail (Settings, Accounts, \"Send mail as\"); " +
	"Gmail sends any other From as the mailbox's own address."

// setAliases is PUT /accounts/{email}/aliases with {"aliases": [...]}.
func (h *Handler) setAliases(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Aliases *[]string `json:"aliases"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Aliases == nil || dec.Decode(&struct{}{}) != io.EOF {
		respond.Error(w, r, http.StatusBadRequest, respond.APIError{Code: "invalid_request",
			Message: "The body must be one JSON object {\"aliases\": [...]} of at most 16 KiB.",
			Fix:     `Send {"aliases": ["sales@example.com"]}; an empty list removes every alias.`})
		return
	}
	v, status, apiErr := h.doSetAliases(r.Context(), email(r), *body.Aliases)
	if apiErr != nil {
		respond.Error(w, r, status, *apiErr)
		return
	}
	respond.JSON(w, http.StatusOK, v)
}

// aliasesForm is the page's Save aliases button: a POST whose aliases field
// holds the addresses separated by commas, spaces or line breaks.
func (h *Handler) aliasesForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	list := strings.FieldsFunc(r.PostFormValue("aliases"), func(c rune) bool {
		return c == ',' || c == ';' || c == ' ' || c == '\t' || c == '\r' || c == '\n'
	})
	v, status, apiErr := h.doSetAliases(r.Context(), email(r), list)
	if apiErr != nil {
		respond.Error(w, r, status, *apiErr)
		return
	}
	if !respond.WantsHTML(r) {
		respond.JSON(w, http.StatusOK, v)
		return
	}
	p := actionPage{Title: "Send-as aliases of " + v.Email, Account: v.Email, OK: true, Tag: fmt.Sprintf("%d aliases", len(v.Aliases))}
	if len(v.Aliases) == 0 {
		p.Lines = append(p.Lines, "No alias is registered: requests may send only as "+v.Email+".")
	} else {
		p.Lines = append(p.Lines, "Requests may now send as "+v.Email+" or as "+strings.Join(v.Aliases, ", ")+" (the request's from).")
	}
	p.Lines = append(p.Lines, aliasFix)
	respond.Render(w, http.StatusOK, "action.html", p)
}

// doSetAliases validates the list and stores it. It decides; callers write
// the answer as JSON or a page.
func (h *Handler) doSetAliases(ctx context.Context, e string, list []string) (*AccountView, int, *respond.APIError) {
	if e == "" {
		return nil, http.StatusNotFound, &respond.APIError{Code: "unknown_account",
			Message: "The path names no account.", Fix: "Use /accounts/{email}/aliases with the mailbox's address."}
	}
	var clean, bad []string
	for _, s := range list {
		a := bareAddress(s)
		switch {
		case a == "":
			bad = append(bad, fmt.Sprintf("%q is not one bare address", s))
		case a == e:
			bad = append(bad, a+" is the account itself, which needs no alias")
		case !slices.Contains(clean, a):
			clean = append(clean, a)
		}
	}
	if len(bad) > 0 {
		return nil, http.StatusBadRequest, &respond.APIError{Code: "invalid_request",
			Message: "No alias was changed: " + strings.Join(bad, "; ") + ".",
			Fix:     "List bare addresses such as sales@example.com, other than the account's own. " + aliasFix}
	}
	if len(clean) > registry.MaxAliases {
		return nil, http.StatusBadRequest, &respond.APIError{Code: "invalid_request",
			Message: fmt.Sprintf("No alias was changed: %d aliases, over the limit of %d per account.", len(clean), registry.MaxAliases),
			Fix:     "Register only the addresses the relay's apps send as."}
	}
	a, err := h.settings().SetAliases(ctx, e, clean, h.opts.Now().UTC())
	if errors.Is(err, registry.ErrNotFound) {
		return nil, http.StatusNotFound, &respond.APIError{Code: "unknown_account",
			Message: e + " has never been connected to this relay.",
			Fix:     "Send its owner the connect link; register its aliases once it is connected."}
	}
	if err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "setting the aliases failed", "account", e, "error", err)
		return nil, http.StatusServiceUnavailable, &respond.APIError{Code: "unavailable",
			Message: "Setting the aliases failed; the log has the cause.", Fix: "Retry in a moment."}
	}
	logging.FromContext(ctx).InfoContext(ctx, "send-as aliases set", "account", a.Email, "aliases", len(a.Aliases))
	v := h.view(a)
	return &v, http.StatusOK, nil
}

// settings is Options.Settings, or else the registry the checker reads,
// which is the same store in every wiring.
func (h *Handler) settings() Settings {
	if h.opts.Settings != nil {
		return h.opts.Settings
	}
	if s, ok := h.opts.Checker.Accounts.(Settings); ok {
		return s
	}
	return noSettings{}
}

// noSettings is an account store that keeps no operator settings.
type noSettings struct{}

var errNoSettings = errors.New("admin: the account store keeps no operator settings")

func (noSettings) SetAliases(context.Context, string, []string, time.Time) (*registry.Account, error) {
	return nil, errNoSettings
}

func (noSettings) SetDailyLimit(context.Context, string, int, time.Time) (*registry.Account, error) {
	return nil, errNoSettings
}
