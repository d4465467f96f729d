package admin

import (
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/respond"
)

// maxFormBytes caps a form body: the largest holds one address.
const maxFormBytes = 16 << 10

// accountsPage is the accounts table with a row of buttons per mailbox.
type accountsPage struct {
	Accounts []accountRow
	Now      time.Time
	// MaxDailyLimit bounds the Set limit field, as the API does.
	MaxDailyLimit int
}

type accountRow struct {
	AccountView
	// Link is the connect link with the mailbox filled in, to copy: the
	// owner opens it to connect again, whatever the status.
	Link string
}

func (h *Handler) page(views []AccountView) accountsPage {
	p := accountsPage{Now: h.opts.Now().UTC(), MaxDailyLimit: registry.MaxDailyLimit}
	for _, v := range views {
		p.Accounts = append(p.Accounts, accountRow{AccountView: v, Link: h.opts.Checker.ReconnectURL(v.Email)})
	}
	return p
}

// Today is the row's Today cell: messages sent / the limit.
func (r accountRow) Today() string { return today(r.AccountView) }

// TodayDetail spells the cell out, recipients included, for its tooltip.
func (r accountRow) TodayDetail() string {
	s := fmt.Sprintf("%d of %d messages", r.UsedToday.Messages, r.Limits.Messages)
	if r.Limits.Recipients > 0 {
		s += fmt.Sprintf(" and %d of %d recipients", r.UsedToday.Recipients, r.Limits.Recipients)
	}
	if r.DailyLimit > 0 {
		s += " (limit set by the operator)"
	}
	return s + " in the last 24 hours"
}

// actionPage is what a button's form answers in a browser.
type actionPage struct {
	Title   string
	Account string
	OK      bool
	Tag     string
	Lines   []string
}

func (h *Handler) renderTest(w http.ResponseWriter, status int, out TestResult, send bool) {
	p := actionPage{Title: "Test of " + out.Account, Account: out.Account, OK: status == http.StatusOK, Tag: string(out.Outcome)}
	if out.Message != "" {
		p.Lines = append(p.Lines, out.Message)
	}
	switch out.Outcome {
	case health.OutcomeValid, health.OutcomeExpiring:
		p.Lines = append(p.Lines, "Google refreshed the token just now: the mailbox can send.")
	case health.OutcomeReauth:
		p.Lines = append(p.Lines, "The owner must reconnect: send them the reconnect link "+out.ReconnectURL)
	}
	if send {
		switch m := out.TestMessage; {
		case m == nil:
			p.Lines = append(p.Lines, "No test message was sent: the token did not work.")
		case m.Error != "":
			p.Lines = append(p.Lines, "The test message failed: "+m.Error)
		default:
			p.Lines = append(p.Lines, "Gmail accepted the test message (ID "+m.GmailMessageID+").")
		}
	}
	respond.Render(w, status, "action.html", p)
}

// disconnectForm is the page's Disconnect button: a POST that must carry
// confirm=yes, the ticked "I am sure" box, before anything is revoked.
func (h *Handler) disconnectForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	e := email(r)
	if r.PostFormValue("confirm") != "yes" {
		respond.Error(w, r, http.StatusBadRequest, respond.APIError{Code: "confirmation_required",
			Message: "Nothing was disconnected: the box confirming the disconnection of " + e + " was not ticked.",
			Fix:     "Go back, tick \"I am sure\" next to Disconnect, and press it again."})
		return
	}
	d, status, apiErr := h.doDisconnect(r.Context(), e)
	if apiErr != nil {
		respond.Error(w, r, status, *apiErr)
		return
	}
	if !respond.WantsHTML(r) {
		respond.JSON(w, http.StatusOK, d)
		return
	}
	p := actionPage{Title: "Disconnected " + d.Account, Account: d.Account, OK: true, Tag: string(d.Status)}
	if d.RevokedAtGoogle {
		p.Lines = append(p.Lines, "The access was revoked at Google.")
	}
	switch {
	case d.Note != "":
		p.Lines = append(p.Lines, d.Note)
	case d.TokenDestroyed:
		p.Lines = append(p.Lines, "The stored token was destroyed.")
	default:
		p.Lines = append(p.Lines, "No token was stored any more.")
	}
	p.Lines = append(p.Lines, "Sends from this mailbox now fail until its owner connects it again.")
	respond.Render(w, http.StatusOK, "action.html", p)
}

// bareAddress returns s normalised, or "" unless it is one bare address.
func bareAddress(s string) string {
	s = account.Normalize(s)
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return ""
	}
	return s
}

// wantsText reports whether the caller asked for text/plain first, as
// scripts/admin.sh list does for its table.
func wantsText(r *http.Request) bool {
	mt, _, _ := strings.Cut(r.Header.Get("Accept"), ",")
	mt, _, _ = strings.Cut(mt, ";")
	return strings.TrimSpace(mt) == "text/plain"
}

// writeTable writes the accounts as an aligned table for a terminal.
func writeTable(w http.ResponseWriter, views []AccountView) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tSTATUS\tKIND\tTODAY\tLAST REFRESH\tLAST ERROR")
	for _, v := range views {
		refresh := "never"
		if !v.LastRefreshAt.IsZero() {
			refresh = v.LastRefreshAt.UTC().Format("2006-01-02 15:04 MST")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Email, v.Status, v.Kind, today(v), refresh, oneLine(v.LastError))
	}
	_ = tw.Flush()
}

// today is the messages sent in the rolling 24 hours and the message
// limit, as the page's Today column shows them: "3 / 500".
func today(v AccountView) string {
	return fmt.Sprintf("%d / %d", v.UsedToday.Messages, v.Limits.Messages)
}

// oneLine keeps a table row on one line, cut to a terminal's width.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 80 {
		s = string(r[:79]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}
