package infracheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const infraDir = "../../../infra"

// TestInfra runs every check on the real configuration.
func TestInfra(t *testing.T) {
	m, err := Load(infraDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Run() {
		t.Errorf("%s", p)
	}
}

// tree is a copy of infra/ held in memory, file name -> contents.
type tree map[string]string

// replaceOnce replaces old, which must occur exactly once, so that a mutation
// can never silently do nothing.
func (tr tree) replaceOnce(file, old, new string) error {
	src, ok := tr[file]
	if !ok {
		return fmt.Errorf("no file %s", file)
	}
	if n := strings.Count(src, old); n != 1 {
		return fmt.Errorf("%s: %q occurs %d times, want once", file, old, n)
	}
	tr[file] = strings.Replace(src, old, new, 1)
	return nil
}

// removeLine removes the one line that contains substr.
func (tr tree) removeLine(file, substr string) error {
	lines := strings.SplitAfter(tr[file], "\n")
	at := -1
	for i, l := range lines {
		if strings.Contains(l, substr) {
			if at >= 0 {
				return fmt.Errorf("%s: %q is on more than one line", file, substr)
			}
			at = i
		}
	}
	if at < 0 {
		return fmt.Errorf("%s: no line contains %q", file, substr)
	}
	tr[file] = strings.Join(append(lines[:at:at], lines[at+1:]...), "")
	return nil
}

// removeBlock removes the block that starts on the first line containing the
// last anchor, searching each anchor after the line of the previous one
// (so "resource ...", "condition {" removes that resource's condition).
func (tr tree) removeBlock(file string, anchors ...string) error {
	lines := strings.SplitAfter(tr[file], "\n")
	at := 0
	for i, a := range anchors {
		found := -1
		for j := at; j < len(lines); j++ {
			if strings.Contains(lines[j], a) {
				found = j
				break
			}
		}
		if found < 0 {
			return fmt.Errorf("%s: anchor %q not found", file, a)
		}
		at = found
		if i < len(anchors)-1 {
			at++
		}
	}
	depth, end := 0, -1
	for j := at; j < len(lines) && end < 0; j++ {
		depth += strings.Count(lines[j], "{") - strings.Count(lines[j], "}")
		if depth == 0 {
			end = j
		}
	}
	if end < 0 {
		return fmt.Errorf("%s: block at line %d never closes", file, at+1)
	}
	tr[file] = strings.Join(append(lines[:at:at], lines[end+1:]...), "")
	return nil
}

func (tr tree) appendTo(file, text string) error {
	if _, ok := tr[file]; !ok {
		return fmt.Errorf("no file %s", file)
	}
	tr[file] += "\n" + text
	return nil
}

// readTree reads infra/ into memory.
func readTree(t *testing.T) tree {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(infraDir, "*.tf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .tf files in %s: %v", infraDir, err)
	}
	tr := tree{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		tr[filepath.Base(p)] = string(b)
	}
	return tr
}

