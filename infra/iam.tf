# One identity per function, plus the push identity Pub/Sub presents to the
# sender and the healthcheck, and the identity Cloud Build builds with.
# Everything is granted on the narrowest resource that works.

resource "google_service_account" "authorize" {
  account_id   = "${var.name_prefix}authorize"
  display_name = "gmail-relay authorize function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "confirm" {
  account_id   = "${var.name_prefix}confirm"
  display_name = "gmail-relay confirm function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "sender" {
  account_id   = "${var.name_prefix}sender"
  display_name = "gmail-relay sender function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "admin" {
  account_id   = "${var.name_prefix}admin"
  display_name = "gmail-relay admin function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "healthcheck" {
  account_id   = "${var.name_prefix}healthcheck"
  display_name = "gmail-relay healthcheck function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "push" {
  account_id   = "${var.name_prefix}push"
  display_name = "gmail-relay Pub/Sub push identity"
  description  = "Signs the OIDC tokens of the push subscriptions to the sender and the healthcheck."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}build"
  display_name = "gmail-relay function builds"
  description  = "Cloud Build runs the Go buildpack for the functions as this account."
  depends_on   = [google_project_service.enabled]
}

# --- Builds ------------------------------------------------------------------
# The minimum Google documents for a custom build service account of Cloud Run
# functions: write build logs, read the staged source, push the image to the
# gcf-artifacts repository that Cloud Functions creates itself (so these two
# cannot be narrowed to a resource Terraform manages).

resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/storage.objectViewer",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.build.member
}

# --- Refresh tokens in Secret Manager ---------------------------------------
# A secret that does not exist yet can only be created with a project-level
# permission, so secrets.create stands alone in its own role and is the one
# grant without a condition. Every grant that touches versions is limited by
# an IAM condition to secrets named gmail-token-*.

resource "google_project_iam_custom_role" "token_create" {
  role_id     = "${replace(trimsuffix(var.name_prefix, "-"), "-", "_")}_token_create"
  title       = "gmail-relay: create token secrets"
  description = "Create the Secret Manager secret that holds a newly connected mailbox's refresh token."
  permissions = ["secretmanager.secrets.create"]
}

resource "google_project_iam_custom_role" "token_versions" {
  role_id     = "${replace(trimsuffix(var.name_prefix, "-"), "-", "_")}_token_versions"
  title       = "gmail-relay: use token secrets"
  description = "Read, add, list and destroy versions of the refresh-token secrets (granted only with a condition on gmail-token-*)."
  permissions = [
    "secretmanager.secrets.get",
    "secretmanager.versions.access",
    "secretmanager.versions.add",
    "secretmanager.versions.destroy",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
  ]
}

# What confirm does with a token (tokenstore Save and, when the account
# cannot be registered, Delete): add a version, list and destroy the older
# ones, delete the secret. It never reads one back, so it holds no
# versions.access.
resource "google_project_iam_custom_role" "token_store" {
  role_id     = "${replace(trimsuffix(var.name_prefix, "-"), "-", "_")}_token_store"
  title       = "gmail-relay: store token secrets"
  description = "Add, list and destroy versions of the refresh-token secrets, and delete them, without reading them (granted only with a condition on gmail-token-*)."
  permissions = [
    "secretmanager.secrets.delete",
    "secretmanager.versions.add",
    "secretmanager.versions.destroy",
    "secretmanager.versions.list",
  ]
}

resource "google_project_iam_custom_role" "token_delete" {
  role_id     = "${replace(trimsuffix(var.name_prefix, "-"), "-", "_")}_token_delete"
  title       = "gmail-relay: delete token secrets"
  description = "Delete a refresh-token secret when a mailbox is disconnected (granted only with a condition on gmail-token-*)."
  permissions = ["secretmanager.secrets.delete"]
}

resource "google_project_iam_member" "confirm_token_create" {
  project = var.project_id
  role    = google_project_iam_custom_role.token_create.id
  member  = google_service_account.confirm.member
}

resource "google_project_iam_member" "confirm_token_store" {
  project = var.project_id
  role    = google_project_iam_custom_role.token_store.id
  member  = google_service_account.confirm.member

  condition {
    title       = "gmail-relay token secrets"
    description = "Only the secrets that hold gmail-relay refresh tokens, and their versions."
    expression  = local.token_secret_condition
  }
}

