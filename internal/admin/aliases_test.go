package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/admin"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/googletest"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// aliasStore is a registry store as the admin reads it.
type aliasStore interface {
	health.Accounts
	Upsert(ctx context.Context, a *registry.Account) error
}

func send(t *testing.T, srv *httptest.Server, method, path, contentType, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestAliasesRoundTrip: PUT /accounts/{email}/aliases stores the list
// normalized, GET /accounts and GET /accounts/{email} show it, the page's
// form sets it too and shows it in its textarea, an empty list clears it,
// and what is not an alias is refused with a fix that names Gmail's
// verification; on both registry stores.
func TestAliasesRoundTrip(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"local", "firestore"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			st := googletest.New(t)
			var reg aliasStore = st.Registry
			if backend == "firestore" {
				reg = registry.NewFirestore(testenv.FirestoreClient(t))
			}
			if err := reg.Upsert(context.Background(), &registry.Account{Email: "alice@example.com", Status: registry.StatusConnected, UpdatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(admin.New(admin.Options{
				Checker: &health.Checker{Tokens: st.Tokens, Accounts: reg, OAuth: st.OAuth, ConnectURL: "https://relay.example.com/authorize"},
				Tokens:  st.Tokens, Revoker: st.OAuth,
			}))
			t.Cleanup(srv.Close)
			aliasesOf := func(path string) []string {
				t.Helper()
				code, body := send(t, srv, "GET", path, "", "", nil)
				var one admin.AccountView
				var all struct{ Accounts []admin.AccountView }
				if strings.HasSuffix(path, "/accounts") {
					if err := json.Unmarshal(body, &all); err != nil || len(all.Accounts) != 1 {
						t.Fatalf("GET %s = %d %s", path, code, body)
					}
					one = all.Accounts[0]
				} else if err := json.Unmarshal(body, &one); err != nil {
					t.Fatalf("GET %s = %d %s", path, code, body)
				}
				if one.Aliases == nil {
					t.Errorf("GET %s has no aliases field: %s", path, body)
				}
				return one.Aliases
			}
			if got := aliasesOf("/accounts"); len(got) != 0 {
				t.Errorf("aliases before any were set: %v", got)
			}

			want := []string{"billing@example.com", "sales@acme.example"}
			code, body := send(t, srv, "PUT", "/accounts/"+url.PathEscape("Alice@Example.com")+"/aliases", "application/json",
				`{"aliases": ["Sales@Acme.example", " billing@example.com", "BILLING@example.com"]}`, nil)
			var v admin.AccountView
			if err := json.Unmarshal(body, &v); code != http.StatusOK || err != nil || !slices.Equal(v.Aliases, want) || v.Email != "alice@example.com" {
				t.Fatalf("PUT aliases = %d %s; want 200 with %v", code, body, want)
			}
			if got := aliasesOf("/accounts"); !slices.Equal(got, want) {
				t.Errorf("GET /accounts aliases = %v, want %v", got, want)
			}
			if got := aliasesOf("/accounts/alice@example.com"); !slices.Equal(got, want) {
				t.Errorf("GET /accounts/alice@example.com aliases = %v, want %v", got, want)
			}
			code, page := send(t, srv, "GET", "/accounts", "", "", map[string]string{"Accept": "text/html"})
			if code != http.StatusOK || !strings.Contains(string(page), `action="accounts/alice@example.com/aliases"`) ||
				!strings.Contains(string(page), ">billing@example.com\nsales@acme.example</textarea>") {
				t.Errorf("the page does not show the aliases in its form:\n%s", page)
			}

			// The page's form: one a line, as the textarea holds them.
			code, page = send(t, srv, "POST", "/accounts/alice@example.com/aliases", "application/x-www-form-urlencoded",
				url.Values{"aliases": {"team@example.com\r\nbilling@example.com"}}.Encode(), map[string]string{"Accept": "text/html"})
			if code != http.StatusOK || !strings.Contains(string(page), "billing@example.com, team@example.com") || !strings.Contains(string(page), "Send mail as") {
				t.Errorf("form = %d:\n%s", code, page)
			}
			if got := aliasesOf("/accounts/alice@example.com"); !slices.Equal(got, []string{"billing@example.com", "team@example.com"}) {
				t.Errorf("after the form, aliases = %v", got)
			}

			refused := func(body, hdrOrigin string, status int, code string) {
				t.Helper()
				hdr := map[string]string{}
				if hdrOrigin != "" {
					hdr["Origin"] = hdrOrigin
				}
				got, b := send(t, srv, "PUT", "/accounts/alice@example.com/aliases", "application/json", body, hdr)
				if got != status {
					t.Errorf("PUT %s = %d, want %d: %s", body, got, status, b)
				}
				wantErrorShape(t, b, code)
			}
			many := make([]string, registry.MaxAliases+1)
			for i := range many {
				many[i] = fmt.Sprintf("%q", fmt.Sprintf("a%d@example.com", i))
			}
			refused(`{"aliases": ["Sales <sales@example.com>"]}`, "", http.StatusBadRequest, "invalid_request")
			refused(`{"aliases": ["alice@example.com"]}`, "", http.StatusBadRequest, "invalid_request")
			refused(`{"aliases": [`+strings.Join(many, ",")+`]}`, "", http.StatusBadRequest, "invalid_request")
			refused(`{"alias": []}`, "", http.StatusBadRequest, "invalid_request")
			refused(`{"aliases": []} {}`, "", http.StatusBadRequest, "invalid_request")
			refused(`{"aliases": []}`, "https://evil.example", http.StatusForbidden, "cross_origin")
			if got, b := send(t, srv, "PUT", "/accounts/carol@example.com/aliases", "application/json", `{"aliases": []}`, nil); got != http.StatusNotFound {
				t.Errorf("PUT on an unknown account = %d %s, want 404", got, b)
			}
			if got := aliasesOf("/accounts/alice@example.com"); len(got) != 2 {
				t.Errorf("a refused PUT changed the aliases to %v", got)
			}
			_, b := send(t, srv, "PUT", "/accounts/alice@example.com/aliases", "application/json", `{"aliases": ["Sales <sales@example.com>"]}`, nil)
			if !strings.Contains(string(b), "Send mail as") {
				t.Errorf("the refusal's fix does not say how Gmail verifies an alias: %s", b)
			}

			if code, body := send(t, srv, "PUT", "/accounts/alice@example.com/aliases", "application/json", `{"aliases": []}`, nil); code != http.StatusOK {
				t.Fatalf("clearing = %d %s", code, body)
			}
			if got := aliasesOf("/accounts/alice@example.com"); len(got) != 0 {
				t.Errorf("after clearing, aliases = %v", got)
			}
		})
	}
}
