package config

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLoadSenderDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom[Sender](context.Background(), MapLookuper(map[string]string{
		"GOOGLE_CLOUD_PROJECT": "p",
		"OAUTH_CLIENT_ID":      "id",
		"OAUTH_CLIENT_SECRET":  "s3cret",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ResultsTopic != "gmail-send-results" || cfg.TokenURL != GoogleTokenURL || cfg.Backend != "firestore" || cfg.SendLease != 3*time.Minute ||
		cfg.MaxSendAttempts != 10 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.ClientSecret.Reveal() != "s3cret" {
		t.Errorf("secret not loaded")
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := LoadFrom[Confirm](context.Background(), MapLookuper(map[string]string{
		"STORE_BACKEND":      "mongo",
		"LOG_LEVEL":          "loud",
		"OAUTH_REDIRECT_URL": "http://relay.example.com/confirm",
		"ALLOWED_DOMAINS":    "example.com,not a domain",
		"ALLOWED_EMAILS":     "Bob <bob@example.com>",
		"CONNECT_URL":        "ftp://x",
	}))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"GOOGLE_CLOUD_PROJECT", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "STORE_BACKEND", "LOG_LEVEL", "OAUTH_REDIRECT_URL", `"not a domain"`, "ALLOWED_EMAILS", "CONNECT_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

func TestRedirectURL(t *testing.T) {
	t.Parallel()
	base := map[string]string{"GOOGLE_CLOUD_PROJECT": "p", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s"}
	cases := map[string]bool{
		"":                              false,
		"http://localhost:8080/confirm": true,
		"http://127.0.0.1:9/confirm":    true,
		"https://europe-west1-p.cloudfunctions.net/confirm": true,
		"http://relay.example.com/confirm":                  false,
		"https://relay.example.com/confirm?x=1":             false,
		"/confirm":                                          false,
	}
	for u, ok := range cases {
		m := map[string]string{"OAUTH_REDIRECT_URL": u}
		for k, v := range base {
			m[k] = v
		}
		_, err := LoadFrom[Authorize](context.Background(), MapLookuper(m))
		if (err == nil) != ok {
			t.Errorf("OAUTH_REDIRECT_URL=%q: err = %v, want ok=%v", u, err, ok)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	cfg := Sender{OAuth: OAuth{ClientSecret: "hunter2"}}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "secret", cfg.ClientSecret, "oauth", cfg.OAuth)
	js, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprint(cfg.ClientSecret), buf.String(), string(js)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("secret leaked: %s", s)
		}
	}
}

// TestLoadFromReadsOnlyTheLookuper: a value in the process environment is
// not seen by LoadFrom, so the dev server and parallel tests can build
// functions side by side.
func TestLoadFromReadsOnlyTheLookuper(t *testing.T) {
	t.Setenv("GOOGLE_CLOUD_PROJECT", "from-the-process")
	t.Setenv("SEND_LEASE", "10m")
	cfg, err := LoadFrom[Sender](context.Background(), MapLookuper(map[string]string{
		"GOOGLE_CLOUD_PROJECT": "from-the-map", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProjectID != "from-the-map" || cfg.SendLease != 3*time.Minute {
		t.Errorf("project %q, lease %s: the process environment leaked in", cfg.ProjectID, cfg.SendLease)
	}
}

// TestSenderProblems: every bad sender setting is named, with its range,
// and half-set OAuth credentials are an error rather than a fallback.
func TestSenderProblems(t *testing.T) {
	t.Parallel()
	base := map[string]string{"GOOGLE_CLOUD_PROJECT": "p", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s"}
	cases := []struct {
		name string
		set  map[string]string
		drop string
		want []string
	}{
		{"lease too short", map[string]string{"SEND_LEASE": "10s"}, "", []string{"SEND_LEASE: 10s is outside 1m..1h", "SEND_TIMEOUT"}},
		{"attempts out of Pub/Sub's range", map[string]string{"SEND_MAX_DELIVERY_ATTEMPTS": "3"}, "", []string{"SEND_MAX_DELIVERY_ATTEMPTS: 3 is outside 5..100"}},
		{"negative send attempts", map[string]string{"SEND_MAX_ATTEMPTS": "-1"}, "", []string{"SEND_MAX_ATTEMPTS: -1 is outside 1..100"}},
		{"more send attempts than Pub/Sub delivers", map[string]string{"SEND_MAX_ATTEMPTS": "101"}, "", []string{"SEND_MAX_ATTEMPTS: 101 is outside 1..100"}},
		{"client ID without its secret", nil, "OAUTH_CLIENT_SECRET", []string{"OAUTH_CLIENT_SECRET is not set"}},
		{"secret without a client ID", nil, "OAUTH_CLIENT_ID", []string{"OAUTH_CLIENT_ID is not set"}},
		{"values that do not parse, and a bad one that does", map[string]string{"SEND_TIMEOUT": "soon", "SEND_MAX_DELIVERY_ATTEMPTS": "many", "SEND_LEASE": "2h"},
			"", []string{`SEND_TIMEOUT: time: invalid duration "soon"`, "SEND_MAX_DELIVERY_ATTEMPTS: strconv.ParseInt", "SEND_LEASE: 2h0m0s is outside"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := map[string]string{}
			for k, v := range base {
				if k != tc.drop {
					m[k] = v
				}
			}
			for k, v := range tc.set {
				m[k] = v
			}
			_, err := LoadFrom[Sender](context.Background(), MapLookuper(m))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestAdminURL: with the identity check on, ADMIN_URL is the tokens'
// audience and must be set; off (make dev), it may be empty.
func TestAdminURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		url, requireAuth string
		ok               bool
	}{
		{"", "", false},
		{"", "true", false},
		{"", "false", true},
		{"https://europe-west1-p.cloudfunctions.net/admin", "", true},
		{"http://admin.example.com", "", false},
		{"http://localhost:8080/admin", "false", true},
	}
	for _, c := range cases {
		env := map[string]string{"GOOGLE_CLOUD_PROJECT": "p", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s"}
		if c.url != "" {
			env["ADMIN_URL"] = c.url
		}
		if c.requireAuth != "" {
			env["ADMIN_REQUIRE_AUTH"] = c.requireAuth
		}
		_, err := LoadFrom[Admin](context.Background(), MapLookuper(env))
		if (err == nil) != c.ok {
			t.Errorf("ADMIN_URL=%q ADMIN_REQUIRE_AUTH=%q: %v, want ok %v", c.url, c.requireAuth, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "ADMIN_URL") {
			t.Errorf("the error does not name ADMIN_URL: %v", err)
		}
	}
}
