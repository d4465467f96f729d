package sender_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/gmailrelay/gmailrelay/internal/config"
	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/oauth"
	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/results"
	"github.com/gmailrelay/gmailrelay/internal/sender"
	"github.com/gmailrelay/gmailrelay/internal/testing/procstat"
	"github.com/gmailrelay/gmailrelay/internal/testing/sendertest"
	"github.com/gmailrelay/gmailrelay/internal/testing/storagetest"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
	"github.com/gmailrelay/gmailrelay/internal/wiring"
)

// rssHelperEnv makes the test binary the sender process of
// TestPeakRSSByReference instead of running tests.
const rssHelperEnv = "GMAILRELAY_SENDER_RSS_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(rssHelperEnv); spec != "" {
		os.Exit(rssHelper(spec))
	}
	os.Exit(m.Run())
}

// rssSpec is what the helper process is given: the parent's fakes, and
// the two requests to send.
type rssSpec struct {
	Env          map[string]string
	Account      string
	WarmUp, Send []byte
}

// rssReport is what it answers: its peak RSS after a small send, and
// after the send by reference.
type rssReport struct {
	IdleKB, PeakKB int64
	Err            string
}

// TestPeakRSSByReference: the sender, in a process of its own built as
// deployed (wiring, the real clients, the Go runtime's defaults), sends a message of about 30 MB whose 22 MiB
// attachment is in Cloud Storage; its peak RSS stays within 3 times the
// message, because the object is streamed into the upload chunk by chunk.
// Gmail (the sandbox) and Cloud Storage (fake-gcs-server) run in this
// process, so their memory is not counted.
//
//	go test -run TestPeakRSSByReference -v ./internal/sender/
func TestPeakRSSByReference(t *testing.T) {
	testenv.Integration(t)
	if runtime.GOOS != "linux" {
		t.Skip("peak RSS is read from /proc")
	}
	e := sendertest.New(t, sendertest.Options{})
	e.Connect(alice)
	fake, client := storagetest.New(t, ownBucket)
	srv := fake.URL() // http://127.0.0.1:PORT, as STORAGE_EMULATOR_HOST takes it
	file := randomFile(t, 22<<20)
	storagetest.Put(t, client, ownBucket, "default/big.bin", file, "application/octet-stream", "")

	spec := rssSpec{
		Account: alice,
		Env: map[string]string{
			"GOOGLE_CLOUD_PROJECT": e.Project(), "LOG_LEVEL": "error",
			"OAUTH_CLIENT_ID": sendertest.ClientID, "OAUTH_CLIENT_SECRET": sendertest.ClientSecret,
			"OAUTH_AUTH_URL": e.URL + sandbox.AuthPath, "OAUTH_TOKEN_URL": e.URL + sandbox.TokenPath, "OAUTH_REVOKE_URL": e.URL + sandbox.RevokePath,
			"STORE_BACKEND": "local", "DEV_STATE_DIR": t.TempDir(),
			"SECRET_MANAGER_EMULATOR_HOST": e.Secrets.Addr(), "GMAIL_ENDPOINT": e.URL + "/",
			"RESULTS_TOPIC": sendertest.ResultsTopic, "ATTACHMENTS_BUCKET": ownBucket,
			"PUBSUB_EMULATOR_HOST": e.PubSub.Addr, "STORAGE_EMULATOR_HOST": srv,
		},
		WarmUp: sendertest.NewRequest(alice, "warm-up").JSON(),
		Send: sendertest.NewRequest(alice, "rss-1").With("attachments", []any{
			byRef("gs://" + ownBucket + "/default/big.bin"),
		}).JSON(),
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), rssHelperEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var rep rssReport
	if err := json.Unmarshal(out, &rep); err != nil || rep.Err != "" {
		t.Fatalf("helper answered %q (%v)", out, err)
	}

	var sent []results.Event
	for _, r := range e.Results() {
		sent = append(sent, r.Event)
	}
	if len(sent) != 2 || sent[1].Status != results.StatusSent {
		t.Fatalf("results %+v; want the warm-up and the message sent", sent)
	}
	wantOutbox(t, e, 2)
	if got := attachmentOf(t, e, "big.bin"); sha256.Sum256(got.body) != sha256.Sum256(file) {
		t.Fatal("the attachment differs from the object")
	}
	st, err := os.Stat(e.Outbox()[1].Path)
	if err != nil {
		t.Fatal(err)
	}
	size := st.Size()
	mib := func(kb int64) float64 { return float64(kb) / 1024 }
	t.Logf("message %.1f MiB (%d bytes, a %d-byte object); sender peak RSS %.1f MiB after a small send, %.1f MiB after this one (+%.1f MiB); %.2f× the message",
		float64(size)/(1<<20), size, len(file), mib(rep.IdleKB), mib(rep.PeakKB), mib(rep.PeakKB-rep.IdleKB), float64(rep.PeakKB*1024)/float64(size))
	switch {
	case raceBuild:
		// make test runs with -race: the detector's shadow memory grows the
		// baseline, so only the growth is held to the bound here; the
		// figure README quotes comes from the command above, without -race.
		if (rep.PeakKB-rep.IdleKB)*1024 > 3*size {
			t.Errorf("RSS grew %d KiB for the %d-byte message, over 3 times it (race build)", rep.PeakKB-rep.IdleKB, size)
		}
	case rep.PeakKB*1024 > 3*size:
		t.Errorf("peak RSS %d KiB is over 3 times the %d-byte message", rep.PeakKB, size)
	}
	if rep.IdleKB <= 0 || rep.PeakKB < rep.IdleKB {
		t.Errorf("implausible figures %+v", rep)
	}
}

