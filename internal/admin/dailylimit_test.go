package admin_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/admin"
	"github.com/gmailrelay/gmailrelay/internal/health"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/googletest"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// limitStore is a registry store as these tests fill it.
type limitStore interface {
	aliasStore
	AddUsage(ctx context.Context, email string, add []registry.Bucket, drop []time.Time) error
}

// viewOf decodes an account view, failing unless body is one.
func viewOf(t *testing.T, body []byte) admin.AccountView {
	t.Helper()
	var v admin.AccountView
	if err := json.Unmarshal(body, &v); err != nil || v.Email == "" {
		t.Fatalf("not an account view (%v): %s", err, body)
	}
	return v
}

// TestPatchDailyLimit: PATCH /accounts/{email} {"daily_limit": N} sets
// the operator's limit (0 restores the default) and answers the account
// view; anything else is refused in the error shape with a fix, and a
// refusal changes nothing.
func TestPatchDailyLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	const alice = "alice@example.com" // consumer: googletest stores no hd
	f.st.Connect(t, alice)
	now := time.Now()
	if err := f.st.Registry.AddUsage(context.Background(), alice, []registry.Bucket{{Hour: registry.HourOf(now), Messages: 3, Recipients: 4}}, nil); err != nil {
		t.Fatal(err)
	}
	padded := `{"daily_limit": 5` + strings.Repeat(" ", 16<<10) + `}`
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string // the error's code; "" for a view
		says                     string // in the answer
		wantStored               int    // alice's DailyLimit afterwards
		wantMessages             int    // the view's limits.messages
	}{
		{name: "valid", method: "PATCH", body: `{"daily_limit": 7}`, status: 200, wantStored: 7, wantMessages: 7},
		{name: "the same again", method: "PATCH", body: `{"daily_limit":7}`, status: 200, wantStored: 7, wantMessages: 7},
		{name: "the address in any case", method: "PATCH", path: "/accounts/" + url.PathEscape("Alice@Example.com"), body: `{"daily_limit": 2000}`, status: 200, wantStored: 2000, wantMessages: 2000},
		{name: "0 restores the default", method: "PATCH", body: `{"daily_limit": 0}`, status: 200, wantStored: 0, wantMessages: registry.ConsumerDailyMessages},
		{name: "set again", method: "PATCH", body: `{"daily_limit": 2}`, status: 200, wantStored: 2, wantMessages: 2},
		{name: "negative", method: "PATCH", body: `{"daily_limit": -1}`, status: 400, code: "invalid_request", says: "outside 0..2000", wantStored: 2},
		{name: "too big", method: "PATCH", body: `{"daily_limit": 2001}`, status: 400, code: "invalid_request", says: "outside 0..2000", wantStored: 2},
		{name: "far too big", method: "PATCH", body: `{"daily_limit": 99999999999999999999999}`, status: 400, code: "invalid_request", says: "not a whole number", wantStored: 2},
		{name: "fraction", method: "PATCH", body: `{"daily_limit": 2.5}`, status: 400, code: "invalid_request", says: "2.5 is not a whole number", wantStored: 2},
		{name: "exponent", method: "PATCH", body: `{"daily_limit": 1e3}`, status: 400, code: "invalid_request", says: "not a whole number", wantStored: 2},
		{name: "string", method: "PATCH", body: `{"daily_limit": "7"}`, status: 400, code: "invalid_request", says: "not a whole number", wantStored: 2},
		{name: "null", method: "PATCH", body: `{"daily_limit": null}`, status: 400, code: "invalid_request", says: `{\"daily_limit\": N}`, wantStored: 2},
		{name: "missing", method: "PATCH", body: `{}`, status: 400, code: "invalid_request", says: `{\"daily_limit\": N}`, wantStored: 2},
		{name: "unknown field", method: "PATCH", body: `{"daily_limit": 5, "limit": 3}`, status: 400, code: "invalid_request", says: `\"limit\" is not a setting`, wantStored: 2},
		{name: "two objects", method: "PATCH", body: `{"daily_limit": 5} {}`, status: 400, code: "invalid_request", wantStored: 2},
		{name: "not JSON", method: "PATCH", body: `daily_limit=5`, status: 400, code: "invalid_request", wantStored: 2},
		{name: "over 16 KiB", method: "PATCH", body: padded, status: 400, code: "invalid_request", says: "16 KiB", wantStored: 2},
		{name: "unknown account", method: "PATCH", path: "/accounts/carol@example.com", body: `{"daily_limit": 5}`, status: 404, code: "unknown_account", says: "connect link", wantStored: 2},
		{name: "wrong method", method: "POST", body: `{"daily_limit": 5}`, status: 405, code: "method_not_allowed", says: "PATCH", wantStored: 2},
		{name: "form route with GET", method: "GET", path: "/accounts/alice@example.com/daily-limit", status: 405, code: "method_not_allowed", wantStored: 2},
		{name: "from another site", method: "PATCH", body: `{"daily_limit": 5}`, hdr: map[string]string{"Origin": "https://evil.example"}, status: 403, code: "cross_origin", wantStored: 2},
	}
	// In order: each case starts from the state the one before left.
	for _, c := range cases {
		path := c.path
		if path == "" {
			path = "/accounts/" + alice
		}
		status, body := send(t, f.srv, c.method, path, "application/json", c.body, c.hdr)
		if status != c.status {
			t.Errorf("%s: %s %s = %d, want %d: %s", c.name, c.method, path, status, c.status, body)
		}
		if c.says != "" && !strings.Contains(string(body), c.says) {
			t.Errorf("%s: the answer does not say %q: %s", c.name, c.says, body)
		}
		if c.code != "" {
			wantErrorShape(t, body, c.code)
		} else if v := viewOf(t, body); v.DailyLimit != c.wantStored || v.Limits.Messages != c.wantMessages ||
			v.UsedToday != (admin.Quota{Messages: 3, Recipients: 4}) {
			t.Errorf("%s: view daily_limit %d, limits %+v, used_today %+v; want %d, %d messages, 3/4 used",
				c.name, v.DailyLimit, v.Limits, v.UsedToday, c.wantStored, c.wantMessages)
		}
		a, err := f.st.Registry.Get(context.Background(), alice)
		if err != nil {
			t.Fatal(err)
		}
		if a.DailyLimit != c.wantStored {
			t.Errorf("%s: stored daily limit %d, want %d", c.name, a.DailyLimit, c.wantStored)
		}
	}
	if _, err := f.st.Registry.Get(context.Background(), "carol@example.com"); err == nil {
		t.Error("PATCH on an unknown account registered it")
	}
}

