package infracheck

import (
	"fmt"
	"slices"
	"strings"
)

// Signers are the functions whose identities sign as the delegate
// (internal/delegation): the sender sends, admin tests, healthcheck checks.
var Signers = []string{"sender", "admin", "healthcheck"}

// tokenCreatorRoles hold iam.serviceAccounts.signJwt (and with it the power
// to act as the account): granted anywhere but on the delegate account
// itself, they would let a function sign as every service account of the
// project, or let another principal send as every delegated user.
var tokenCreatorRoles = []string{"roles/iam.serviceAccountTokenCreator"}

// signJWTPermission is what a custom role would need to do the same.
const signJWTPermission = "iam.serviceAccounts.signJwt"

// checkDelegation: the token-creator grant exists only as
// google_service_account_iam_member on google_service_account.delegate, to
// the sender's, admin's and healthcheck's identities, and nowhere else (not
// on the project, not on another account, not to another principal).
func checkDelegation(m *Module) []string {
	var out []string
	fns, _ := m.functionBlocks()
	saOf := map[string]string{}
	for f, b := range fns {
		if sas := referenced(attr(nested(b.Body, "service_config"), "service_account_email"), "google_service_account"); len(sas) == 1 {
			saOf[sas[0]] = f
		}
	}
	var granted []string
	for _, b := range m.blocksOf("resource") {
		if len(b.Labels) != 2 || !strings.Contains(b.Labels[0], "iam_") {
			continue
		}
		role := attr(b.Body, "role")
		if role == nil {
			if strings.HasSuffix(b.Labels[0], "_iam_policy") && slices.ContainsFunc(tokenCreatorRoles, func(r string) bool {
				return slices.Contains(m.stringsIn(attr(b.Body, "policy_data")), r)
			}) {
				out = append(out, fmt.Sprintf("%s grants token creator in a policy document; grant it with google_service_account_iam_member on the delegate account", b.where()))
			}
			continue
		}
		r, lit := literalString(role)
		signs := lit && slices.Contains(tokenCreatorRoles, r)
		if !lit {
			for _, name := range referenced(role, "google_project_iam_custom_role") {
				if cr := m.resource("google_project_iam_custom_role", name); cr != nil && slices.Contains(m.stringsIn(attr(cr.Body, "permissions")), signJWTPermission) {
					signs = true
				}
			}
		}
		if !signs {
			continue
		}
		if b.Labels[0] != "google_service_account_iam_member" {
			out = append(out, fmt.Sprintf("%s grants %s on more than the delegate account; grant it with google_service_account_iam_member on google_service_account.delegate only", b.where(), m.render(role)))
			continue
		}
		on := referenced(attr(b.Body, "service_account_id"), "google_service_account")
		if slices.Equal(on, []string{"push"}) && isTraversal(attr(b.Body, "member"), "local", "pubsub_agent_member") {
			// The Pub/Sub service agent mints the push identity's OIDC
			// tokens (projects created before 8 April 2021 need it).
			continue
		}
		if !slices.Equal(on, []string{"delegate"}) {
			out = append(out, fmt.Sprintf("%s grants %s on %v; only google_service_account.delegate may be signed as", b.where(), m.render(role), on))
			continue
		}
		grantees := m.grantees(b)
		if len(grantees) == 0 {
			out = append(out, fmt.Sprintf("%s grants token creator on the delegate to a principal that is not one of the relay's function identities", b.where()))
		}
		for _, sa := range grantees {
			f, ok := saOf[sa]
			if !ok || !slices.Contains(Signers, f) {
				out = append(out, fmt.Sprintf("%s lets google_service_account.%s sign as the delegate; only %s may", b.where(), sa, strings.Join(Signers, ", ")))
				continue
			}
			granted = append(granted, f)
		}
	}
	if m.resource("google_service_account", "delegate") == nil {
		return append(out, "there is no google_service_account.delegate for domain-wide delegation (delegated_domains)")
	}
	for _, f := range Signers {
		if !slices.Contains(granted, f) {
			out = append(out, fmt.Sprintf("%s's identity may not sign as the delegate, which domain-wide delegation needs (internal/delegation)", f))
		}
	}
	return out
}
