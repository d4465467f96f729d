package infracheck

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Checks of the apps (who may send as whom) and of what each function's
// identity may do. The values themselves (each topic's members equal its
// app's publishers, APPS, GOMEMLIMIT) are evaluated by infra/tests/*.tftest.hcl
// under `make test-infra`; these checks hold the structure that makes those
// values follow from var.apps and nothing else, and run in `go test`.

// FunctionPermissions are Secret Manager permissions each function's
// identity must, and must not, hold at the project level (on the
// gmail-token-* secrets), from what its code calls (internal/tokenstore).
var FunctionPermissions = map[string]struct{ Must, MustNot []string }{
	// Save (add, list and destroy older versions, create on first
	// connect) and Delete on its cleanup path; it never reads a token.
	"confirm": {
		Must:    []string{"secretmanager.secrets.create", "secretmanager.secrets.delete", "secretmanager.versions.add", "secretmanager.versions.list", "secretmanager.versions.destroy"},
		MustNot: []string{"secretmanager.versions.access"},
	},
	"authorize": {
		MustNot: []string{"secretmanager.versions.access", "secretmanager.versions.add", "secretmanager.secrets.create", "secretmanager.secrets.delete"},
	},
	"sender":      {Must: []string{"secretmanager.versions.access", "secretmanager.versions.add"}},
	"healthcheck": {Must: []string{"secretmanager.versions.access", "secretmanager.versions.add"}},
	"admin":       {Must: []string{"secretmanager.versions.access", "secretmanager.secrets.delete"}},
}

// predefinedSecretRoles are the Secret Manager permissions of the
// predefined roles a configuration might grant (Google's IAM roles
// reference); any other roles/secretmanager.* role is reported, since its
// permissions cannot be checked here.
var predefinedSecretRoles = map[string][]string{
	"roles/secretmanager.secretAccessor":       {"secretmanager.versions.access"},
	"roles/secretmanager.secretVersionAdder":   {"secretmanager.versions.add"},
	"roles/secretmanager.secretVersionManager": {"secretmanager.versions.add", "secretmanager.versions.destroy", "secretmanager.versions.disable", "secretmanager.versions.enable", "secretmanager.versions.get", "secretmanager.versions.list"},
	"roles/secretmanager.viewer":               {"secretmanager.secrets.get", "secretmanager.secrets.list", "secretmanager.versions.get", "secretmanager.versions.list"},
	"roles/secretmanager.admin": {"secretmanager.secrets.create", "secretmanager.secrets.delete", "secretmanager.secrets.get", "secretmanager.secrets.list",
		"secretmanager.versions.access", "secretmanager.versions.add", "secretmanager.versions.destroy", "secretmanager.versions.get", "secretmanager.versions.list"},
}

// traversalsIn returns the step lists of every reference in e, following
// references to locals (the local's own reference is included too).
func (m *Module) traversalsIn(e hclsyntax.Expression) [][]string {
	var out [][]string
	m.collectTraversals(e, &out, 0)
	return out
}

func (m *Module) collectTraversals(e hclsyntax.Expression, out *[][]string, depth int) {
	if e == nil || depth > 10 {
		return
	}
	// Every reference node, including those rooted at a for expression's
	// own variables (a.publishers), which Variables() leaves out.
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		switch n := n.(type) {
		case *hclsyntax.ScopeTraversalExpr:
			s := steps(n.Traversal)
			*out = append(*out, s)
			if len(s) >= 2 && s[0] == "local" {
				m.collectTraversals(m.locals[s[1]], out, depth+1)
			}
		case *hclsyntax.RelativeTraversalExpr:
			*out = append(*out, append([]string{"."}, steps(n.Traversal)...))
		}
		return nil
	})
}

// refersTo reports whether e, following locals, refers to root.name (for
// example var.apps) or reads an attribute called name after root "." (any
// object's .publishers).
func (m *Module) refersTo(e hclsyntax.Expression, root, name string) bool {
	for _, s := range m.traversalsIn(e) {
		if root == "." && slices.Contains(s[1:], name) {
			return true
		}
		if len(s) >= 2 && s[0] == root && s[1] == name {
			return true
		}
	}
	return false
}

// isTraversal reports whether e is exactly the reference want (index steps
// as "[]").
func isTraversal(e hclsyntax.Expression, want ...string) bool {
	t, ok := e.(*hclsyntax.ScopeTraversalExpr)
	return ok && slices.Equal(steps(t.Traversal), want)
}

