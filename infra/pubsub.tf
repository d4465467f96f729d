# Topic names are part of the contract with publishers and subscribers, so
# they carry no prefix.

# One send topic per app (local.apps); publishing to it is the right to send
# as the app's accounts, so only its publishers get roles/pubsub.publisher.
resource "google_pubsub_topic" "send" {
  for_each = local.apps

  name       = local.app_topics[each.key]
  depends_on = [google_project_service.enabled]
}

# Before apps existed these were single resources; moving them to the
# default app keeps an existing deployment's topic and subscription.
moved {
  from = google_pubsub_topic.send
  to   = google_pubsub_topic.send["default"]
}

moved {
  from = google_pubsub_subscription.send_push
  to   = google_pubsub_subscription.send_push["default"]
}

resource "google_pubsub_topic_iam_member" "app_publishers" {
  for_each = local.app_publishers

  topic  = google_pubsub_topic.send[each.value.app].id
  role   = "roles/pubsub.publisher"
  member = each.value.member
}

resource "google_pubsub_topic" "results" {
  name       = "gmail-send-results"
  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  name       = "gmail-send-dead-letter"
  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "account_events" {
  name       = "gmail-account-events"
  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "healthcheck" {
  name       = "gmail-healthcheck"
  depends_on = [google_project_service.enabled]
}

# Our own push subscription per app to the sender, rather than an Eventarc
# trigger: it gives the retry backoff and dead-lettering below. The sender
# learns the app from the push body's subscription (see local.app_subscriptions)
# and ignores the path; the endpoint still ends in /projects/P/topics/TOPIC,
# the form the functions framework needs if the sender is ever registered as a
# CloudEvent function again.
resource "google_pubsub_subscription" "send_push" {
  for_each = local.apps

  name  = local.app_subscriptions[each.key]
  topic = google_pubsub_topic.send[each.key].id

  # The sender's timeout is the same; a send that outlives it is redelivered
  # and the ledger's lease decides what happens (DESIGN §5).
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.sender.service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.send[each.key].name}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.sender.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_service_iam_member.sender_push,
    google_service_account_iam_member.agent_signs_push_tokens,
  ]
}

# Without a subscription, messages forwarded to the dead-letter topic would be
# dropped. This one keeps them for 31 days (the maximum; unacknowledged
# messages cost no storage) for inspection or replay, and the alert in
# monitoring.tf fires while it is not empty.
resource "google_pubsub_subscription" "dead_letter" {
  name  = "gmail-send-dead-letter-hold"
  topic = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 600
  message_retention_duration = "2678400s"

  expiration_policy {
    ttl = ""
  }
}

# Cloud Scheduler publishes to gmail-healthcheck; this push subscription
# delivers to the healthcheck the same way as to the sender (one mechanism,
# no Eventarc trigger to manage). A missed run is not retried for long: the
# next scheduled run supersedes it.
resource "google_pubsub_subscription" "healthcheck_push" {
  name  = "gmail-healthcheck-push"
  topic = google_pubsub_topic.healthcheck.id

  ack_deadline_seconds       = 600
  message_retention_duration = "3600s"

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.healthcheck.service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.healthcheck.name}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.healthcheck.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "60s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_service_iam_member.healthcheck_push,
    google_service_account_iam_member.agent_signs_push_tokens,
  ]
}

# No subscription is created on gmail-send-results or gmail-account-events:
# they belong to the applications that consume them, which create their own
# (filtering on the status attribute if they wish). Messages published while
# a topic has no subscription are not kept.
