// Package respond writes what the relay's HTTP functions answer: the pages
// people see (the connect page, the result of connecting, the operator's
// account table), JSON, and the one error shape every function shares.
// Templates are embedded so a function carries its pages with it, and
// html/template escapes every value.
package respond

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

//go:embed templates/*.html
var files embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"join": strings.Join,
	// pathescape makes an address one path segment of a form's action.
	"pathescape": url.PathEscape,
	"scopes": func(scopes []string) string {
		var out []string
		for _, sc := range scopes {
			if l, ok := scopeLabels[sc]; ok {
				out = append(out, l)
			} else {
				out = append(out, sc)
			}
		}
		return strings.Join(out, "; ")
	},
	"days": func(seconds int64) string {
		switch d := seconds / 86400; {
		case seconds <= 0:
			return ""
		case d == 0:
			return "under a day"
		case d == 1:
			return "1 day"
		default:
			return fmt.Sprintf("%d days", d)
		}
	},
}).ParseFS(files, "templates/*.html"))

// scopeLabels are the words Google's consent screen uses for each scope.
var scopeLabels = map[string]string{
	"https://www.googleapis.com/auth/gmail.send":     "Send email on your behalf",
	"https://www.googleapis.com/auth/userinfo.email": "See your primary Google Account email address",
	"email":  "See your primary Google Account email address",
	"openid": "Associate you with your personal info on Google",
}

// Render writes the named page with status. Rendering into a buffer first
// means a template error becomes a clean 500 rather than half a page.
func Render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self' https://accounts.google.com; base-uri 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// JSON writes v as JSON with status.
func JSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.MarshalIndent(errorBody{Error: APIError{Code: "internal", Message: "The answer could not be encoded.",
			Fix: "Retry; if it keeps failing, give the operator the time of the request."}}, "", "  ")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// APIError is the one error shape of every JSON answer the relay gives
// (DESIGN §3): a stable code for programs, a sentence for people, and what
// to do about it. On the wire it is {"error":{"code":…,"message":…,"fix":…}}.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

type errorBody struct {
	Error APIError `json:"error"`
}

// Error answers a failed request with e and status. Browsers (see
// WantsHTML) get e as plain text; everyone else gets the JSON shape. A
// caller with an HTML page of its own for the failure renders that page for
// browsers and calls Error for the rest.
func Error(w http.ResponseWriter, r *http.Request, status int, e APIError) {
	if WantsHTML(r) && !WantsJSON(r) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "%s\n\nWhat to do: %s\n\nError code: %s\n", e.Message, e.Fix, e.Code)
		return
	}
	JSON(w, status, errorBody{Error: e})
}

// WantsJSON reports whether the caller asked for JSON rather than a page.
func WantsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if mt == "application/json" {
			return true
		}
	}
	return false
}

// WantsHTML reports whether the caller is a browser: browsers list
// text/html first in Accept, where tools send */* or nothing.
func WantsHTML(r *http.Request) bool {
	mt, _, _ := strings.Cut(r.Header.Get("Accept"), ",")
	mt, _, _ = strings.Cut(mt, ";")
	return strings.TrimSpace(mt) == "text/html"
}