// indexedBy returns the key expression of an index step in e, such as
// each.value.app in google_pubsub_topic.send[each.value.app].id.
func indexedBy(e hclsyntax.Expression) (hclsyntax.Expression, []string) {
	switch e := e.(type) {
	case *hclsyntax.RelativeTraversalExpr:
		if ix, ok := e.Source.(*hclsyntax.IndexExpr); ok {
			if st, ok := ix.Collection.(*hclsyntax.ScopeTraversalExpr); ok {
				return ix.Key, append(steps(st.Traversal), steps(e.Traversal)...)
			}
		}
	case *hclsyntax.ScopeTraversalExpr:
		return nil, steps(e.Traversal)
	}
	return nil, nil
}

func checkAppTopics(m *Module) []string {
	var out []string
	topics := m.sendTopics()
	subs, _ := m.sendPushes()
	if len(topics) == 0 {
		return []string{"no send topic: no push subscription to the sender reads a google_pubsub_topic"}
	}
	appsLocal := m.locals["apps"]
	if appsLocal == nil || !m.refersTo(appsLocal, "var", "apps") {
		out = append(out, "local.apps must be built from var.apps (with the default app when it is empty)")
	}
	for _, b := range append(slices.Clone(topics), subs...) {
		if !isTraversal(attr(b.Body, "for_each"), "local", "apps") {
			out = append(out, fmt.Sprintf("%s must have for_each = local.apps: one per app", b.where()))
		}
		nameLocal := "app_topics"
		if b.Labels[0] == "google_pubsub_subscription" {
			nameLocal = "app_subscriptions"
		}
		if !m.refersTo(attr(b.Body, "name"), "local", nameLocal) {
			out = append(out, fmt.Sprintf("%s must take its name from local.%s, the names the sender maps back to apps", b.where(), nameLocal))
		}
		if !m.hasMovedToDefault(b) {
			out = append(out, fmt.Sprintf("%s needs a moved block from %s to %s[\"default\"], or an existing deployment's resource is replaced", b.where(), b.Labels[0]+"."+b.Labels[1], b.Labels[0]+"."+b.Labels[1]))
		}
	}
	// The naming contract with internal/policy: gmail-send / gmail-send-push
	// for the default app, gmail-send-<app> / gmail-send-<app>-push otherwise.
	for local, want := range map[string][]string{"app_topics": {"gmail-send", "gmail-send-"}, "app_subscriptions": {"gmail-send-push", "gmail-send-", "-push"}} {
		got := m.stringsIn(m.locals[local])
		for _, w := range want {
			if !slices.Contains(got, w) {
				out = append(out, fmt.Sprintf("local.%s lacks %q: names must be gmail-send[-<app>] and gmail-send[-<app>]-push", local, w))
			}
		}
	}
	fns, _ := m.functionBlocks()
	if s := fns["sender"]; s != nil {
		env := attr(nested(s.Body, "service_config"), "environment_variables")
		v, err := m.objectValue(env, "APPS")
		switch {
		case err != nil || v == nil:
			out = append(out, fmt.Sprintf("%s: the sender lacks APPS, each app's policy", s.where()))
		case !m.refersTo(v, "local", "apps") || !m.refersTo(v, ".", "accounts") || !m.refersTo(v, ".", "raw") || !m.refersTo(v, ".", "max_recipients"):
			out = append(out, fmt.Sprintf("%s: APPS must be built from local.apps, with each app's accounts, raw and max_recipients", s.where()))
		}
	}
	return out
}

// hasMovedToDefault reports whether a moved block moves the resource's
// address without a key to its "default" instance.
func (m *Module) hasMovedToDefault(b *Block) bool {
	want := []string{b.Labels[0], b.Labels[1]}
	for _, mv := range m.blocksOf("moved") {
		from, ok := attr(mv.Body, "from").(*hclsyntax.ScopeTraversalExpr)
		if !ok || !slices.Equal(steps(from.Traversal), want) {
			continue
		}
		to, ok := attr(mv.Body, "to").(*hclsyntax.ScopeTraversalExpr)
		if !ok || len(to.Traversal) != 3 || !slices.Equal(steps(to.Traversal)[:2], want) {
			continue
		}
		if ix, ok := to.Traversal[2].(hcl.TraverseIndex); ok && ix.Key.Type() == cty.String && ix.Key.AsString() == "default" {
			return true
		}
	}
	return false
}

