package devserver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/dev/devserver"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

// upload puts body into the dev bucket as name with a plain HTTP POST to the
// JSON API's media upload: the curl command README shows.
func upload(ctx context.Context, t *testing.T, name, contentType string, body []byte) {
	t.Helper()
	u := srv.StorageURL + "/upload/storage/v1/b/" + devserver.AttachmentsBucket + "/o?uploadType=media&name=" + url.QueryEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var obj struct{ Name, Size string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &obj) != nil || obj.Name != name || obj.Size != fmt.Sprint(len(body)) {
		t.Fatalf("uploading %s answered %d: %.300s", name, resp.StatusCode, b)
	}
}

// outboxFile returns the path of the one outbox message addressed to rcpt,
// once it is there.
func outboxFile(ctx context.Context, t *testing.T, rcpt string) string {
	t.Helper()
	var found []string
	waitFor(ctx, t, "the message to "+rcpt+" in the outbox", func() bool {
		found = found[:0]
		files, _ := filepath.Glob(filepath.Join(srv.OutboxDir, "*.eml"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if m, err := mail.ReadMessage(bytes.NewReader(b)); err == nil && strings.Contains(m.Header.Get("To"), rcpt) {
				found = append(found, f)
			}
		}
		return len(found) > 0
	})
	if len(found) != 1 {
		t.Fatalf("%d messages to %s, want 1: %q", len(found), rcpt, found)
	}
	return found[0]
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// TestBannerNamesStorageEmulator: make dev prints where the embedded Cloud Storage answers, in
// the form the Cloud Storage client libraries read.
func TestBannerNamesStorageEmulator(t *testing.T) {
	t.Parallel()
	if !strings.HasPrefix(srv.StorageURL, "http://127.0.0.1:") {
		t.Fatalf("StorageURL = %q, want http://127.0.0.1:PORT", srv.StorageURL)
	}
	for _, want := range []string{"\nSTORAGE_EMULATOR_HOST=" + srv.StorageURL + "\n", "gs://" + devserver.AttachmentsBucket + "/"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the banner does not say %q:\n%s", want, out.String())
		}
	}
}

// TestAttachmentByReference: an object uploaded to the dev bucket and sent
// by gcs_uri arrives with the object's bytes, name and content type. Small,
// so it runs with the unit tests; TestTwentyMegabytesByReference is the
// large one.
func TestAttachmentByReference(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const account, rcpt = "gcs-small@example.com", "gcs-small-rcpt@example.org"
	connectTo(ctx, t, srv, account)
	body := randomBytes(300_000, 1)
	upload(ctx, t, "default/quarterly report.pdf", "application/pdf", body)

	publish(ctx, t, `{"account":"`+account+`","to":["`+rcpt+`"],"subject":"Report","text":"Attached.","idempotency_key":"e2e-gcs-small",`+
		`"attachments":[{"gcs_uri":"gs://`+devserver.AttachmentsBucket+`/default/quarterly report.pdf"}]}`)
	f := outboxFile(ctx, t, rcpt)
	raw, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		t.Fatalf("Content-Type %q is not multipart", m.Header.Get("Content-Type"))
	}
	var got []byte
	var filename, ctype string
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.FileName() == "" {
			continue
		}
		filename, ctype = p.FileName(), p.Header.Get("Content-Type")
		// multipart decodes quoted-printable only; attachments are base64.
		enc, _ := io.ReadAll(p)
		if p.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Fatalf("the attachment is %q, want base64", p.Header.Get("Content-Transfer-Encoding"))
		}
		got, err = io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.ReplaceAll(enc, []byte("\r\n"), nil))))
		if err != nil {
			t.Fatalf("attachment body: %v", err)
		}
	}
	if !bytes.Equal(got, body) {
		t.Errorf("the attachment has %d bytes, not the %d uploaded", len(got), len(body))
	}
	if filename != "quarterly report.pdf" || !strings.HasPrefix(ctype, "application/pdf") {
		t.Errorf("attachment %q (%s), want the object's name and content type", filename, ctype)
	}
	waitFor(ctx, t, "the sent result", func() bool { return contains(out.String(), `"idempotency_key":"e2e-gcs-small"`, `"status":"sent"`) })
}

// TestTwentyMegabytesByReference is issue 18's check: a 20 MB object
// uploaded to the dev bucket with plain HTTP and sent by gcs_uri arrives
// byte for byte, in a .eml that Python's email package parses without a
// defect.
func TestTwentyMegabytesByReference(t *testing.T) {
	t.Parallel()
	py, err := exec.LookPath("python3")
	testenv.Require(t, err == nil, "python3", "apt-get install python3 (.ci/run does)")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const account, rcpt = "gcs-big@example.com", "gcs-big-rcpt@example.org"
	connectTo(ctx, t, srv, account)
	body := randomBytes(20_000_000, 2)
	sum := sha256.Sum256(body)
	upload(ctx, t, "default/big.bin", "application/octet-stream", body)

	publish(ctx, t, `{"account":"`+account+`","to":["`+rcpt+`"],"subject":"Twenty megabytes","text":"See the attachment.","idempotency_key":"e2e-gcs-20mb",`+
		`"attachments":[{"gcs_uri":"gs://`+devserver.AttachmentsBucket+`/default/big.bin","filename":"big.bin"}]}`)
	waitFor(ctx, t, "the sent result", func() bool { return contains(out.String(), `"idempotency_key":"e2e-gcs-20mb"`, `"status":"sent"`) })
	f := outboxFile(ctx, t, rcpt)

	const script = `
import email, email.policy, hashlib, json, sys
with open(sys.argv[1], "rb") as f:
    m = email.message_from_binary_file(f, policy=email.policy.default)
print(json.dumps({
    "defects": [type(d).__name__ for p in m.walk() for d in p.defects],
    "attachments": [{"filename": p.get_filename(), "size": len(p.get_payload(decode=True)),
                     "sha256": hashlib.sha256(p.get_payload(decode=True)).hexdigest()} for p in m.iter_attachments()],
}))
`
	b, err := exec.CommandContext(ctx, py, "-c", script, f).Output()
	if err != nil {
		t.Fatalf("python3 could not read %s: %v", f, err)
	}
	var parsed struct {
		Defects     []string
		Attachments []struct {
			Filename string
			Size     int
			SHA256   string
		}
	}
	if err := json.Unmarshal(b, &parsed); err != nil {
		t.Fatalf("python3 printed %s", b)
	}
	if len(parsed.Defects) > 0 {
		t.Errorf("Python's email package finds defects: %v", parsed.Defects)
	}
	if len(parsed.Attachments) != 1 {
		t.Fatalf("Python finds %d attachments, want 1: %s", len(parsed.Attachments), b)
	}
	a := parsed.Attachments[0]
	if a.Filename != "big.bin" || a.Size != len(body) || a.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("Python reads %s, %d bytes, sha256 %s; uploaded big.bin, %d bytes, sha256 %x", a.Filename, a.Size, a.SHA256, len(body), sum)
	}
}
