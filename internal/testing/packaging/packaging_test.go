package packaging

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/gmailrelay/gmailrelay/internal/dev/secretfake"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

const (
	modulePath = "github.com/gmailrelay/gmailrelay"
	// frameworkFunctions must be among the root package's imports: the
	// buildpack then generates a main that only blank-imports the package.
	frameworkFunctions = "github.com/GoogleCloudPlatform/functions-framework-go/functions"
	project            = "test"
)

var functionNames = []string{"authorize", "confirm", "sender", "admin", "healthcheck"}

// mainSource is the program the buildpack generates for functions that
// register themselves: import the root package for its init, serve on PORT.
const mainSource = `package main

import (
	"log"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	_ "` + modulePath + `"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("serving: %v", err)
	}
}
`

// TestPackagedFunctionsServe packages the repository, builds the archive as
// the buildpack does, runs one process per function and checks each answers.
func TestPackagedFunctionsServe(t *testing.T) {
	if testing.Short() {
		t.Skip("packages and builds every function with go build; skipped with -short")
	}
	root := repoRoot(t)
	requireFunctionPackages(t, root)

	tmp := t.TempDir()
	archive := packageTwice(t, root, tmp)
	src := filepath.Join(tmp, "src")
	checkArchive(t, archive, src)
	bin := buildLikeBuildpack(t, src, filepath.Join(tmp, "app"))

	ctx := t.Context()
	ps := pstest.NewServer()
	t.Cleanup(func() { ps.Close() })
	for _, topic := range []string{"gmail-send-results", "gmail-account-events"} {
		if _, err := ps.GServer.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + topic}); err != nil {
			t.Fatal(err)
		}
	}
	sm, err := secretfake.Start(ctx, "127.0.0.1:0", secretfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })

	ports := map[string]int{}
	for _, f := range functionNames {
		ports[f] = freePort(t)
	}
	stateDir := filepath.Join(tmp, "state")
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + tmp,
		"TMPDIR=" + tmp,
		"GOOGLE_CLOUD_PROJECT=" + project,
		"LOG_LEVEL=debug",
		"OAUTH_CLIENT_ID=test.apps.googleusercontent.com",
		"OAUTH_CLIENT_SECRET=x",
		fmt.Sprintf("OAUTH_REDIRECT_URL=http://localhost:%d/confirm", ports["confirm"]),
		fmt.Sprintf("CONNECT_URL=http://localhost:%d/", ports["authorize"]),
		fmt.Sprintf("ADMIN_URL=http://127.0.0.1:%d", ports["admin"]),
		"STORE_BACKEND=local",
		"DEV_STATE_DIR=" + stateDir,
		"RESULTS_TOPIC=gmail-send-results",
		"ACCOUNT_EVENTS_TOPIC=gmail-account-events",
		"OAUTH_APP_TESTING=true",
		"PUBSUB_EMULATOR_HOST=" + ps.Addr,
		"SECRET_MANAGER_EMULATOR_HOST=" + sm.Addr(),
	}

	servers := map[string]*server{}
	for _, f := range functionNames {
		servers[f] = start(t, bin, f, ports[f], env)
	}
	for _, f := range functionNames {
		servers[f].waitReady(t)
	}

	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}

	t.Run("authorize", func(t *testing.T) {
		s := servers["authorize"]
		res, body := s.do(t, client, http.MethodGet, "/", nil, nil)
		s.expect(t, res.StatusCode == http.StatusOK, "GET / = %d, want 200: %s", res.StatusCode, body)
		ct := res.Header.Get("Content-Type")
		s.expect(t, strings.HasPrefix(ct, "text/html"), "GET / Content-Type = %q, want text/html", ct)
	})

	t.Run("confirm", func(t *testing.T) {
		s := servers["confirm"]
		res, body := s.do(t, client, http.MethodGet, "/", nil, nil)
		s.expect(t, res.StatusCode == http.StatusBadRequest, "GET / without code or state = %d, want 400: %s", res.StatusCode, body)
	})

	t.Run("sender", func(t *testing.T) {
		s := servers["sender"]
		res, body := s.do(t, client, http.MethodPost, "/projects/"+project+"/topics/gmail-send", jsonHeader, pushBody(t, "send-1", "{}"))
		s.expect(t, res.StatusCode == http.StatusOK, "push of a malformed send request = %d, want 200 (acknowledged, with a failed result): %s", res.StatusCode, body)
		// The acknowledged request must have produced a failed result event.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var statuses []string
			for _, m := range ps.Messages() {
				if m.Topic == "projects/"+project+"/topics/gmail-send-results" {
					statuses = append(statuses, m.Attributes["status"])
				}
			}
			if slices.Contains(statuses, "failed") {
				return
			}
			if time.Now().After(deadline) {
				s.expect(t, false, "no result event with status=failed on gmail-send-results; statuses seen: %q", statuses)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("admin", func(t *testing.T) {
		s := servers["admin"]
		// The packaged admin serves, and verifies a bearer token itself: one
		// that only looks like a Google identity token is refused.
		res, body := s.do(t, client, http.MethodGet, "/accounts", http.Header{"Authorization": {"Bearer " + identityToken("ops@example.com")}}, nil)
		s.expect(t, res.StatusCode == http.StatusUnauthorized, "GET /accounts with an unsigned token = %d, want 401: %s", res.StatusCode, body)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		s.expect(t, json.Unmarshal(body, &e) == nil && e.Error.Code == "unauthenticated", "GET /accounts body = %s, want the unauthenticated error", body)
	})

	t.Run("healthcheck", func(t *testing.T) {
		s := servers["healthcheck"]
		res, body := s.do(t, client, http.MethodPost, "/projects/"+project+"/topics/gmail-healthcheck", jsonHeader, pushBody(t, "health-1", "{}"))
		s.expect(t, res.StatusCode == http.StatusOK, "push of a healthcheck trigger = %d, want 200: %s", res.StatusCode, body)
	})
}

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.Contains(goMod, []byte("module "+modulePath+"\n")) {
		t.Fatalf("%s is not the root of %s: %v", root, modulePath, err)
	}
	return root
}

// requireFunctionPackages fails, naming them, if function packages are
// missing: the archive would build but lack those functions.
func requireFunctionPackages(t *testing.T, root string) {
	t.Helper()
	var missing []string
	for _, f := range functionNames {
		files, _ := filepath.Glob(filepath.Join(root, "functions", f, "*.go"))
		found := false
		for _, file := range files {
			found = found || !strings.HasSuffix(file, "_test.go")
		}
		if !found {
			missing = append(missing, "functions/"+f)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("function packages missing: %s (each registers itself in init() with functions.HTTP or functions.CloudEvent)", strings.Join(missing, ", "))
	}
}

// packageTwice runs scripts/package.sh twice and requires identical output:
// the archive's hash names the uploaded object, so it may change only when
// the source does.
func packageTwice(t *testing.T, root, tmp string) string {
	t.Helper()
	first := filepath.Join(tmp, "first", "function-source.zip")
	second := filepath.Join(tmp, "second", "function-source.zip")
	for _, out := range []string{first, second} {
		run(t, root, nil, "bash", filepath.Join(root, "scripts", "package.sh"), out)
	}
	a, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("scripts/package.sh wrote different archives from the same source; it must be deterministic")
	}
	return first
}

// checkArchive checks the archive's contents and extracts it into dir.
func checkArchive(t *testing.T, archive, dir string) {
	t.Helper()
	zr, err := zip.OpenReader(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		switch {
		case f.Name == "go.mod" || f.Name == "go.sum" || f.Name == "relay.go":
		case strings.HasPrefix(f.Name, "functions/") || strings.HasPrefix(f.Name, "internal/"):
		default:
			t.Errorf("archive holds %s, outside go.mod, go.sum, relay.go, functions/ and internal/", f.Name)
		}
		if strings.HasSuffix(f.Name, "_test.go") || slices.Contains(strings.Split(f.Name, "/"), "testdata") {
			t.Errorf("archive holds test material: %s", f.Name)
		}
		if strings.Contains(f.Name, "..") || path.IsAbs(f.Name) {
			t.Fatalf("unsafe name in archive: %s", f.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("archive entries are not in name order: %v", names)
	}
	for _, want := range []string{"go.mod", "go.sum", "relay.go"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s", want)
		}
	}

	// The buildpack reads the root package's imports to choose its main.
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, "relay.go"), nil, parser.ImportsOnly)
	if err != nil {
		t.Fatalf("relay.go: %v", err)
	}
	var imports []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		imports = append(imports, p)
	}
	if !slices.Contains(imports, frameworkFunctions) {
		t.Errorf("relay.go does not import %s; the buildpack would then generate a main that calls a Go function named after FUNCTION_TARGET", frameworkFunctions)
	}
	for _, fn := range functionNames {
		if !slices.Contains(imports, modulePath+"/functions/"+fn) {
			t.Errorf("relay.go does not import the %s function package", fn)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// buildLikeBuildpack builds the archive in src the way the Go functions
// buildpack does: a separate main module that requires the function module,
// replaced by the uploaded directory, with a generated main.
func buildLikeBuildpack(t *testing.T, src, app string) string {
	t.Helper()
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(mainSource), 0o644); err != nil {
		t.Fatal(err)
	}
	// The uploaded go.sum covers every module the functions need, so nothing
	// has to be fetched: this works offline with a warm module cache.
	sum, err := os.ReadFile(filepath.Join(src, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"GOWORK=off", "GOFLAGS=-mod=mod"}
	run(t, app, env, "go", "mod", "init", "functions.local/app")
	run(t, app, env, "go", "mod", "edit", "-require", modulePath+"@v0.0.0")
	run(t, app, env, "go", "mod", "edit", "-replace", modulePath+"@v0.0.0="+src)
	run(t, app, env, "go", "mod", "tidy")
	bin := filepath.Join(app, "server")
	run(t, app, env, "go", "build", "-o", bin, ".")
	return bin
}

// run runs a command in dir with extra environment and fails with its output.
func run(t *testing.T, dir string, extraEnv []string, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// identityToken is a JWT shaped like a Google identity token, with a
// signature no key made.
func identityToken(email string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		enc([]byte(`{"email":"`+email+`","sub":"1","aud":"https://admin.example"}`)) + "." +
		enc([]byte("not-a-signature"))
}

// pushBody is a Pub/Sub push request as Pub/Sub sends it, without ce-*
// headers: the push-fed functions read it themselves.
func pushBody(t *testing.T, id, data string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"message": map[string]any{
			"data":       base64.StdEncoding.EncodeToString([]byte(data)),
			"messageId":  id,
			"attributes": map[string]string{},
		},
		"subscription": "projects/" + project + "/subscriptions/s",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// server is one running function process.
type server struct {
	name string
	port int
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan struct{}
}

// start runs the binary as FUNCTION_TARGET=name on port. The process is
// killed when the test ends.
func start(t *testing.T, bin, name string, port int, env []string) *server {
	t.Helper()
	s := &server{name: name, port: port, out: &testenv.SyncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append(slices.Clone(env), "FUNCTION_TARGET="+name, "PORT="+strconv.Itoa(port))
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

// waitReady waits until the process accepts connections.
func (s *server) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.done:
			t.Fatalf("%s exited before listening (%v); its output:\n%s", s.name, s.cmd.ProcessState, s.out)
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening on port %d after 30s; its output:\n%s", s.name, s.port, s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) do(t *testing.T, c *http.Client, method, path string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.WithoutCancel(t.Context()), method, fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s to %s: %v; its output:\n%s", method, path, s.name, err, s.out)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, data
}

// expect reports a failed expectation together with the function's output.
func (s *server) expect(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf("%s: %s\n--- %s output ---\n%s", s.name, fmt.Sprintf(format, args...), s.name, s.out)
	}
}
