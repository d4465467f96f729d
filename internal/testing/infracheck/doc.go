// Package infracheck checks the Terraform configuration in infra/ offline,
// without providers or credentials: it parses the .tf files with HCL and
// asserts the properties a reviewer would otherwise have to re-verify by hand
// on every change. No primitive role is granted and no secret value enters the
// Terraform state; every variable and output is described; each function runs
// as its own service account; only authorize and confirm are public; every
// app's push subscription targets the sender at its topic's path and
// dead-letters into a topic that has a subscription; each app's topic is
// published to only by that app's publishers, and nothing grants publishing
// project-wide; every project-level grant on Secret Manager versions is
// conditioned on the gmail-token- prefix, and each function holds the
// permissions its code uses (confirm stores and deletes tokens but cannot read
// them); the sender's GOMEMLIMIT follows its memory; the provider is pinned;
// APIs stay enabled on destroy; and each function gets exactly the
// environment variables the config package reads.
//
// The values those structures produce (each topic's members, APPS,
// GOMEMLIMIT, the redirect URI) are asserted by infra/tests/*.tftest.hcl,
// which `make test-infra` runs with the real provider's schema.
//
// The tests run every check on the real infra/ directory, and on broken copies
// of it, to prove that each check fails when its property is lost; another
// test keeps the expected environment in step with the config package.
package infracheck
