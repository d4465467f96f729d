output "connect_url" {
  description = "The page a mailbox owner opens to connect their Gmail account (authorize). Add ?login_hint=alice@example.com to preselect the account."
  value       = local.connect_url
}

output "redirect_uri" {
  description = "Paste this, exactly, under Authorized redirect URIs of the OAuth client (Google Cloud console > APIs & Services > Credentials). It is the confirm function's URL, and authorize and confirm send it byte for byte the same."
  value       = local.redirect_uri
}

output "admin_url" {
  description = "Base URL of the admin function (IAM only), for example: curl -H \"Authorization: Bearer $(gcloud auth print-identity-token)\" <admin_url>/accounts"
  value       = local.admin_url
}

output "topics" {
  description = "Pub/Sub topic names: send (app name => the topic its send requests are published to), results (outcome of every request), dead_letter (requests Pub/Sub gave up on), account_events (account status changes), healthcheck (the schedule's trigger)."
  value = {
    send           = local.app_topics
    results        = google_pubsub_topic.results.name
    dead_letter    = google_pubsub_topic.dead_letter.name
    account_events = google_pubsub_topic.account_events.name
    healthcheck    = google_pubsub_topic.healthcheck.name
  }
}

output "send_topics" {
  description = "App name => the topic that app publishes send requests to (gmail-send-<app>; gmail-send for the default app when apps is unset). make smoke reads it."
  value       = { for app, t in google_pubsub_topic.send : app => t.name }
}

output "send_topic" {
  description = "Full resource name of the send topic while there is exactly one app (the default app when apps is unset); null with several apps (see send_topics)."
  value       = length(google_pubsub_topic.send) == 1 ? one(values(google_pubsub_topic.send)).id : null
}

output "results_topic" {
  description = "Full resource name of the topic that carries one result event per send request; subscribe to it from the publishing application."
  value       = google_pubsub_topic.results.id
}

output "dead_letter_subscription" {
  description = "Pull subscription that keeps send requests Pub/Sub could not deliver (31 days); an alert fires while it holds any."
  value       = google_pubsub_subscription.dead_letter.name
}

output "client_secret_secret_id" {
  description = "Secret Manager secret that must hold the OAuth client secret: printf %s \"$SECRET\" | gcloud secrets versions add <this> --data-file=-"
  value       = google_secret_manager_secret.oauth_client.secret_id
}

# The key is made by the shell when the command runs ($(date +%s)), so that a
# re-run after a failed first test is a new request, not a duplicate of it.
output "example_publish_command" {
  description = "A ready-to-run command that sends a test message as the first app (replace both addresses); each run gets a fresh idempotency key."
  value = format(
    "gcloud pubsub topics publish %s --project=%s --attribute=idempotency_key=relay-test-$(date +%%s) --message='%s'",
    local.app_topics[local.example_app],
    var.project_id,
    jsonencode({
      account = local.example_account
      to      = ["someone@example.org"]
      subject = "gmail-relay test"
      text    = "Sent through gmail-relay."
    }),
  )
}

locals {
  example_app     = sort(keys(local.apps))[0]
  example_account = try([for a in local.apps[local.example_app].accounts : a if !startswith(a, "*")][0], "you@example.com")
}

# The redirect URI is computed before the functions exist (see locals.tf).
# After a deployment, compare it with the URL Google reports for confirm: a
# mismatch would make Google refuse the consent flow with
# redirect_uri_mismatch.
check "redirect_uri_is_confirm_url" {
  assert {
    condition     = google_cloudfunctions2_function.confirm.url == local.redirect_uri
    error_message = "Google reports ${google_cloudfunctions2_function.confirm.url} as the confirm function's URL, but OAUTH_REDIRECT_URL and the redirect_uri output use ${local.redirect_uri}."
  }
}

output "attachment_bucket" {
  description = "Name of the attachments bucket. Upload a large file under your app's prefix (see attachment_prefixes) and reference it as attachments[].gcs_uri; the bucket deletes objects after attachment_retention_days."
  value       = google_storage_bucket.attachments.name
}

output "attachment_prefixes" {
  description = "App name => the gs:// prefix its publishers may upload to and its requests may reference (gs://BUCKET/<app>/; default without apps), for example gcloud storage cp report.pdf <prefix>report-42.pdf."
  value       = local.attachment_prefixes
}
