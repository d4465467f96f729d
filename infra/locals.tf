locals {
  # The Cloud Run functions runtime matching go.mod's "go 1.26".
  go_runtime = "go126"

  function_names = {
    authorize   = "${var.name_prefix}authorize"
    confirm     = "${var.name_prefix}confirm"
    sender      = "${var.name_prefix}sender"
    admin       = "${var.name_prefix}admin"
    healthcheck = "${var.name_prefix}healthcheck"
  }

  # Functions deployed through the Cloud Functions v2 API also answer at
  # https://REGION-PROJECT.cloudfunctions.net/NAME. That address is known
  # before anything is deployed, so authorize and confirm can name each other
  # without a dependency cycle. The check in outputs.tf compares it with the
  # URL Google reports after the deployment.
  function_base_url = "https://${var.region}-${var.project_id}.cloudfunctions.net"
  connect_url       = "${local.function_base_url}/${local.function_names.authorize}"
  redirect_uri      = "${local.function_base_url}/${local.function_names.confirm}"

  firestore_location = var.firestore_location != "" ? var.firestore_location : var.region

  source_archive = var.source_archive != "" ? var.source_archive : "${path.module}/../dist/function-source.zip"
  # Empty while the archive is missing; the precondition on the bucket object
  # then says to run scripts/package.sh. terraform destroy does not need it.
  source_sha256 = fileexists(local.source_archive) ? filesha256(local.source_archive) : ""

  # Refresh tokens live in secrets named gmail-token-<sha256 of the address>,
  # created by confirm at connect time. IAM conditions on resource.name use
  # the project NUMBER; the prefix also matches their versions
  # (projects/N/secrets/gmail-token-.../versions/V).
  token_secret_condition = "resource.name.startsWith(\"projects/${data.google_project.this.number}/secrets/gmail-token-\")"

  # Environment shared by every function (OAUTH_CLIENT_SECRET comes from
  # Secret Manager, see secret_environment_variables).
  base_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    LOG_LEVEL            = var.log_level
    OAUTH_CLIENT_ID      = var.oauth_client_id
  }

  # The functions that keep accounts and the send ledger in Firestore.
  store_env = {
    STORE_BACKEND      = "firestore"
    FIRESTORE_DATABASE = google_firestore_database.default.name
  }

  access_env = {
    ALLOWED_DOMAINS = join(",", var.allowed_domains)
    ALLOWED_EMAILS  = join(",", var.allowed_emails)
  }
}
