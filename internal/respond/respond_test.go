package respond_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/respond"
)

// decodeError reads body as the one error shape and nothing else.
func decodeError(t *testing.T, body []byte) respond.APIError {
	t.Helper()
	var v struct {
		Error *respond.APIError `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Error == nil {
		t.Fatalf("body is not {\"error\":{\"code\",\"message\",\"fix\"}} (%v):\n%s", err, body)
	}
	return *v.Error
}

func TestError(t *testing.T) {
	t.Parallel()
	e := respond.APIError{Code: "unknown_account", Message: "carol@example.com has never been connected.", Fix: "Send its owner the connect link."}
	cases := []struct {
		name, accept string
		wantJSON     bool
	}{
		{"no Accept", "", true},
		{"any", "*/*", true},
		{"JSON", "application/json", true},
		{"browser", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"browser that also takes JSON", "text/html, application/json", true},
		{"JSON first, HTML second", "application/json, text/html", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			if c.accept != "" {
				r.Header.Set("Accept", c.accept)
			}
			w := httptest.NewRecorder()
			respond.Error(w, r, http.StatusNotFound, e)
			if w.Code != http.StatusNotFound {
				t.Errorf("status = %d, want 404", w.Code)
			}
			if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", got)
			}
			ct := w.Header().Get("Content-Type")
			if !c.wantJSON {
				body := w.Body.String()
				if !strings.HasPrefix(ct, "text/plain") || !strings.Contains(body, e.Message) || !strings.Contains(body, e.Fix) || !strings.Contains(body, e.Code) {
					t.Errorf("browser answer = %s\n%s", ct, body)
				}
				return
			}
			if !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("Content-Type = %q, want JSON", ct)
			}
			if got := decodeError(t, w.Body.Bytes()); got != e {
				t.Errorf("error = %+v, want %+v", got, e)
			}
		})
	}
}

// TestErrorShapeKeys pins the wire names, including an empty fix: clients
// read every key of every error.
func TestErrorShapeKeys(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	respond.Error(w, httptest.NewRequest(http.MethodGet, "/", nil), http.StatusServiceUnavailable, respond.APIError{Code: "c", Message: "m"})
	var raw map[string]map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 1 || len(raw["error"]) != 3 || raw["error"]["code"] != "c" || raw["error"]["message"] != "m" || raw["error"]["fix"] != "" {
		t.Errorf("body = %s", w.Body.Bytes())
	}
}

func TestJSONUnencodable(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	respond.JSON(w, http.StatusOK, map[string]any{"f": func() {}})
	if w.Code != http.StatusInternalServerError || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("answer = %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	if got := decodeError(t, w.Body.Bytes()); got.Code != "internal" || got.Message == "" || got.Fix == "" {
		t.Errorf("error = %+v", got)
	}
}

func TestWantsHTML(t *testing.T) {
	t.Parallel()
	for accept, want := range map[string]bool{
		"":                                  false,
		"*/*":                               false,
		"application/json":                  false,
		"text/html":                         true,
		"text/html;q=0.9, */*":              true,
		" text/html ,application/xhtml+xml": true,
		"application/xhtml+xml, text/html":  false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept", accept)
		if got := respond.WantsHTML(r); got != want {
			t.Errorf("WantsHTML(Accept: %q) = %v, want %v", accept, got, want)
		}
	}
}
