package devserver_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/dev/devserver"
)

// TestRefusesBadSettings: a setting a function refuses, or half-set OAuth
// credentials, stop the dev server before it serves, with every problem
// named once.
func TestRefusesBadSettings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		opts     devserver.Options
		want     []string
		wantOnce string
	}{
		{name: "settings out of range", opts: devserver.Options{Env: config.MapLookuper(map[string]string{"SEND_LEASE": "10s", "LOG_LEVEL": "loud"})},
			want: []string{"SEND_LEASE: 10s is outside 1m..1h", "SEND_TIMEOUT", "LOG_LEVEL"}, wantOnce: "LOG_LEVEL"},
		{name: "client ID without secret", opts: devserver.Options{ClientID: "id.apps.googleusercontent.com"}, want: []string{"OAUTH_CLIENT_SECRET is not set"}},
		{name: "secret without client ID", opts: devserver.Options{ClientSecret: "s"}, want: []string{"OAUTH_CLIENT_ID is not set"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.opts
			o.Addr, o.PubSubAddr, o.StateDir = "localhost:0", "localhost:0", t.TempDir()
			served := false
			o.Ready = func(*devserver.Server) { served = true }
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := devserver.Run(ctx, o)
			if err == nil || served {
				t.Fatalf("Run = %v, served %v; want a refusal before serving", err, served)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q:\n%v", w, err)
				}
			}
			if tc.wantOnce != "" && strings.Count(err.Error(), tc.wantOnce) != 1 {
				t.Errorf("%s is named %d times, want once:\n%v", tc.wantOnce, strings.Count(err.Error(), tc.wantOnce), err)
			}
		})
	}
}

// TestEnvironmentUntouched: the shared dev server built every function
// without setting a variable of the process environment.
func TestEnvironmentUntouched(t *testing.T) {
	t.Parallel()
	now := os.Environ()
	slices.Sort(now)
	before := slices.Clone(environ)
	slices.Sort(before)
	if !slices.Equal(now, before) {
		t.Errorf("the process environment changed while the dev server ran:\nbefore %q\nnow    %q", before, now)
	}
	for _, k := range []string{"STORE_BACKEND", "OAUTH_REDIRECT_URL", "ADMIN_REQUIRE_AUTH", "SEND_MAX_DELIVERY_ATTEMPTS", "ATTACHMENTS_BUCKET", "STORAGE_EMULATOR_HOST"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q is in the process environment", k, v)
		}
	}
}

// TestShutdown: a second stack runs in the same process beside the shared
// one, serves, and on cancel closes everything it opened: its ports are
// free again and its state directory can be opened by the next run.
func TestShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for run := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan *devserver.Server, 1)
		done := make(chan error, 1)
		go func() {
			done <- devserver.Run(ctx, devserver.Options{Addr: "localhost:0", PubSubAddr: "localhost:0", StateDir: dir,
				Ready: func(s *devserver.Server) { ready <- s }})
		}()
		var s *devserver.Server
		select {
		case s = <-ready:
		case err := <-done:
			cancel()
			t.Fatalf("run %d did not start: %v", run, err)
		}
		resp, err := http.Get(s.BaseURL + "/authorize")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("run %d: /authorize answered %d", run, resp.StatusCode)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run %d ended with %v", run, err)
		}
		for _, addr := range []string{strings.TrimPrefix(s.BaseURL, "http://"), s.PubSubAddr, strings.TrimPrefix(s.StorageURL, "http://")} {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("run %d: %s is still taken after shutdown: %v", run, addr, err)
				continue
			}
			l.Close()
		}
	}
}
