package infracheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Functions are the five function names (entry points) infra must deploy.
var Functions = []string{"authorize", "confirm", "sender", "admin", "healthcheck"}

// FunctionEnv is the environment each function must get, exactly: the names
// the config package reads. OAUTH_CLIENT_SECRET must come from Secret
// Manager, never from a plain environment variable.
var FunctionEnv = map[string][]string{
	"authorize":   {"GOOGLE_CLOUD_PROJECT", "LOG_LEVEL", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_REDIRECT_URL", "ALLOWED_DOMAINS", "ALLOWED_EMAILS"},
	"confirm":     {"GOOGLE_CLOUD_PROJECT", "LOG_LEVEL", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_REDIRECT_URL", "ALLOWED_DOMAINS", "ALLOWED_EMAILS", "CONNECT_URL", "STORE_BACKEND", "FIRESTORE_DATABASE"},
	"sender":      {"GOOGLE_CLOUD_PROJECT", "LOG_LEVEL", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "ALLOWED_DOMAINS", "ALLOWED_EMAILS", "APPS", "RESULTS_TOPIC", "CONNECT_URL", "SEND_LEASE", "SEND_TIMEOUT", "SEND_MAX_DELIVERY_ATTEMPTS", "SEND_MAX_ATTEMPTS", "STORE_BACKEND", "FIRESTORE_DATABASE", "GOMEMLIMIT", "ACCOUNT_EVENTS_TOPIC", "DELEGATED_DOMAINS", "DELEGATE_SERVICE_ACCOUNT", "DELEGATE_CLIENT_ID", "ATTACHMENTS_BUCKET", "ATTACHMENTS_EXTRA_BUCKETS", "ATTACHMENTS_DELETE_AFTER_SEND"},
	"admin":       {"GOOGLE_CLOUD_PROJECT", "LOG_LEVEL", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "CONNECT_URL", "ADMIN_URL", "OAUTH_APP_TESTING", "STORE_BACKEND", "FIRESTORE_DATABASE", "DELEGATED_DOMAINS", "DELEGATE_SERVICE_ACCOUNT", "DELEGATE_CLIENT_ID"},
	"healthcheck": {"GOOGLE_CLOUD_PROJECT", "LOG_LEVEL", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "CONNECT_URL", "ACCOUNT_EVENTS_TOPIC", "OAUTH_APP_TESTING", "STORE_BACKEND", "FIRESTORE_DATABASE", "DELEGATED_DOMAINS", "DELEGATE_SERVICE_ACCOUNT", "DELEGATE_CLIENT_ID"},
}

// RuntimeEnv are variables in FunctionEnv that the Go runtime reads, not the
// config package.
var RuntimeEnv = []string{"GOMEMLIMIT"}

// secretEnv are the variables that must be secret_environment_variables.
var secretEnv = []string{"OAUTH_CLIENT_SECRET"}

// PublicFunctions are the functions anyone on the internet may invoke.
var PublicFunctions = []string{"authorize", "confirm"}

// RequiredAPIs must be enabled by google_project_service resources.
var RequiredAPIs = []string{
	"artifactregistry.googleapis.com", "cloudbuild.googleapis.com", "cloudfunctions.googleapis.com",
	"cloudscheduler.googleapis.com", "eventarc.googleapis.com", "firestore.googleapis.com",
	"gmail.googleapis.com", "iam.googleapis.com", "logging.googleapis.com", "pubsub.googleapis.com",
	"run.googleapis.com", "secretmanager.googleapis.com",
}

// ValidatedVariables must exist and carry at least one validation block.
var ValidatedVariables = []string{
	"project_id", "region", "name_prefix", "oauth_client_id", "allowed_domains", "allowed_emails",
	"sender_max_instances", "sender_concurrency", "max_delivery_attempts", "max_send_attempts", "healthcheck_schedule",
	"alert_email", "admin_invokers", "log_level", "firestore_location", "source_archive",
	"apps", "sender_memory_mib", "delegated_domains",
}

// ProviderVersion is the version constraint every Google provider must use.
const ProviderVersion = "~> 7.0"

// TokenSecretPrefix is the secret ID prefix of the refresh-token secrets.
const TokenSecretPrefix = "gmail-token-"

// Check is one named property of the configuration.
type Check struct {
	Name string
	// Run returns one message per violation.
	Run func(*Module) []string
}

// Problem is a violation found by a check.
type Problem struct {
	Check   string
	Message string
}

func (p Problem) String() string { return p.Check + ": " + p.Message }

// Checks lists every check, in the order they run.
func Checks() []Check {
	return []Check{
		{"no-primitive-roles", checkNoPrimitiveRoles},
		{"no-secret-values", checkNoSecretValues},
		{"descriptions", checkDescriptions},
		{"validations", checkValidations},
		{"providers-pinned", checkProvidersPinned},
		{"apis", checkAPIs},
		{"service-accounts", checkServiceAccounts},
		{"public-functions", checkPublicFunctions},
		{"token-conditions", checkTokenConditions},
		{"push-endpoint", checkPushEndpoint},
		{"dead-letter", checkDeadLetter},
		{"function-env", checkFunctionEnv},
		{"redirect-uri", checkRedirectURI},
		{"runtime", checkRuntime},
		{"concurrency-cpu", checkConcurrencyCPU},
		{"app-topics", checkAppTopics},
		{"topic-publishers", checkTopicPublishers},
		{"function-roles", checkFunctionRoles},
		{"sender-memory", checkSenderMemory},
		{"delegation", checkDelegation},
	}
}

// Run runs every check and returns the problems found.
func (m *Module) Run() []Problem {
	var out []Problem
	for _, c := range Checks() {
		for _, msg := range c.Run(m) {
			out = append(out, Problem{Check: c.Name, Message: msg})
		}
	}
	return out
}

var primitiveRole = regexp.MustCompile(`^roles/(owner|editor|viewer)$`)

func checkNoPrimitiveRoles(m *Module) []string {
	var out []string
	for _, name := range sortedKeys(m.files) {
		hclsyntax.VisitAll(m.files[name], func(n hclsyntax.Node) hcl.Diagnostics {
			if l, ok := n.(*hclsyntax.LiteralValueExpr); ok && l.Val.Type() == cty.String && primitiveRole.MatchString(l.Val.AsString()) {
				out = append(out, fmt.Sprintf("%s:%d grants the primitive role %s; grant a predefined or custom role on the narrowest resource instead", name, l.SrcRange.Start.Line, l.Val.AsString()))
			}
			return nil
		})
	}
	return out
}

func checkNoSecretValues(m *Module) []string {
	var out []string
	for _, typ := range []string{"google_secret_manager_secret_version", "google_secret_manager_regional_secret_version"} {
		for _, b := range m.resources(typ) {
			out = append(out, fmt.Sprintf("%s creates a secret version: its value would be stored in the Terraform state; add it with gcloud secrets versions add instead", b.where()))
		}
	}
	for _, name := range sortedKeys(m.files) {
		hclsyntax.VisitAll(m.files[name], func(n hclsyntax.Node) hcl.Diagnostics {
			if a, ok := n.(*hclsyntax.Attribute); ok && strings.HasPrefix(a.Name, "secret_data") {
				out = append(out, fmt.Sprintf("%s:%d sets %s: secret values must not pass through Terraform", name, a.SrcRange.Start.Line, a.Name))
			}
			return nil
		})
	}
	return out
}

func checkDescriptions(m *Module) []string {
	var out []string
	for _, typ := range []string{"variable", "output"} {
		for _, b := range m.blocksOf(typ) {
			d, ok := literalString(attr(b.Body, "description"))
			if !ok || strings.TrimSpace(d) == "" {
				out = append(out, fmt.Sprintf("%s has no description (a non-empty constant string)", b.where()))
			}
		}
	}
	return out
}

func checkValidations(m *Module) []string {
	vars := map[string]*Block{}
	for _, b := range m.blocksOf("variable") {
		vars[b.Labels[0]] = b
	}
	var out []string
	for _, name := range ValidatedVariables {
		b, ok := vars[name]
		if !ok {
			out = append(out, fmt.Sprintf("variable %q is missing", name))
			continue
		}
		if len(children(b.Body, "validation")) == 0 {
			out = append(out, fmt.Sprintf("%s has no validation block", b.where()))
		}
	}
	return out
}

func checkProvidersPinned(m *Module) []string {
	var out []string
	found := map[string]bool{}
	// A terraform block may hold only a backend (infra/backend.tf): one
	// block with the version constraint is enough.
	versioned := false
	for _, tf := range m.blocksOf("terraform") {
		if _, ok := literalString(attr(tf.Body, "required_version")); ok {
			versioned = true
		}
		for _, rp := range children(tf.Body, "required_providers") {
			for name, a := range rp.Body.Attributes {
				found[name] = true
				version, ok := m.objectItem(a.Expr, "version")
				v, isConst := literalString(version)
				switch {
				case !ok || !isConst:
					out = append(out, fmt.Sprintf("provider %q has no constant version constraint", name))
				case (name == "google" || name == "google-beta") && v != ProviderVersion:
					out = append(out, fmt.Sprintf("provider %q is constrained to %q, want %q", name, v, ProviderVersion))
				}
			}
		}
	}
	if !versioned {
		out = append(out, "no terraform block has a constant required_version")
	}
	if !found["google"] {
		out = append(out, "required_providers does not declare google")
	}
	return out
}

func checkAPIs(m *Module) []string {
	var out []string
	enabled := map[string]bool{}
	services := m.resources("google_project_service")
	if len(services) == 0 {
		return []string{"no google_project_service resource enables the APIs"}
	}
	for _, b := range services {
		v, ok := literal(attr(b.Body, "disable_on_destroy"))
		if !ok || v.Type() != cty.Bool || v.True() {
			out = append(out, fmt.Sprintf("%s must set disable_on_destroy = false (destroying the relay must not disable APIs other workloads use)", b.where()))
		}
		for _, s := range m.stringsIn(attr(b.Body, "service")) {
			enabled[s] = true
		}
		for _, s := range m.stringsIn(attr(b.Body, "for_each")) {
			enabled[s] = true
		}
	}
	for _, api := range RequiredAPIs {
		if !enabled[api] {
			out = append(out, fmt.Sprintf("API %s is not enabled by any google_project_service", api))
		}
	}
	return out
}

// functionBlocks maps each function's entry point to its resource.
func (m *Module) functionBlocks() (map[string]*Block, []string) {
	fns := map[string]*Block{}
	var out []string
	for _, b := range m.resources("google_cloudfunctions2_function") {
		ep, ok := literalString(attr(nested(b.Body, "build_config"), "entry_point"))
		if !ok {
			out = append(out, fmt.Sprintf("%s has no constant build_config.entry_point", b.where()))
			continue
		}
		if prev, dup := fns[ep]; dup {
			out = append(out, fmt.Sprintf("%s and %s both use entry point %q", prev.where(), b.where(), ep))
		}
		fns[ep] = b
	}
	for _, f := range Functions {
		if _, ok := fns[f]; !ok {
			out = append(out, fmt.Sprintf("no google_cloudfunctions2_function has entry point %q", f))
		}
	}
	return fns, out
}

func checkServiceAccounts(m *Module) []string {
	fns, out := m.functionBlocks()
	usedBy := map[string]string{}
	for _, f := range Functions {
		b, ok := fns[f]
		if !ok {
			continue
		}
		sas := referenced(attr(nested(b.Body, "service_config"), "service_account_email"), "google_service_account")
		if len(sas) != 1 {
			out = append(out, fmt.Sprintf("%s: service_config.service_account_email must name exactly one google_service_account, found %v", b.where(), sas))
			continue
		}
		sa := sas[0]
		if m.resource("google_service_account", sa) == nil {
			out = append(out, fmt.Sprintf("%s runs as google_service_account.%s, which is not defined", b.where(), sa))
		}
		if other, dup := usedBy[sa]; dup {
			out = append(out, fmt.Sprintf("functions %s and %s share google_service_account.%s; each function needs its own identity", other, f, sa))
		}
		usedBy[sa] = f
	}
	return out
}

// iamResourceTypes are the resources that grant invoker access to a
// function's Cloud Run service.
var iamResourceTypes = []string{
	"google_cloud_run_service_iam_member", "google_cloud_run_service_iam_binding", "google_cloud_run_service_iam_policy",
	"google_cloud_run_v2_service_iam_member", "google_cloud_run_v2_service_iam_binding", "google_cloud_run_v2_service_iam_policy",
	"google_cloudfunctions2_function_iam_member", "google_cloudfunctions2_function_iam_binding", "google_cloudfunctions2_function_iam_policy",
}

var publicMember = regexp.MustCompile(`^(allUsers|allAuthenticatedUsers)$`)

func checkPublicFunctions(m *Module) []string {
	fns, out := m.functionBlocks()
	entry := map[string]string{} // resource name -> entry point
	for ep, b := range fns {
		entry[b.Labels[1]] = ep
	}
	public := map[string]bool{}
	for _, typ := range iamResourceTypes {
		for _, b := range m.resources(typ) {
			isPublic := false
			members := append(m.stringsIn(attr(b.Body, "member")), m.stringsIn(attr(b.Body, "members"))...)
			if refersToEach(attr(b.Body, "member")) || refersToEach(attr(b.Body, "members")) {
				members = append(members, m.stringsIn(attr(b.Body, "for_each"))...)
			}
			for _, s := range members {
				isPublic = isPublic || publicMember.MatchString(s)
			}
			if strings.HasSuffix(typ, "_iam_policy") {
				for _, s := range m.stringsIn(attr(b.Body, "policy_data")) {
					isPublic = isPublic || strings.Contains(s, "allUsers") || strings.Contains(s, "allAuthenticatedUsers")
				}
			}
			if !isPublic {
				continue
			}
			for _, fn := range referencedInBody(b.Body, "google_cloudfunctions2_function") {
				if ep, ok := entry[fn]; ok {
					public[ep] = true
				}
			}
		}
	}
	for _, f := range Functions {
		want := slices.Contains(PublicFunctions, f)
		switch {
		case want && !public[f]:
			out = append(out, fmt.Sprintf("%s must be invokable by allUsers (it is reached from a browser)", f))
		case !want && public[f]:
			out = append(out, fmt.Sprintf("%s is invokable by allUsers or allAuthenticatedUsers; it must be reachable only through IAM", f))
		}
	}
	return out
}

// grantsOnSecrets reports whether a role (a constant or a custom role of this
// module) carries Secret Manager permissions beyond creating secrets.
func (m *Module) grantsOnSecrets(role hclsyntax.Expression) bool {
	if r, ok := literalString(role); ok {
		return strings.HasPrefix(r, "roles/secretmanager.") && r != "roles/secretmanager.viewer"
	}
	for _, name := range referenced(role, "google_project_iam_custom_role") {
		if b := m.resource("google_project_iam_custom_role", name); b != nil {
			for _, p := range m.stringsIn(attr(b.Body, "permissions")) {
				if strings.HasPrefix(p, "secretmanager.") && p != "secretmanager.secrets.create" {
					return true
				}
			}
		}
	}
	return false
}

func checkTokenConditions(m *Module) []string {
	var out []string
	for _, typ := range []string{"google_project_iam_member", "google_project_iam_binding"} {
		for _, b := range m.resources(typ) {
			if !m.grantsOnSecrets(attr(b.Body, "role")) {
				continue
			}
			conds := children(b.Body, "condition")
			ok := false
			if len(conds) == 1 {
				for _, s := range m.stringsIn(attr(conds[0].Body, "expression")) {
					ok = ok || strings.Contains(s, "secrets/"+TokenSecretPrefix)
				}
			}
			if !ok {
				out = append(out, fmt.Sprintf("%s grants Secret Manager access project-wide without a condition limiting it to secrets named %s* (resource.name.startsWith(\"projects/NUMBER/secrets/%s\"))", b.where(), TokenSecretPrefix, TokenSecretPrefix))
			}
		}
	}
	return out
}

// subscriptionsOn returns the subscriptions that read from topic.
func (m *Module) subscriptionsOn(topic *Block) []*Block {
	var out []*Block
	for _, s := range m.resources("google_pubsub_subscription") {
		if slices.Contains(referenced(attr(s.Body, "topic"), "google_pubsub_topic"), topic.Labels[1]) {
			out = append(out, s)
		}
	}
	return out
}

// sendPushes returns the push subscriptions to the sender (one resource,
// for_each over the apps, in this configuration), or a problem.
func (m *Module) sendPushes() ([]*Block, string) {
	sender := functionResourceName(m, "sender")
	var push []*Block
	for _, s := range m.resources("google_pubsub_subscription") {
		pc := nested(s.Body, "push_config")
		if pc != nil && sender != "" && slices.Contains(referenced(attr(pc, "push_endpoint"), "google_cloudfunctions2_function"), sender) {
			push = append(push, s)
		}
	}
	if len(push) == 0 {
		return nil, "no push subscription delivers to the sender"
	}
	return push, ""
}

// sendTopics returns the topics the sender's push subscriptions read.
func (m *Module) sendTopics() []*Block {
	subs, _ := m.sendPushes()
	var out []*Block
	for _, s := range subs {
		for _, name := range referenced(attr(s.Body, "topic"), "google_pubsub_topic") {
			if t := m.resource("google_pubsub_topic", name); t != nil && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// endsInOwnTopicPath reports whether a push endpoint is a template ending in
// "/projects/${...}/topics/${google_pubsub_topic.<topic>....name}".
func endsInOwnTopicPath(e hclsyntax.Expression, topic string) bool {
	t, ok := e.(*hclsyntax.TemplateExpr)
	if !ok || len(t.Parts) < 4 {
		return false
	}
	n := len(t.Parts)
	_, st := indexedBy(t.Parts[n-1])
	if len(st) < 3 || st[0] != "google_pubsub_topic" || st[1] != topic || st[len(st)-1] != "name" {
		return false
	}
	lit, ok := t.Parts[n-2].(*hclsyntax.LiteralValueExpr)
	if !ok || lit.Val.Type() != cty.String || lit.Val.AsString() != "/topics/" {
		return false
	}
	lit, ok = t.Parts[n-4].(*hclsyntax.LiteralValueExpr)
	return ok && lit.Val.Type() == cty.String && strings.HasSuffix(lit.Val.AsString(), "/projects/")
}

func checkPushEndpoint(m *Module) []string {
	subs, problem := m.sendPushes()
	if subs == nil {
		return []string{problem}
	}
	var out []string
	for _, sub := range subs {
		pc := nested(sub.Body, "push_config")
		endpoint := attr(pc, "push_endpoint")
		topics := referenced(attr(sub.Body, "topic"), "google_pubsub_topic")
		if len(topics) != 1 || !endsInOwnTopicPath(endpoint, topics[0]) {
			out = append(out, fmt.Sprintf("%s pushes to %s, which does not end in /projects/PROJECT/topics/<the name of the topic it reads> (the form the functions framework needs to serve a CloudEvent function)", sub.where(), m.render(endpoint)))
		}
		oidc := nested(pc, "oidc_token")
		if oidc == nil || attr(oidc, "service_account_email") == nil || attr(oidc, "audience") == nil {
			out = append(out, fmt.Sprintf("%s must sign pushes with an oidc_token (service_account_email and audience)", sub.where()))
		}
		rp := nested(sub.Body, "retry_policy")
		minB, _ := literalString(attr(rp, "minimum_backoff"))
		maxB, _ := literalString(attr(rp, "maximum_backoff"))
		if minB != "10s" || maxB != "600s" {
			out = append(out, fmt.Sprintf("%s must retry with backoff from 10s to 600s, has %q..%q", sub.where(), minB, maxB))
		}
	}
	return out
}

func functionResourceName(m *Module, entryPoint string) string {
	fns, _ := m.functionBlocks()
	if b, ok := fns[entryPoint]; ok {
		return b.Labels[1]
	}
	return ""
}

func checkDeadLetter(m *Module) []string {
	subs, problem := m.sendPushes()
	if subs == nil {
		return []string{problem}
	}
	var out []string
	for _, sub := range subs {
		out = append(out, m.checkDeadLetterOf(sub)...)
	}
	return out
}

func (m *Module) checkDeadLetterOf(sub *Block) []string {
	dlp := nested(sub.Body, "dead_letter_policy")
	if dlp == nil {
		return []string{fmt.Sprintf("%s has no dead_letter_policy: a message that always fails would be retried until it expires", sub.where())}
	}
	var out []string
	if attr(dlp, "max_delivery_attempts") == nil {
		out = append(out, fmt.Sprintf("%s: dead_letter_policy sets no max_delivery_attempts", sub.where()))
	} else if n, ok := literalNumber(attr(dlp, "max_delivery_attempts")); ok && n < 5 {
		out = append(out, fmt.Sprintf("%s: max_delivery_attempts %v is below 5", sub.where(), n))
	}
	topics := referenced(attr(dlp, "dead_letter_topic"), "google_pubsub_topic")
	if len(topics) != 1 {
		return append(out, fmt.Sprintf("%s: dead_letter_topic must name one google_pubsub_topic of this module", sub.where()))
	}
	dl := m.resource("google_pubsub_topic", topics[0])
	if dl == nil {
		return append(out, fmt.Sprintf("%s dead-letters to google_pubsub_topic.%s, which is not defined", sub.where(), topics[0]))
	}
	if slices.Contains(referenced(attr(sub.Body, "topic"), "google_pubsub_topic"), topics[0]) {
		out = append(out, fmt.Sprintf("%s dead-letters into its own topic", sub.where()))
	}
	if len(m.subscriptionsOn(dl)) == 0 {
		out = append(out, fmt.Sprintf("no subscription on %s: dead-lettered messages would be lost", dl.where()))
	}
	fns, _ := m.functionBlocks()
	if fns["sender"] != nil && len(children(fns["sender"].Body, "event_trigger")) > 0 {
		out = append(out, "the sender has an event_trigger: it must be fed only by the push subscription, which owns retries and dead-lettering")
	}
	// The sender reports a request on its last delivery attempt, before
	// Pub/Sub dead-letters it; it must know which attempt that is.
	if s := fns["sender"]; s != nil && attr(dlp, "max_delivery_attempts") != nil {
		env := attr(nested(s.Body, "service_config"), "environment_variables")
		var v hclsyntax.Expression
		var err error
		if env != nil {
			v, err = m.objectValue(env, "SEND_MAX_DELIVERY_ATTEMPTS")
		}
		want := m.render(attr(dlp, "max_delivery_attempts"))
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s: environment_variables: %v", s.where(), err))
		case v == nil:
			out = append(out, fmt.Sprintf("%s: the sender lacks SEND_MAX_DELIVERY_ATTEMPTS, so a dead-lettered request gets no result", s.where()))
		case m.render(v) != want:
			out = append(out, fmt.Sprintf("%s: SEND_MAX_DELIVERY_ATTEMPTS is %s, but %s dead-letters after %s", s.where(), m.render(v), sub.where(), want))
		}
	}
	return out
}

func checkFunctionEnv(m *Module) []string {
	fns, out := m.functionBlocks()
	for _, f := range Functions {
		b, ok := fns[f]
		if !ok {
			continue
		}
		sc := nested(b.Body, "service_config")
		var plain []string
		if e := attr(sc, "environment_variables"); e != nil {
			keys, err := m.objectKeys(e)
			if err != nil {
				out = append(out, fmt.Sprintf("%s: environment_variables: %v", b.where(), err))
				continue
			}
			plain = keys
		}
		var secret []string
		for _, s := range children(sc, "secret_environment_variables") {
			if k, ok := literalString(attr(s.Body, "key")); ok {
				secret = append(secret, k)
			}
		}
		got := slices.Concat(plain, secret)
		for _, want := range FunctionEnv[f] {
			if !slices.Contains(got, want) {
				out = append(out, fmt.Sprintf("%s: %s lacks %s", b.where(), f, want))
			}
		}
		for _, k := range got {
			if !slices.Contains(FunctionEnv[f], k) {
				out = append(out, fmt.Sprintf("%s: %s gets %s, which its configuration does not read", b.where(), f, k))
			}
		}
		for _, k := range secretEnv {
			if slices.Contains(plain, k) {
				out = append(out, fmt.Sprintf("%s: %s is a plain environment variable; it must come from Secret Manager (secret_environment_variables)", b.where(), k))
			}
		}
	}
	return out
}

func checkRedirectURI(m *Module) []string {
	fns, out := m.functionBlocks()
	outputs := map[string]*Block{}
	for _, o := range m.blocksOf("output") {
		outputs[o.Labels[0]] = o
	}
	compare := func(what, env string, fnNames []string) {
		o, ok := outputs[what]
		if !ok {
			out = append(out, fmt.Sprintf("output %q is missing", what))
			return
		}
		want := m.render(attr(o.Body, "value"))
		for _, f := range fnNames {
			b, ok := fns[f]
			if !ok {
				continue
			}
			v, ok := m.objectItem(attr(nested(b.Body, "service_config"), "environment_variables"), env)
			if !ok {
				continue // reported by function-env
			}
			if got := m.render(v); got != want {
				out = append(out, fmt.Sprintf("%s: %s is %s but output %s is %s; they must be byte-identical", b.where(), env, got, what, want))
			}
		}
	}
	compare("redirect_uri", "OAUTH_REDIRECT_URL", []string{"authorize", "confirm"})
	compare("connect_url", "CONNECT_URL", []string{"confirm", "sender", "admin", "healthcheck"})
	compare("admin_url", "ADMIN_URL", []string{"admin"})
	return out
}

var goDirective = regexp.MustCompile(`(?m)^go\s+(\d+)\.(\d+)`)

func checkRuntime(m *Module) []string {
	goMod, err := os.ReadFile(filepath.Join(m.Dir, "..", "go.mod"))
	if err != nil {
		return []string{fmt.Sprintf("reading the module's go.mod: %v", err)}
	}
	g := goDirective.FindSubmatch(goMod)
	if g == nil {
		return []string{"go.mod has no go directive"}
	}
	want := "go" + string(g[1]) + string(g[2])
	fns, out := m.functionBlocks()
	for _, f := range Functions {
		b, ok := fns[f]
		if !ok {
			continue
		}
		got := m.render(attr(nested(b.Body, "build_config"), "runtime"))
		if got != want {
			out = append(out, fmt.Sprintf("%s: runtime %s does not match go.mod's go %s.%s (want %s)", b.where(), got, g[1], g[2], want))
		}
	}
	return out
}

func checkConcurrencyCPU(m *Module) []string {
	fns, out := m.functionBlocks()
	for _, f := range Functions {
		b, ok := fns[f]
		if !ok {
			continue
		}
		sc := nested(b.Body, "service_config")
		conc := attr(sc, "max_instance_request_concurrency")
		if conc == nil {
			if f == "sender" {
				out = append(out, fmt.Sprintf("%s: the sender must set max_instance_request_concurrency above 1", b.where()))
			}
			continue
		}
		if n, ok := literalNumber(conc); ok && n <= 1 {
			continue
		}
		if cpu, ok := literalNumber(attr(sc, "available_cpu")); !ok || cpu < 1 {
			out = append(out, fmt.Sprintf("%s: concurrency above 1 needs available_cpu of at least 1", b.where()))
		}
	}
	return out
}

// refersToEach reports whether e uses each.key or each.value.
func refersToEach(e hclsyntax.Expression) bool {
	if e == nil {
		return false
	}
	for _, t := range e.Variables() {
		if t.RootName() == "each" {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
