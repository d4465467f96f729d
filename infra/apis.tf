# Every API the relay and its deployment use. Destroying the stack leaves them
# enabled: disabling an API project-wide could break other workloads.
resource "google_project_service" "enabled" {
  # IAM Credentials (signJwt) only for domain-wide delegation (delegation.tf).
  for_each = toset(concat(length(var.delegated_domains) > 0 ? ["iamcredentials.googleapis.com"] : [], [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "gmail.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]))

  service            = each.value
  disable_on_destroy = false
}

data "google_project" "this" {
  project_id = var.project_id
}