// TestAccountViewQuota: the JSON view carries the limits in force by kind
// and override, and what the rolling 24 hours counted; so do the text
// table and the page.
func TestAccountViewQuota(t *testing.T) {
	t.Parallel()
	st := googletest.New(t)
	ctx := context.Background()
	now := time.Now()
	for _, a := range []*registry.Account{
		{Email: "consumer@gmail.com", Status: registry.StatusConnected},
		{Email: "work@example.com", Status: registry.StatusConnected, HostedDomain: "example.com"},
		{Email: "set@example.com", Status: registry.StatusConnected, HostedDomain: "example.com", DailyLimit: 50},
		{Email: "robot@example.com", Status: registry.StatusConnected, Kind: registry.KindDelegated},
	} {
		a.UpdatedAt = now
		if err := st.Registry.Upsert(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// Two hours inside the window and one that has left it.
	if err := st.Registry.AddUsage(ctx, "work@example.com", []registry.Bucket{
		{Hour: registry.HourOf(now), Messages: 2, Recipients: 5},
		{Hour: registry.HourOf(now.Add(-5 * time.Hour)), Messages: 1, Recipients: 1},
		{Hour: registry.HourOf(now.Add(-30 * time.Hour)), Messages: 40, Recipients: 40},
	}, nil); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.New(admin.Options{
		Checker: &health.Checker{Tokens: st.Tokens, Accounts: st.Registry, OAuth: st.OAuth, ConnectURL: "https://relay.example.com/authorize"},
		Tokens:  st.Tokens, Revoker: st.OAuth,
	}))
	t.Cleanup(srv.Close)

	want := map[string]struct {
		override     int
		limits, used admin.Quota
	}{
		"consumer@gmail.com": {0, admin.Quota{Messages: 500}, admin.Quota{}},
		"work@example.com":   {0, admin.Quota{Messages: 2000, Recipients: 10000}, admin.Quota{Messages: 3, Recipients: 6}},
		"set@example.com":    {50, admin.Quota{Messages: 50, Recipients: 10000}, admin.Quota{}},
		"robot@example.com":  {0, admin.Quota{Messages: 2000, Recipients: 10000}, admin.Quota{}},
	}
	code, body := send(t, srv, "GET", "/accounts", "", "", nil)
	var all struct{ Accounts []json.RawMessage }
	if err := json.Unmarshal(body, &all); code != 200 || err != nil || len(all.Accounts) != len(want) {
		t.Fatalf("GET /accounts = %d %s", code, body)
	}
	for _, raw := range all.Accounts {
		v := viewOf(t, raw)
		w := want[v.Email]
		if v.DailyLimit != w.override || v.Limits != w.limits || v.UsedToday != w.used {
			t.Errorf("%s: daily_limit %d, limits %+v, used_today %+v; want %d, %+v, %+v", v.Email, v.DailyLimit, v.Limits, v.UsedToday, w.override, w.limits, w.used)
		}
		// The shape: the override only when set, both counts always.
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(raw, &fields)
		if _, ok := fields["daily_limit"]; ok != (w.override != 0) {
			t.Errorf("%s: daily_limit present = %v with override %d: %s", v.Email, ok, w.override, raw)
		}
		if !strings.Contains(string(fields["limits"]), `"recipients"`) || !strings.Contains(string(fields["used_today"]), `"messages"`) {
			t.Errorf("%s: limits or used_today lacks a count: %s", v.Email, raw)
		}
	}
	code, body = send(t, srv, "GET", "/accounts/work@example.com", "", "", nil)
	if v := viewOf(t, body); code != 200 || v.UsedToday != want["work@example.com"].used || v.Limits != want["work@example.com"].limits {
		t.Errorf("GET one account = %d %s", code, body)
	}

	_, table := send(t, srv, "GET", "/accounts", "", "", map[string]string{"Accept": "text/plain"})
	rows := strings.Split(strings.TrimSpace(string(table)), "\n")
	if len(rows) != 5 || !strings.Contains(rows[0], "TODAY") {
		t.Fatalf("table:\n%s", table)
	}
	for _, c := range []struct{ email, today string }{
		{"consumer@gmail.com", "0 / 500"}, {"work@example.com", "3 / 2000"}, {"set@example.com", "0 / 50"},
	} {
		for _, r := range rows {
			if strings.HasPrefix(r, c.email+" ") && !strings.Contains(r, " "+c.today+" ") {
				t.Errorf("table row of %s lacks %q: %q", c.email, c.today, r)
			}
		}
	}

	_, page := send(t, srv, "GET", "/accounts", "", "", map[string]string{"Accept": "text/html"})
	html := string(page)
	for _, s := range []string{
		"<th>Today</th>",
		`style="white-space:nowrap" title="3 of 2000 messages and 6 of 10000 recipients in the last 24 hours">3 / 2000</td>`,
		`style="white-space:nowrap" title="0 of 50 messages and 0 of 10000 recipients (limit set by the operator) in the last 24 hours">0 / 50</td>`,
		`action="accounts/set@example.com/daily-limit"`,
		`name="daily_limit" min="0" max="2000" step="1" value="50"`,
		`value="" placeholder="500"`,
	} {
		if !strings.Contains(html, s) {
			t.Errorf("the page lacks %s", s)
		}
	}
}

// TestDailyLimitForm: the page's Set limit form sets the limit and sends
// the browser back to the accounts page, under whatever prefix the admin
// is mounted at; an empty field restores the default, a bad one is
// refused with a fix, and a tool gets the view.
func TestDailyLimitForm(t *testing.T) {
	t.Parallel()
	st := googletest.New(t)
	st.Connect(t, "alice@example.com")
	h := admin.New(admin.Options{
		Checker: &health.Checker{Tokens: st.Tokens, Accounts: st.Registry, OAuth: st.OAuth, ConnectURL: "https://relay.example.com/authorize"},
		Tokens:  st.Tokens, Revoker: st.OAuth,
	})
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h)) // as make dev mounts it
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	browser := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	form := "application/x-www-form-urlencoded"
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(value string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/admin/accounts/alice%40example.com/daily-limit", strings.NewReader(url.Values{"daily_limit": {value}}.Encode()))
		req.Header.Set("Content-Type", form)
		req.Header.Set("Accept", browser["Accept"])
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	stored := func() int {
		t.Helper()
		a, err := st.Registry.Get(context.Background(), "alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		return a.DailyLimit
	}

	resp := post(" 2 ")
	back, err := resp.Location()
	if resp.StatusCode != http.StatusSeeOther || err != nil || back.Path != "/admin/accounts" {
		t.Fatalf("form = %d, Location %v (%v); want 303 to /admin/accounts", resp.StatusCode, back, err)
	}
	if got := stored(); got != 2 {
		t.Errorf("stored daily limit %d after the form, want 2", got)
	}
	_, page := send(t, srv, "GET", back.Path, "", "", browser)
	if !strings.Contains(string(page), ">0 / 2</td>") {
		t.Errorf("the page does not show 0 / 2 after the form:\n%s", page)
	}

	if resp := post(""); resp.StatusCode != http.StatusSeeOther || stored() != 0 {
		t.Errorf("empty field = %d, stored %d; want 303 and the default (0)", resp.StatusCode, stored())
	}
	for _, bad := range []string{"abc", "-3", "2001", "2.5"} {
		code, body := send(t, srv, "POST", "/admin/accounts/alice@example.com/daily-limit", form, url.Values{"daily_limit": {bad}}.Encode(), browser)
		if code != http.StatusBadRequest || !strings.Contains(string(body), "Go back and enter a whole number") || json.Valid(body) {
			t.Errorf("form with %q = %d; want 400 as a page with the fix:\n%s", bad, code, body)
		}
	}
	if got := stored(); got != 0 {
		t.Errorf("a refused form changed the limit to %d", got)
	}
	code, body := send(t, srv, "POST", "/admin/accounts/alice@example.com/daily-limit", form, "daily_limit=9", nil)
	if v := viewOf(t, body); code != 200 || v.DailyLimit != 9 {
		t.Errorf("form from a tool = %d %s; want the view with 9", code, body)
	}
	code, body = send(t, srv, "POST", "/admin/accounts/alice@example.com/daily-limit", form, "daily_limit=3", map[string]string{"Origin": "https://evil.example"})
	if code != http.StatusForbidden || stored() != 9 {
		t.Errorf("cross-site form = %d %s, stored %d; want 403 and 9 kept", code, body, stored())
	}
	code, body = send(t, srv, "POST", "/admin/accounts/carol@example.com/daily-limit", form, "daily_limit=3", nil)
	if code != http.StatusNotFound {
		t.Errorf("form on an unknown account = %d %s, want 404", code, body)
	}
	wantErrorShape(t, body, "unknown_account")
}

// TestDailyLimitAudit: a change is logged with the verified caller, the
// account and the new limit, and never with the caller's token.
func TestDailyLimitAudit(t *testing.T) {
	t.Parallel()
	st := googletest.New(t)
	st.Connect(t, "alice@example.com")
	idp := newIdentities(t)
	var logs testenv.SyncBuffer
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	srv.Config.Handler = logging.Middleware(logging.New(&logs, slog.LevelInfo), "")(admin.New(admin.Options{
		Checker: &health.Checker{Tokens: st.Tokens, Accounts: st.Registry, OAuth: st.OAuth},
		Tokens:  st.Tokens, Revoker: st.OAuth, URL: base, RequireAuth: true, Verifier: idp.verifier,
	}))
	srv.Start()
	t.Cleanup(srv.Close)
	tok := idp.sign(t, idp.claims("ops@example.com", base, time.Now()))
	code, body := send(t, srv, "PATCH", "/accounts/alice@example.com", "application/json", `{"daily_limit": 7}`, map[string]string{"Authorization": "Bearer " + tok})
	if code != 200 {
		t.Fatalf("PATCH = %d %s", code, body)
	}
	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "daily limit set") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("log line is not JSON: %s", l)
			}
		}
	}
	if line["caller"] != "ops@example.com" || line["account"] != "alice@example.com" || line["daily_limit"] != float64(7) || line["messages_per_day"] != float64(7) {
		t.Errorf("audit line = %v; want caller, account and the new limit\nlogs:\n%s", line, logs.String())
	}
	if strings.Contains(logs.String(), tok) {
		t.Error("the caller's identity token is in the log")
	}
}

