package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/respond"
)

// Quota is a count of messages and recipients: a mailbox's limits, or
// what it sent in the rolling 24 hours.
type Quota struct {
	Messages int `json:"messages"`
	// Recipients is 0 in limits when the kind has no recipient limit.
	Recipients int `json:"recipients"`
}

// dailyLimitFix says what a valid daily_limit is. Above Workspace's 2,000
// Gmail refuses anyway, which is why the relay caps it there.
var dailyLimitFix = fmt.Sprintf(`Send {"daily_limit": N} with N a whole number from 1 to %d messages per rolling 24 hours, `+
	`or 0 to restore the default of the account's kind (Workspace %d, consumer Gmail %d).`,
	registry.MaxDailyLimit, registry.WorkspaceDailyMessages, registry.ConsumerDailyMessages)

// patchAccount is PATCH /accounts/{email} with {"daily_limit": N}, the one
// setting an operator changes this way.
func (h *Handler) patchAccount(w http.ResponseWriter, r *http.Request) {
	var body struct {
		DailyLimit *json.RawMessage `json:"daily_limit"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(&body)
	if field, ok := strings.CutPrefix(fmt.Sprint(err), "json: unknown field "); ok {
		respond.Error(w, r, http.StatusBadRequest, respond.APIError{Code: "invalid_request",
			Message: "Nothing was changed: " + field + " is not a setting PATCH changes; it changes only daily_limit.",
			Fix:     dailyLimitFix})
		return
	}
	if err != nil || body.DailyLimit == nil || dec.Decode(&struct{}{}) != io.EOF {
		respond.Error(w, r, http.StatusBadRequest, respond.APIError{Code: "invalid_request",
			Message: "The body must be one JSON object {\"daily_limit\": N} of at most 16 KiB.",
			Fix:     dailyLimitFix})
		return
	}
	limit, apiErr := parseDailyLimit(string(*body.DailyLimit))
	if apiErr != nil {
		respond.Error(w, r, http.StatusBadRequest, *apiErr)
		return
	}
	v, status, apiErr := h.doSetDailyLimit(r.Context(), email(r), limit)
	if apiErr != nil {
		respond.Error(w, r, status, *apiErr)
		return
	}
	respond.JSON(w, http.StatusOK, v)
}

// dailyLimitForm is the page's Set limit button: a POST whose daily_limit
// field holds the number, empty for the default. A browser goes back to
// the accounts page, which shows the new limit in its Today column.
func (h *Handler) dailyLimitForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	s := strings.TrimSpace(r.PostFormValue("daily_limit"))
	if s == "" {
		s = "0"
	}
	limit, apiErr := parseDailyLimit(s)
	if apiErr != nil {
		apiErr.Fix = "Go back and enter a whole number from 1 to " + strconv.Itoa(registry.MaxDailyLimit) + ", or 0 (or nothing) for the default of the account's kind."
		respond.Error(w, r, http.StatusBadRequest, *apiErr)
		return
	}
	v, status, apiErr := h.doSetDailyLimit(r.Context(), email(r), limit)
	if apiErr != nil {
		respond.Error(w, r, status, *apiErr)
		return
	}
	if !respond.WantsHTML(r) {
		respond.JSON(w, http.StatusOK, v)
		return
	}
	// Relative, so that it lands on the page whatever prefix the admin
	// is mounted under (make dev's /admin); http.Redirect would make it
	// absolute from the path this handler sees, without the prefix.
	w.Header().Set("Location", "../../accounts")
	w.WriteHeader(http.StatusSeeOther)
}

// parseDailyLimit reads s, a JSON value or a form field, as a limit.
func parseDailyLimit(s string) (int, *respond.APIError) {
	n, err := strconv.Atoi(s)
	if err != nil {
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return 0, &respond.APIError{Code: "invalid_request",
			Message: "Nothing was changed: daily_limit " + s + " is not a whole number.",
			Fix:     dailyLimitFix}
	}
	if n < 0 || n > registry.MaxDailyLimit {
		return 0, &respond.APIError{Code: "invalid_request",
			Message: fmt.Sprintf("Nothing was changed: daily_limit %d is outside 0..%d.", n, registry.MaxDailyLimit),
			Fix:     dailyLimitFix}
	}
	return n, nil
}

// doSetDailyLimit stores the limit. It decides; callers write the answer
// as JSON or a page.
func (h *Handler) doSetDailyLimit(ctx context.Context, e string, limit int) (*AccountView, int, *respond.APIError) {
	if e == "" {
		return nil, http.StatusNotFound, &respond.APIError{Code: "unknown_account",
			Message: "The path names no account.", Fix: "Use /accounts/{email} with the mailbox's address."}
	}
	a, err := h.settings().SetDailyLimit(ctx, e, limit, h.opts.Now().UTC())
	if errors.Is(err, registry.ErrNotFound) {
		return nil, http.StatusNotFound, &respond.APIError{Code: "unknown_account",
			Message: e + " has never been connected to this relay.",
			Fix:     "Send its owner the connect link; set its daily limit once it is connected."}
	}
	if err != nil {
		logging.FromContext(ctx).ErrorContext(ctx, "setting the daily limit failed", "account", e, "error", err)
		return nil, http.StatusServiceUnavailable, &respond.APIError{Code: "unavailable",
			Message: "Setting the daily limit failed; the log has the cause.", Fix: "Retry in a moment."}
	}
	l := a.Limits()
	// The guard put the verified caller on the logger: this line says who
	// set what.
	logging.FromContext(ctx).InfoContext(ctx, "daily limit set", "account", a.Email, "daily_limit", a.DailyLimit,
		"messages_per_day", l.Messages, "recipients_per_day", l.Recipients)
	v := h.view(a)
	return &v, http.StatusOK, nil
}