# sender and healthcheck read tokens and save the new refresh token Google
# may return on a refresh (add, then destroy the older versions); admin tests
# (refreshes) and disconnects accounts.
resource "google_project_iam_member" "token_versions" {
  for_each = {
    sender      = google_service_account.sender.member
    admin       = google_service_account.admin.member
    healthcheck = google_service_account.healthcheck.member
  }

  project = var.project_id
  role    = google_project_iam_custom_role.token_versions.id
  member  = each.value

  condition {
    title       = "gmail-relay token secrets"
    description = "Only the secrets that hold gmail-relay refresh tokens, and their versions."
    expression  = local.token_secret_condition
  }
}

resource "google_project_iam_member" "admin_token_delete" {
  project = var.project_id
  role    = google_project_iam_custom_role.token_delete.id
  member  = google_service_account.admin.member

  condition {
    title       = "gmail-relay token secrets"
    description = "Only the secrets that hold gmail-relay refresh tokens."
    expression  = local.token_secret_condition
  }
}

# --- OAuth client secret -------------------------------------------------------
# Every function reads it through secret_environment_variables; the grant is
# on that one secret.

resource "google_secret_manager_secret_iam_member" "oauth_client" {
  for_each = {
    authorize   = google_service_account.authorize.member
    confirm     = google_service_account.confirm.member
    sender      = google_service_account.sender.member
    admin       = google_service_account.admin.member
    healthcheck = google_service_account.healthcheck.member
  }

  secret_id = google_secret_manager_secret.oauth_client.id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}

# --- Account registry and send ledger (Firestore) ----------------------------
# Firestore has no finer-grained IAM than the project (database-level IAM
# conditions aside); authorize keeps no state there and gets nothing.

resource "google_project_iam_member" "datastore_user" {
  for_each = {
    confirm     = google_service_account.confirm.member
    sender      = google_service_account.sender.member
    admin       = google_service_account.admin.member
    healthcheck = google_service_account.healthcheck.member
  }

  project = var.project_id
  role    = "roles/datastore.user"
  member  = each.value
}

# --- Pub/Sub ------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "sender_publishes_results" {
  topic  = google_pubsub_topic.results.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.sender.member
}

resource "google_pubsub_topic_iam_member" "healthcheck_publishes_account_events" {
  topic  = google_pubsub_topic.account_events.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.healthcheck.member
}

# The Pub/Sub service agent forwards undeliverable messages: it publishes to
# the dead-letter topic and acknowledges them on the source subscription.
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent_member
}

resource "google_pubsub_subscription_iam_member" "agent_subscribes_send" {
  for_each = google_pubsub_subscription.send_push

  subscription = each.value.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent_member
}

moved {
  from = google_pubsub_subscription_iam_member.agent_subscribes_send
  to   = google_pubsub_subscription_iam_member.agent_subscribes_send["default"]
}

# Projects created before 8 April 2021 need this for authenticated push; it is
# limited to the push identity.
resource "google_service_account_iam_member" "agent_signs_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent_member
}

# --- Who may invoke which function ---------------------------------------------
# In gen2 every function is a Cloud Run service of the same name; invoking it
# takes roles/run.invoker on that service.

resource "google_cloud_run_service_iam_member" "authorize_public" {
  location = google_cloudfunctions2_function.authorize.location
  service  = google_cloudfunctions2_function.authorize.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_service_iam_member" "confirm_public" {
  location = google_cloudfunctions2_function.confirm.location
  service  = google_cloudfunctions2_function.confirm.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_service_iam_member" "sender_push" {
  location = google_cloudfunctions2_function.sender.location
  service  = google_cloudfunctions2_function.sender.name
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

resource "google_cloud_run_service_iam_member" "healthcheck_push" {
  location = google_cloudfunctions2_function.healthcheck.location
  service  = google_cloudfunctions2_function.healthcheck.name
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

resource "google_cloud_run_service_iam_member" "admin_invokers" {
  for_each = toset(var.admin_invokers)

  location = google_cloudfunctions2_function.admin.location
  service  = google_cloudfunctions2_function.admin.name
  role     = "roles/run.invoker"
  member   = each.value
}
