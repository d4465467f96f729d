# Stand-in for infra/pubsub_agent.tf under `make test-infra` only: the GA
# provider built offline does not know google_project_service_identity
# (google-beta is not served), so scripts/test-infra.sh swaps this file in on a
# copy of infra/. It names the agent by the address Google gives it,
# service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com, which is what
# the real resource's member returns.
locals {
  pubsub_agent_member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
