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
  value       = google_cloudfunctions2_function.admin.service_config[0].uri
}

output "topics" {
  description = "Pub/Sub topic names: send (publish send requests here), results (outcome of every request), dead_letter (requests Pub/Sub gave up on), account_events (account status changes), healthcheck (the schedule's trigger)."
  value = {
    send           = google_pubsub_topic.send.name
    results        = google_pubsub_topic.results.name
    dead_letter    = google_pubsub_topic.dead_letter.name
    account_events = google_pubsub_topic.account_events.name
    healthcheck    = google_pubsub_topic.healthcheck.name
  }
}

output "send_topic" {
  description = "Full resource name of the topic that send requests are published to."
  value       = google_pubsub_topic.send.id
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

output "example_publish_command" {
  description = "A ready-to-run command that sends a test message from a connected account (replace both addresses)."
  value = format(
    "gcloud pubsub topics publish %s --project=%s --attribute=idempotency_key=relay-test-1 --message='%s'",
    google_pubsub_topic.send.name,
    var.project_id,
    jsonencode({
      account         = "you@example.com"
      to              = ["someone@example.org"]
      subject         = "gmail-relay test"
      text            = "Sent through gmail-relay."
      idempotency_key = "relay-test-1"
    }),
  )
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