// TestDailyLimitStores: the limit and the day's use read the same through
// admin on both registry stores.
func TestDailyLimitStores(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"local", "firestore"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			st := googletest.New(t)
			var reg limitStore = st.Registry
			if backend == "firestore" {
				reg = registry.NewFirestore(testenv.FirestoreClient(t))
			}
			ctx := context.Background()
			now := time.Now()
			if err := reg.Upsert(ctx, &registry.Account{Email: "alice@example.com", Status: registry.StatusConnected, HostedDomain: "example.com", UpdatedAt: now}); err != nil {
				t.Fatal(err)
			}
			if err := reg.AddUsage(ctx, "alice@example.com", []registry.Bucket{{Hour: registry.HourOf(now), Messages: 4, Recipients: 9}}, nil); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(admin.New(admin.Options{
				Checker: &health.Checker{Tokens: st.Tokens, Accounts: reg, OAuth: st.OAuth, ConnectURL: "https://relay.example.com/authorize"},
				Tokens:  st.Tokens, Revoker: st.OAuth,
			}))
			t.Cleanup(srv.Close)
			used := admin.Quota{Messages: 4, Recipients: 9}
			for _, c := range []struct {
				limit int
				want  admin.Quota
			}{{7, admin.Quota{Messages: 7, Recipients: 10000}}, {0, admin.Quota{Messages: 2000, Recipients: 10000}}} {
				code, body := send(t, srv, "PATCH", "/accounts/alice@example.com", "application/json", `{"daily_limit": `+strconv.Itoa(c.limit)+`}`, nil)
				if v := viewOf(t, body); code != 200 || v.DailyLimit != c.limit || v.Limits != c.want || v.UsedToday != used {
					t.Errorf("PATCH %d = %d %s", c.limit, code, body)
				}
				_, body = send(t, srv, "GET", "/accounts/alice@example.com", "", "", nil)
				if v := viewOf(t, body); v.DailyLimit != c.limit || v.Limits != c.want || v.UsedToday != used {
					t.Errorf("GET after PATCH %d = %s", c.limit, body)
				}
			}
		})
	}
}
