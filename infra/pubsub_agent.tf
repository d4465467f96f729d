# The Pub/Sub service agent signs the push OIDC tokens and moves messages to
# the dead-letter topic. Asking for its identity makes Google create it now,
# so the IAM grants that name it never race its lazy creation.
#
# This is the configuration's only google-beta resource, alone in this file:
# the provider that `make test-infra` builds offline is the GA one, which does
# not know it, so scripts/test-infra.sh runs the tests on a copy of infra/
# where infra/tests/stand-ins/pubsub_agent.tf replaces this file.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.enabled]
}

locals {
  pubsub_agent_member = google_project_service_identity.pubsub.member
}
