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
	if cfg.ResultsTopic != "gmail-send-results" || cfg.TokenURL != GoogleTokenURL || cfg.Backend != "firestore" || cfg.SendLease != 3*time.Minute {
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