var pubsubRole = regexp.MustCompile(`^roles/pubsub\.(publisher|editor|admin)$`)

func checkTopicPublishers(m *Module) []string {
	var out []string
	topics := m.sendTopics()
	for _, t := range topics {
		var members []*Block
		for _, typ := range []string{"google_pubsub_topic_iam_member", "google_pubsub_topic_iam_binding", "google_pubsub_topic_iam_policy"} {
			for _, b := range m.resources(typ) {
				if !slices.Contains(referencedVia(b, "topic", "google_pubsub_topic"), t.Labels[1]) {
					continue
				}
				if typ != "google_pubsub_topic_iam_member" {
					out = append(out, fmt.Sprintf("%s is authoritative on a send topic; grant each app's publishers with google_pubsub_topic_iam_member", b.where()))
					continue
				}
				members = append(members, b)
			}
		}
		if len(members) != 1 {
			out = append(out, fmt.Sprintf("want exactly one google_pubsub_topic_iam_member (for_each over the apps' publishers) on %s, found %d", t.where(), len(members)))
			continue
		}
		b := members[0]
		if r, _ := literalString(attr(b.Body, "role")); r != "roles/pubsub.publisher" {
			out = append(out, fmt.Sprintf("%s must grant roles/pubsub.publisher, and nothing more, on a send topic", b.where()))
		}
		fe := attr(b.Body, "for_each")
		if fe == nil || !m.refersTo(fe, "local", "apps") || !m.refersTo(fe, ".", "publishers") {
			out = append(out, fmt.Sprintf("%s: for_each must be every (app, publisher) of the apps' publishers", b.where()))
		}
		if !isTraversal(attr(b.Body, "member"), "each", "value", "member") {
			out = append(out, fmt.Sprintf("%s: member must be each.value.member, the app's publisher", b.where()))
		}
		if key, _ := indexedBy(attr(b.Body, "topic")); key == nil || !isTraversal(key, "each", "value", "app") {
			out = append(out, fmt.Sprintf("%s: topic must be %s[each.value.app], the publisher's own app's topic", b.where(), t.Labels[0]+"."+t.Labels[1]))
		}
	}
	// Publishing is the right to send: no project-wide way around the topics.
	for _, typ := range []string{"google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy"} {
		for _, b := range m.resources(typ) {
			for _, r := range append(m.stringsIn(attr(b.Body, "role")), m.stringsIn(attr(b.Body, "for_each"))...) {
				if pubsubRole.MatchString(r) {
					out = append(out, fmt.Sprintf("%s grants %s project-wide: whoever holds it may publish to every app's topic and send as its accounts", b.where(), r))
				}
			}
			for _, name := range referenced(attr(b.Body, "role"), "google_project_iam_custom_role") {
				if cr := m.resource("google_project_iam_custom_role", name); cr != nil && slices.Contains(m.stringsIn(attr(cr.Body, "permissions")), "pubsub.topics.publish") {
					out = append(out, fmt.Sprintf("%s grants pubsub.topics.publish project-wide (custom role %s)", b.where(), name))
				}
			}
		}
	}
	return out
}

