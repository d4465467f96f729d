# The OAuth client secret. Terraform creates only the container: the value
# is added with gcloud (see README, Deploy), so it never enters the Terraform
# state. The refresh-token secrets (gmail-token-*) are created at run time by
# confirm and are not managed here.
resource "google_secret_manager_secret" "oauth_client" {
  secret_id = "${var.name_prefix}oauth-client-secret"

  labels = {
    app = "gmail-relay"
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}