// write stores the tree as dir/infra, next to a copy of go.mod, the layout
// the runtime check expects.
func (tr tree) write(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "infra")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range tr {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goMod, err := os.ReadFile(filepath.Join(infraDir, "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), goMod, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type mutation struct {
	name   string
	check  string // the check that must report the broken copy
	mutate func(tree) error
}

var mutations = []mutation{
	{"editor granted", "no-primitive-roles", func(tr tree) error {
		return tr.replaceOnce("iam.tf", `role    = "roles/datastore.user"`, `role    = "roles/editor"`)
	}},
	{"owner in a for_each list", "no-primitive-roles", func(tr tree) error {
		return tr.replaceOnce("iam.tf", `"roles/logging.logWriter",`, `"roles/owner",`)
	}},
	{"secret version with data", "no-secret-values", func(tr tree) error {
		return tr.appendTo("secrets.tf", `resource "google_secret_manager_secret_version" "oauth_client" {
  secret      = google_secret_manager_secret.oauth_client.id
  secret_data = "hunter2"
}`)
	}},
	{"secret_data_wo attribute", "no-secret-values", func(tr tree) error {
		return tr.replaceOnce("secrets.tf", `  labels = {`, "  secret_data_wo = \"x\"\n  labels = {")
	}},
	{"variable without description", "descriptions", func(tr tree) error {
		return tr.removeLine("variables.tf", "One relay per project.")
	}},
	{"output with an empty description", "descriptions", func(tr tree) error {
		return tr.replaceOnce("outputs.tf", `description = "The page a mailbox owner opens`, `description = "" # The page a mailbox owner opens`)
	}},
	{"variable without validation", "validations", func(tr tree) error {
		return tr.removeBlock("variables.tf", `variable "max_delivery_attempts"`, "validation {")
	}},
	{"required variable missing", "validations", func(tr tree) error {
		return tr.removeBlock("variables.tf", `variable "admin_invokers"`)
	}},
	{"google provider not pinned to 7.x", "providers-pinned", func(tr tree) error {
		return tr.replaceOnce("versions.tf", "source  = \"hashicorp/google\"\n      version = \"~> 7.0\"", "source  = \"hashicorp/google\"\n      version = \">= 6.0\"")
	}},
	{"API disabled on destroy", "apis", func(tr tree) error {
		return tr.replaceOnce("apis.tf", "disable_on_destroy = false", "disable_on_destroy = true")
	}},
	{"Gmail API not enabled", "apis", func(tr tree) error {
		return tr.removeLine("apis.tf", `"gmail.googleapis.com",`)
	}},
	{"two functions share a service account", "service-accounts", func(tr tree) error {
		return tr.replaceOnce("functions.tf", "service_account_email = google_service_account.confirm.email", "service_account_email = google_service_account.authorize.email")
	}},
	{"sender public instead of confirm", "public-functions", func(tr tree) error {
		if err := tr.replaceOnce("iam.tf", "location = google_cloudfunctions2_function.confirm.location", "location = google_cloudfunctions2_function.sender.location"); err != nil {
			return err
		}
		return tr.replaceOnce("iam.tf", "service  = google_cloudfunctions2_function.confirm.name", "service  = google_cloudfunctions2_function.sender.name")
	}},
	{"authorize not public", "public-functions", func(tr tree) error {
		return tr.removeBlock("iam.tf", `resource "google_cloud_run_service_iam_member" "authorize_public"`)
	}},
	{"admin open to allAuthenticatedUsers through for_each", "public-functions", func(tr tree) error {
		return tr.replaceOnce("iam.tf", "for_each = toset(var.admin_invokers)", `for_each = toset(concat(var.admin_invokers, ["allAuthenticatedUsers"]))`)
	}},
	{"token grant without condition", "token-conditions", func(tr tree) error {
		return tr.removeBlock("iam.tf", `resource "google_project_iam_member" "admin_token_delete"`, "condition {")
	}},
	{"condition not limited to gmail-token-", "token-conditions", func(tr tree) error {
		return tr.replaceOnce("locals.tf", `/secrets/gmail-token-\")`, `/secrets/\")`)
	}},
	{"project-wide secretAccessor", "token-conditions", func(tr tree) error {
		return tr.appendTo("iam.tf", `resource "google_project_iam_member" "sender_reads_all_secrets" {
  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = google_service_account.sender.member
}`)
	}},
	{"push endpoint without the topic path", "push-endpoint", func(tr tree) error {
		return tr.replaceOnce("pubsub.tf", `/projects/${var.project_id}/topics/${google_pubsub_topic.send[each.key].name}"`, `/"`)
	}},
	{"push endpoint to the wrong topic path", "push-endpoint", func(tr tree) error {
		return tr.replaceOnce("pubsub.tf", `topics/${google_pubsub_topic.send[each.key].name}"`, `topics/gmail-send-results"`)
	}},
	{"push endpoint to another topic's path", "push-endpoint", func(tr tree) error {
		return tr.replaceOnce("pubsub.tf", `topics/${google_pubsub_topic.send[each.key].name}"`, `topics/${google_pubsub_topic.results.name}"`)
	}},
	{"push without OIDC", "push-endpoint", func(tr tree) error {
		return tr.removeBlock("pubsub.tf", `resource "google_pubsub_subscription" "send_push"`, "oidc_token {")
	}},
	{"retry backoff too short", "push-endpoint", func(tr tree) error {
		return tr.replaceOnce("pubsub.tf", `minimum_backoff = "10s"`, `minimum_backoff = "1s"`)
	}},
	{"no dead_letter_policy", "dead-letter", func(tr tree) error {
		return tr.removeBlock("pubsub.tf", "dead_letter_policy {")
	}},
	{"no subscription on the dead-letter topic", "dead-letter", func(tr tree) error {
		return tr.removeBlock("pubsub.tf", `resource "google_pubsub_subscription" "dead_letter"`)
	}},
	{"sender also triggered by Eventarc", "dead-letter", func(tr tree) error {
		return tr.replaceOnce("functions.tf", `description = "Sends one Gmail message per send request and publishes the result."`,
			"description = \"Sends one Gmail message per send request and publishes the result.\"\n  event_trigger {\n    event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n  }")
	}},
	{"sender told another max_delivery_attempts", "dead-letter", func(tr tree) error {
		return tr.replaceOnce("functions.tf", "SEND_MAX_DELIVERY_ATTEMPTS = var.max_delivery_attempts", "SEND_MAX_DELIVERY_ATTEMPTS = 5")
	}},
	{"sender without SEND_MAX_DELIVERY_ATTEMPTS", "dead-letter", func(tr tree) error {
		return tr.removeLine("functions.tf", "SEND_MAX_DELIVERY_ATTEMPTS")
	}},
	{"sender without SEND_MAX_ATTEMPTS", "function-env", func(tr tree) error {
		return tr.removeLine("functions.tf", "SEND_MAX_ATTEMPTS =")
	}},
	{"max_send_attempts without validation", "validations", func(tr tree) error {
		return tr.removeBlock("variables.tf", `variable "max_send_attempts"`, "validation {")
	}},
	{"sender without SEND_LEASE", "function-env", func(tr tree) error {
		return tr.removeLine("functions.tf", "SEND_LEASE")
	}},
	{"client secret as a plain variable", "function-env", func(tr tree) error {
		return tr.replaceOnce("locals.tf", "OAUTH_CLIENT_ID      = var.oauth_client_id", "OAUTH_CLIENT_ID      = var.oauth_client_id\n    OAUTH_CLIENT_SECRET  = \"not-here\"")
	}},
	{"variable the config does not read", "function-env", func(tr tree) error {
		return tr.replaceOnce("functions.tf", "ACCOUNT_EVENTS_TOPIC = google_pubsub_topic.account_events.name\n      OAUTH_APP_TESTING", "ACCOUNT_EVENT_TOPIC = google_pubsub_topic.account_events.name\n      OAUTH_APP_TESTING")
	}},
	{"token creator on the whole project", "delegation", func(tr tree) error {
		return tr.appendTo("iam.tf", `resource "google_project_iam_member" "sender_signs_everything" {
  project = var.project_id
  role    = "roles/iam.serviceAccountTokenCreator"
  member  = google_service_account.sender.member
}`)
	}},
	{"token creator on another account", "delegation", func(tr tree) error {
		return tr.replaceOnce("delegation.tf", "service_account_id = google_service_account.delegate[0].name", "service_account_id = google_service_account.sender.name")
	}},
	{"confirm may sign as the delegate", "delegation", func(tr tree) error {
		return tr.replaceOnce("delegation.tf", "sender      = google_service_account.sender.member", "sender      = google_service_account.confirm.member")
	}},
	{"healthcheck may not sign as the delegate", "delegation", func(tr tree) error {
		return tr.removeLine("delegation.tf", "healthcheck = google_service_account.healthcheck.member")
	}},
	{"a custom role with signJwt", "delegation", func(tr tree) error {
		return tr.appendTo("iam.tf", `resource "google_project_iam_custom_role" "signer" {
  role_id     = "signer"
  title       = "signer"
  permissions = ["iam.serviceAccounts.signJwt"]
}
resource "google_project_iam_member" "admin_signs" {
  project = var.project_id
  role    = google_project_iam_custom_role.signer.id
  member  = google_service_account.admin.member
}`)
	}},
	{"the Pub/Sub agent's grant widened to the sender", "delegation", func(tr tree) error {
		return tr.replaceOnce("iam.tf", "service_account_id = google_service_account.push.name\n  role               = \"roles/iam.serviceAccountTokenCreator\"\n  member             = local.pubsub_agent_member",
			"service_account_id = google_service_account.push.name\n  role               = \"roles/iam.serviceAccountTokenCreator\"\n  member             = google_service_account.sender.member")
	}},
	{"confirm sends a different redirect URI", "redirect-uri", func(tr tree) error {
		return tr.replaceOnce("functions.tf", "OAUTH_REDIRECT_URL = local.redirect_uri\n      CONNECT_URL", "OAUTH_REDIRECT_URL = \"${local.redirect_uri}/\"\n      CONNECT_URL")
	}},
	{"runtime behind go.mod", "runtime", func(tr tree) error {
		return tr.replaceOnce("locals.tf", `go_runtime = "go126"`, `go_runtime = "go125"`)
	}},
	{"concurrency without a whole vCPU", "concurrency-cpu", func(tr tree) error {
		return tr.removeLine("functions.tf", "available_cpu")
	}},
	{"sender without concurrency", "concurrency-cpu", func(tr tree) error {
		return tr.removeLine("functions.tf", "max_instance_request_concurrency")
	}},
	{"admin told another URL than the admin_url output", "redirect-uri", func(tr tree) error {
		return tr.replaceOnce("functions.tf", "ADMIN_URL = local.admin_url", "ADMIN_URL = google_cloudfunctions2_function.authorize.url")
	}},
	{"one topic for every app", "app-topics", func(tr tree) error {
		return tr.removeBlock("pubsub.tf", `resource "google_pubsub_topic" "send"`, "for_each = local.apps")
	}},
	{"subscription names the sender cannot map", "app-topics", func(tr tree) error {
		return tr.replaceOnce("pubsub.tf", "name  = local.app_subscriptions[each.key]", `name  = "relay-${each.key}"`)
	}},
	{"app subscription suffix changed", "app-topics", func(tr tree) error {
		return tr.replaceOnce("locals.tf", `"gmail-send-${app}-push"`, `"gmail-send-${app}-sub"`)
	}},
	{"no moved block for the existing topic", "app-topics", func(tr tree) error {
		return tr.removeBlock("pubsub.tf", "moved {", "from = google_pubsub_topic.send")
	}},
	{"APPS without max_recipients", "app-topics", func(tr tree) error {
		return tr.replaceOnce("locals.tf", "{ for k, v in { max_recipients = a.max_recipients } : k => v if v != null },", "")
	}},
	{"sender without APPS", "app-topics", func(tr tree) error {
		return tr.removeLine("functions.tf", "APPS       = local.apps_env")
	}},
	{"publishers of every app on each topic", "topic-publishers", func(tr tree) error {
		return tr.replaceOnce("pubsub.tf", "topic  = google_pubsub_topic.send[each.value.app].id", `topic  = google_pubsub_topic.send["default"].id`)
	}},
	{"a fixed member on the topics", "topic-publishers", func(tr tree) error {
		return tr.replaceOnce("pubsub.tf", "member = each.value.member", `member = "allAuthenticatedUsers"`)
	}},
	{"editor role on the topics", "topic-publishers", func(tr tree) error {
		return tr.replaceOnce("pubsub.tf", "role   = \"roles/pubsub.publisher\"\n  member = each.value.member", "role   = \"roles/pubsub.editor\"\n  member = each.value.member")
	}},
	{"authoritative binding on a send topic", "topic-publishers", func(tr tree) error {
		return tr.appendTo("pubsub.tf", `resource "google_pubsub_topic_iam_binding" "send" {
  for_each = google_pubsub_topic.send
  topic    = each.value.id
  role     = "roles/pubsub.publisher"
  members  = []
}`)
	}},
	{"publish granted project-wide", "topic-publishers", func(tr tree) error {
		return tr.appendTo("iam.tf", `resource "google_project_iam_member" "everyone_publishes" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "group:devs@example.com"
}`)
	}},
	{"confirm may read tokens", "function-roles", func(tr tree) error {
		return tr.replaceOnce("iam.tf", "    \"secretmanager.secrets.delete\",\n    \"secretmanager.versions.add\",", "    \"secretmanager.secrets.delete\",\n    \"secretmanager.versions.access\",\n    \"secretmanager.versions.add\",")
	}},
	{"confirm cannot clean up", "function-roles", func(tr tree) error {
		return tr.replaceOnce("iam.tf", "    \"secretmanager.secrets.delete\",\n    \"secretmanager.versions.add\",", "    \"secretmanager.versions.add\",")
	}},
	{"confirm back on the reading role", "function-roles", func(tr tree) error {
		return tr.replaceOnce("iam.tf", "    sender      = google_service_account.sender.member\n    admin       = google_service_account.admin.member\n    healthcheck = google_service_account.healthcheck.member\n  }\n\n  project = var.project_id\n  role    = google_project_iam_custom_role.token_versions.id",
			"    confirm     = google_service_account.confirm.member\n    sender      = google_service_account.sender.member\n    admin       = google_service_account.admin.member\n    healthcheck = google_service_account.healthcheck.member\n  }\n\n  project = var.project_id\n  role    = google_project_iam_custom_role.token_versions.id")
	}},
	{"confirm granted secretAccessor", "function-roles", func(tr tree) error {
		return tr.appendTo("iam.tf", `resource "google_project_iam_member" "confirm_reads" {
  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = google_service_account.confirm.member
  condition {
    title      = "t"
    expression = local.token_secret_condition
  }
}`)
	}},
	{"sender without GOMEMLIMIT", "sender-memory", func(tr tree) error {
		return tr.removeLine("functions.tf", "GOMEMLIMIT = local.sender_gomemlimit")
	}},
	{"GOMEMLIMIT fixed while memory varies", "sender-memory", func(tr tree) error {
		return tr.replaceOnce("functions.tf", "GOMEMLIMIT = local.sender_gomemlimit", `GOMEMLIMIT = "460MiB"`)
	}},
	{"GOMEMLIMIT at the whole memory", "sender-memory", func(tr tree) error {
		return tr.replaceOnce("locals.tf", "floor(var.sender_memory_mib * 0.9)", "var.sender_memory_mib")
	}},
}

// TestChecksCatchBrokenCopies breaks a copy of infra/ in one way per case and
// expects the matching check to report it: each check can fail.
func TestChecksCatchBrokenCopies(t *testing.T) {
	covered := map[string]bool{}
	for _, mu := range mutations {
		covered[mu.check] = true
		t.Run(mu.name, func(t *testing.T) {
			tr := readTree(t)
			if err := mu.mutate(tr); err != nil {
				t.Fatalf("mutation no longer applies to infra/ (update the test): %v", err)
			}
			m, err := Load(tr.write(t))
			if err != nil {
				t.Fatalf("the broken copy does not parse: %v", err)
			}
			problems := m.Run()
			for _, p := range problems {
				if p.Check == mu.check {
					t.Logf("reported: %s", p)
					return
				}
			}
			t.Errorf("check %s did not report the broken copy; problems were %v", mu.check, problems)
		})
	}
	for _, c := range Checks() {
		if !covered[c.Name] {
			t.Errorf("check %s is not exercised by any mutation, so nothing shows it can fail", c.Name)
		}
	}
}

// TestUnmodifiedCopyPasses guards the harness: a copy made and loaded the same
// way as the broken ones, but unchanged, must pass, or the mutation results
// above would prove nothing.
func TestUnmodifiedCopyPasses(t *testing.T) {
	m, err := Load(readTree(t).write(t))
	if err != nil {
		t.Fatal(err)
	}
	if problems := m.Run(); len(problems) > 0 {
		t.Errorf("unmodified copy: %v", problems)
	}
}

func TestLoadRejectsSyntaxErrors(t *testing.T) {
	tr := readTree(t)
	if err := tr.appendTo("outputs.tf", `output "broken" {`); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(tr.write(t)); err == nil {
		t.Error("Load accepted a file with an unclosed block")
	}
}

func TestLoadRejectsEmptyDirectory(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load accepted a directory without .tf files")
	}
}

// TestTfvarsExampleListsEveryVariable keeps infra/terraform.tfvars.example,
// the operator's starting point, in step with variables.tf: every variable
// appears as "name =", commented out or set, and nothing else does.
func TestTfvarsExampleListsEveryVariable(t *testing.T) {
	m, err := Load(infraDir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(infraDir, "terraform.tfvars.example"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if name, _, ok := strings.Cut(line, " ="); ok {
			if name = strings.TrimSpace(name); !strings.Contains(name, " ") {
				listed[name] = true
			}
		}
	}
	vars := map[string]bool{}
	for _, b := range m.blocksOf("variable") {
		vars[b.Labels[0]] = true
		if !listed[b.Labels[0]] {
			t.Errorf("terraform.tfvars.example does not list variable %q", b.Labels[0])
		}
	}
	for name := range listed {
		// The apps example's keys and fields are not variables.
		if !vars[name] && !slices.Contains([]string{"publishers", "accounts", "raw", "max_recipients", "billing", "crm"}, name) {
			t.Errorf("terraform.tfvars.example sets %q, which is not a variable", name)
		}
	}
}
