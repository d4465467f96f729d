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
  admin_url         = "${local.function_base_url}/${local.function_names.admin}"

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

  # Apps (var.apps). Unset, there is one app, default, on today's topic
  # gmail-send and subscription gmail-send-push, so an existing deployment
  # keeps its resources; its topic has no IAM of its own, as before.
  legacy_default = length(var.apps) == 0
  apps = local.legacy_default ? tomap({
    default = { publishers = tolist([]), accounts = tolist(["*"]), raw = true, max_recipients = null }
  }) : var.apps
  # The sender maps a push's subscription back to its app by these names:
  # gmail-send-<app>-push is <app>, gmail-send-push is default.
  app_topics        = { for app in keys(local.apps) : app => local.legacy_default ? "gmail-send" : "gmail-send-${app}" }
  app_subscriptions = { for app in keys(local.apps) : app => local.legacy_default ? "gmail-send-push" : "gmail-send-${app}-push" }
  # One topic IAM member per (app, publisher): nobody else, and nothing
  # project-wide.
  app_publishers = { for p in flatten([for app, a in local.apps : [for m in a.publishers : { app = app, member = m }]]) : "${p.app} ${p.member}" => p }
  # The sender's APPS: each app's policy; max_recipients only where set.
  apps_env = jsonencode({ for app, a in local.apps : app => merge(
    { accounts = a.accounts, raw = a.raw },
    { for k, v in { max_recipients = a.max_recipients } : k => v if v != null },
  ) })

  # The Go runtime does not read the container's memory limit: GOMEMLIMIT at
  # 90% of it makes the collector run before the heap doubles past it.
  sender_memory     = "${var.sender_memory_mib}Mi"
  sender_gomemlimit = "${floor(var.sender_memory_mib * 0.9)}MiB"
}

# The attachments bucket (storage.tf). Bucket names are global, so the
# default carries the project ID, like the source bucket's.
locals {
  attachment_bucket   = var.attachment_bucket != "" ? var.attachment_bucket : "${var.project_id}-${var.name_prefix}attachments"
  attachment_location = var.attachment_location != "" ? var.attachment_location : var.region
  # What each app's requests may reference in the relay's bucket, and all
  # its publishers may write.
  attachment_prefixes = { for app in keys(local.apps) : app => "gs://${local.attachment_bucket}/${app}/" }
}
