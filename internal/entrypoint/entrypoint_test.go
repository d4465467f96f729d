package entrypoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/push"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

type testConfig struct {
	config.Base
	Greeting string `env:"TEST_GREETING, default=hello"`
	Limit    int    `env:"TEST_LIMIT, default=1"`
}

func (c *testConfig) Validate() error {
	var errs []error
	if c.ProjectID == "" {
		errs = append(errs, errors.New("GOOGLE_CLOUD_PROJECT is not set"))
	}
	if c.Limit < 1 {
		errs = append(errs, errors.New("TEST_LIMIT: below 1"))
	}
	return errors.Join(errs...)
}

// closeFlag is a closer that records being closed.
type closeFlag struct{ closed atomic.Bool }

func (c *closeFlag) Close() error { c.closed.Store(true); return nil }

func env(kv ...string) envconfig.Lookuper {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return config.MapLookuper(m)
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	buildFailure := errors.New("no Firestore")
	cases := []struct {
		name     string
		env      envconfig.Lookuper
		buildErr error
		// wantProblems, when set, are the configuration problems New must
		// report, all of them, without building.
		wantProblems []string
		wantErr      error
		wantBody     string
	}{
		{name: "defaults", env: env("GOOGLE_CLOUD_PROJECT", "p"), wantBody: "hello 1"},
		{name: "from the lookuper", env: env("GOOGLE_CLOUD_PROJECT", "p", "TEST_GREETING", "hi", "TEST_LIMIT", "3"), wantBody: "hi 3"},
		{name: "every problem at once", env: env("TEST_LIMIT", "0", "LOG_LEVEL", "x"),
			wantProblems: []string{"GOOGLE_CLOUD_PROJECT", "TEST_LIMIT"}},
		{name: "build fails", env: env("GOOGLE_CLOUD_PROJECT", "p"), buildErr: buildFailure, wantErr: buildFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs testenv.SyncBuffer
			built := 0
			closer := &closeFlag{}
			h, c, err := HTTP[testConfig](context.Background(), "test", tc.env, &logs, func(ctx context.Context, cfg *testConfig) (http.Handler, io.Closer, error) {
				built++
				if tc.buildErr != nil {
					return nil, nil, tc.buildErr
				}
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					logging.FromContext(r.Context()).InfoContext(r.Context(), "served")
					if _, err := io.ReadAll(r.Body); err != nil {
						http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
						return
					}
					io.WriteString(w, cfg.Greeting+" "+strconv.Itoa(cfg.Limit))
				}), closer, nil
			})
			switch {
			case tc.wantProblems != nil:
				var ce *ConfigError
				if !errors.As(err, &ce) || built != 0 || h != nil || c != nil {
					t.Fatalf("err = %v (built %d times); want a ConfigError without a build", err, built)
				}
				got := Problems(err)
				if len(got) != len(tc.wantProblems) {
					t.Errorf("problems %q, want one for each of %q", got, tc.wantProblems)
				}
				for i, want := range tc.wantProblems {
					if i < len(got) && !strings.Contains(got[i], want) {
						t.Errorf("problem %d = %q, want it to name %s", i, got[i], want)
					}
				}
				return
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) || !strings.HasPrefix(err.Error(), "test: ") || h != nil || c != nil {
					t.Fatalf("err = %v, handler %v; want %v named for the function", err, h, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("small")))
			if rec.Code != http.StatusOK || rec.Body.String() != tc.wantBody {
				t.Errorf("answered %d %q, want 200 %q", rec.Code, rec.Body, tc.wantBody)
			}
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, MaxRequestBody+1))))
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("a body over MaxRequestBody: %d, want the handler to be refused the read", rec.Code)
			}
			if !strings.Contains(logs.String(), `"function":"test"`) || !strings.Contains(logs.String(), `"message":"served"`) {
				t.Errorf("the request's logger did not write to the given writer with the function's name:\n%s", logs.String())
			}
			if err := c.Close(); err != nil || !closer.closed.Load() {
				t.Errorf("the returned closer did not close what the build opened: %v", err)
			}
		})
	}
}