// referencedVia returns the resources of type typ that attribute name of b
// refers to, directly or through each (the resources of its for_each).
func referencedVia(b *Block, name, typ string) []string {
	e := attr(b.Body, name)
	out := referenced(e, typ)
	if refersToEach(e) {
		for _, r := range referenced(attr(b.Body, "for_each"), typ) {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// grantees returns the google_service_account resources a project IAM
// resource grants to: named in member, or the values of its for_each
// object when member is each.value.
func (m *Module) grantees(b *Block) []string {
	member := attr(b.Body, "member")
	if member == nil {
		member = attr(b.Body, "members")
	}
	if refersToEach(member) {
		return referenced(attr(b.Body, "for_each"), "google_service_account")
	}
	return referenced(member, "google_service_account")
}

// permissionsOf returns the Secret Manager permissions of a role expression,
// or a problem when they cannot be known.
func (m *Module) permissionsOf(b *Block, role hclsyntax.Expression) ([]string, string) {
	if r, ok := literalString(role); ok {
		if perms, known := predefinedSecretRoles[r]; known {
			return perms, ""
		}
		if strings.HasPrefix(r, "roles/secretmanager.") {
			return nil, fmt.Sprintf("%s grants %s, whose permissions this check does not know; add it to predefinedSecretRoles", b.where(), r)
		}
		return nil, ""
	}
	var perms []string
	for _, name := range referenced(role, "google_project_iam_custom_role") {
		if cr := m.resource("google_project_iam_custom_role", name); cr != nil {
			perms = append(perms, m.stringsIn(attr(cr.Body, "permissions"))...)
		}
	}
	return perms, ""
}

func checkFunctionRoles(m *Module) []string {
	fns, out := m.functionBlocks()
	saOf := map[string]string{} // service account resource -> function
	for f, b := range fns {
		if sas := referenced(attr(nested(b.Body, "service_config"), "service_account_email"), "google_service_account"); len(sas) == 1 {
			saOf[sas[0]] = f
		}
	}
	held := map[string][]string{}
	for _, typ := range []string{"google_project_iam_member", "google_project_iam_binding"} {
		for _, b := range m.resources(typ) {
			perms, problem := m.permissionsOf(b, attr(b.Body, "role"))
			if problem != "" {
				out = append(out, problem)
			}
			for _, sa := range m.grantees(b) {
				if f, ok := saOf[sa]; ok {
					held[f] = append(held[f], perms...)
				}
			}
		}
	}
	for _, f := range Functions {
		want := FunctionPermissions[f]
		for _, p := range want.Must {
			if !slices.Contains(held[f], p) {
				out = append(out, fmt.Sprintf("%s's identity lacks %s, which its code needs (internal/tokenstore)", f, p))
			}
		}
		for _, p := range want.MustNot {
			if slices.Contains(held[f], p) {
				out = append(out, fmt.Sprintf("%s's identity holds %s, which it never uses", f, p))
			}
		}
	}
	return out
}

// numbersIn returns every number literal in e, following locals.
func (m *Module) numbersIn(e hclsyntax.Expression, depth int) []float64 {
	var out []float64
	if e == nil || depth > 10 {
		return nil
	}
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		switch n := n.(type) {
		case *hclsyntax.LiteralValueExpr:
			if n.Val.Type() == cty.Number {
				f, _ := n.Val.AsBigFloat().Float64()
				out = append(out, f)
			}
		case *hclsyntax.ScopeTraversalExpr:
			if s := steps(n.Traversal); len(s) >= 2 && s[0] == "local" {
				out = append(out, m.numbersIn(m.locals[s[1]], depth+1)...)
			}
		}
		return nil
	})
	return out
}

// varsIn returns the input variables e depends on, following locals.
func (m *Module) varsIn(e hclsyntax.Expression) []string {
	var out []string
	for _, s := range m.traversalsIn(e) {
		if len(s) >= 2 && s[0] == "var" && !slices.Contains(out, s[1]) {
			out = append(out, s[1])
		}
	}
	return out
}

func checkSenderMemory(m *Module) []string {
	fns, _ := m.functionBlocks()
	s := fns["sender"]
	if s == nil {
		return nil // reported by the function checks
	}
	sc := nested(s.Body, "service_config")
	mem := attr(sc, "available_memory")
	limit, err := m.objectValue(attr(sc, "environment_variables"), "GOMEMLIMIT")
	if err != nil || limit == nil {
		return []string{fmt.Sprintf("%s: the sender lacks GOMEMLIMIT: Go does not read the container's limit, and 80 large pushes then outgrow it", s.where())}
	}
	var out []string
	memVars, limitVars := m.varsIn(mem), m.varsIn(limit)
	if len(memVars) == 0 || !slices.Equal(memVars, limitVars) {
		out = append(out, fmt.Sprintf("%s: available_memory (from %v) and GOMEMLIMIT (from %v) must both be computed from the same memory setting", s.where(), memVars, limitVars))
	}
	ok := false
	for _, f := range m.numbersIn(limit, 0) {
		ok = ok || (f >= 0.85 && f <= 0.95)
	}
	if !ok {
		out = append(out, fmt.Sprintf("%s: GOMEMLIMIT must be about 90%% of the memory (a factor from 0.85 to 0.95)", s.where()))
	}
	if !slices.Contains(m.stringsIn(limit), "MiB") || !slices.Contains(m.stringsIn(mem), "Mi") {
		out = append(out, fmt.Sprintf("%s: available_memory must be in Mi and GOMEMLIMIT in MiB (Go's unit)", s.where()))
	}
	return out
}