// rssHelper is the sender process: it builds the sender from spec's
// environment with wiring, as the deployed function does, registers the
// account in its own local registry, sends the warm-up then the message,
// and prints its peak RSS after each.
func rssHelper(spec string) int {
	var s rssSpec
	report := func(r rssReport) int {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return 0
	}
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return report(rssReport{Err: err.Error()})
	}
	for k, v := range s.Env {
		// The client libraries read their emulator hosts from the process
		// environment; this process exists for this run alone.
		if err := os.Setenv(k, v); err != nil {
			return report(rssReport{Err: err.Error()})
		}
	}
	// The sender's logs (no bodies) would go to stderr, into the test's.
	ctx := logging.WithLogger(context.Background(), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	cfg, err := config.LoadFrom[config.Sender](ctx, envconfig.MapLookuper(s.Env))
	if err != nil {
		return report(rssReport{Err: err.Error()})
	}
	dir := s.Env["DEV_STATE_DIR"]
	reg, err := registry.NewLocal(filepath.Join(dir, "accounts.json"))
	if err != nil {
		return report(rssReport{Err: err.Error()})
	}
	led, err := ledger.NewLocal(filepath.Join(dir, "sends.json"))
	if err != nil {
		return report(rssReport{Err: err.Error()})
	}
	now := time.Now()
	if err := reg.Upsert(ctx, &registry.Account{Email: s.Account, Status: registry.StatusConnected, Scopes: oauth.Scopes,
		ConnectedAt: now, TokenIssuedAt: now, UpdatedAt: now}); err != nil {
		return report(rssReport{Err: err.Error()})
	}
	snd, closer, err := wiring.Sender(ctx, cfg, wiring.Deps{Registry: reg, Ledger: led, Logs: io.Discard})
	if err != nil {
		return report(rssReport{Err: err.Error()})
	}
	defer closer.Close()
	var rep rssReport
	for i, data := range [][]byte{s.WarmUp, s.Send} {
		if err := snd.Handle(ctx, sender.Delivery{MessageID: fmt.Sprintf("rss-%d", i), Data: data}); err != nil {
			return report(rssReport{Err: err.Error()})
		}
		if i == 0 {
			rep.IdleKB = procstat.PeakRSSKB(os.Getpid())
		}
	}
	rep.PeakKB = procstat.PeakRSSKB(os.Getpid())
	return report(rep)
}