func TestPushBuild(t *testing.T) {
	t.Parallel()
	var got *push.Message
	closer := &closeFlag{}
	h, c, err := Push[testConfig](context.Background(), "test-push", env("GOOGLE_CLOUD_PROJECT", "p"), io.Discard,
		func(context.Context, *testConfig) (PushHandler, io.Closer, error) {
			return func(_ context.Context, m *push.Message) error { got = m; return nil }, closer, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"message":{"data":"aGk=","messageId":"m-1","publishTime":"2026-01-02T03:04:05Z"},"subscription":"projects/p/subscriptions/s","deliveryAttempt":3}`)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
	if rec.Code != http.StatusOK || got == nil || got.ID != "m-1" || string(got.Data) != "hi" || got.DeliveryAttempt != 3 || got.Subscription != "projects/p/subscriptions/s" {
		t.Fatalf("answered %d; handler saw %+v", rec.Code, got)
	}
	// A push is not held to an HTTP function's body limit.
	big := strings.Repeat("x", MaxRequestBody)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(pushBody("m-big", big))))
	if rec.Code != http.StatusOK || got.ID != "m-big" || len(got.Data) != len(big) {
		t.Errorf("a push over MaxRequestBody: %d, handler saw %d bytes of %s", rec.Code, len(got.Data), got.ID)
	}
	if err := c.Close(); err != nil || !closer.closed.Load() {
		t.Errorf("closer: %v, closed %v", err, closer.closed.Load())
	}
}

// TestRegistered: deployed (FUNCTION_TARGET is the function), a function is
// built at start-up and a bad configuration ends the process with every
// problem logged at ERROR; elsewhere it is built on first use and a failure
// answers 503.
func TestRegistered(t *testing.T) {
	t.Parallel()
	good := env("GOOGLE_CLOUD_PROJECT", "p")
	bad := env("TEST_LIMIT", "0")
	cases := []struct {
		name            string
		target          string
		env             envconfig.Lookuper
		wantExit        bool
		wantBuiltAtInit bool
		wantStatus      int
		wantLog         string
	}{
		{name: "deployed", target: "fn", env: good, wantBuiltAtInit: true, wantStatus: http.StatusOK},
		{name: "deployed, misconfigured", target: "fn", env: bad, wantExit: true, wantBuiltAtInit: true, wantStatus: http.StatusServiceUnavailable,
			wantLog: "configuration is invalid"},
		{name: "all in one process", target: "", env: good, wantStatus: http.StatusOK},
		{name: "all in one process, misconfigured", target: "", env: bad, wantStatus: http.StatusServiceUnavailable, wantLog: "configuration is invalid"},
		{name: "another function deployed", target: "other", env: good, wantStatus: http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs testenv.SyncBuffer
			var builds atomic.Int32
			exit := -1
			newFn := func(ctx context.Context, l envconfig.Lookuper) (http.Handler, io.Closer, error) {
				builds.Add(1)
				return HTTP[testConfig](ctx, "fn", l, io.Discard, func(context.Context, *testConfig) (http.Handler, io.Closer, error) {
					return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), &closeFlag{}, nil
				})
			}
			h := registered("fn", tc.target, tc.env, logging.New(&logs, slog.LevelInfo), func(code int) { exit = code }, newFn)
			if got := builds.Load() == 1; got != tc.wantBuiltAtInit {
				t.Errorf("built at registration: %v, want %v", got, tc.wantBuiltAtInit)
			}
			if (exit == 1) != tc.wantExit {
				t.Errorf("exit code %d, want exit(1): %v", exit, tc.wantExit)
			}
			for range 2 {
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				req.Header.Set("Accept", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != tc.wantStatus {
					t.Errorf("answered %d %s, want %d", rec.Code, rec.Body, tc.wantStatus)
				}
				if rec.Code == http.StatusServiceUnavailable && !strings.Contains(rec.Body.String(), "not_configured") {
					t.Errorf("503 without the not_configured code: %s", rec.Body)
				}
			}
			if n := builds.Load(); n != 1 {
				t.Errorf("built %d times, want once", n)
			}
			if tc.wantLog == "" {
				return
			}
			var entry struct {
				Severity, Message, Function string
				Problems                    []string
			}
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, tc.wantLog) {
					_ = json.Unmarshal([]byte(l), &entry)
				}
			}
			if entry.Severity != "ERROR" || entry.Function != "fn" || len(entry.Problems) != 2 ||
				!strings.Contains(entry.Problems[0], "GOOGLE_CLOUD_PROJECT") || !strings.Contains(entry.Problems[1], "TEST_LIMIT") {
				t.Errorf("log entry %+v, want ERROR naming both problems; logs:\n%s", entry, logs.String())
			}
		})
	}
}
