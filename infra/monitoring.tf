# Two alerts: a mailbox whose token died (someone must reconnect it), and
# send requests Pub/Sub gave up on. With alert_email empty the policies
# exist and show incidents in the console, but notify nobody.

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == "" ? 0 : 1

  display_name = "gmail-relay alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.enabled]
}

locals {
  alert_channels = google_monitoring_notification_channel.email[*].id
}

# The functions log {"event":"account_status_changed","status":"reauth_required"}
# when a refresh fails with invalid_grant.
resource "google_logging_metric" "reauth_required" {
  name        = "${var.name_prefix}reauth-required"
  description = "Accounts that entered reauth_required (their refresh token was revoked or expired)."
  filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.event=\"account_status_changed\" AND jsonPayload.status=\"reauth_required\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "reauth_required" {
  display_name = "gmail-relay: a mailbox must be reconnected"
  combiner     = "OR"

  conditions {
    display_name = "An account entered reauth_required"

    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.reauth_required.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A Gmail account's refresh token stopped working (revoked, password changed, unused for 6 months, or the 7-day expiry of an OAuth app in Testing status). Sends for it fail with reauth_required. Find the account in the logs (jsonPayload.event=\"account_status_changed\") or with the admin function's GET /accounts, and have its owner open ${local.connect_url} again."
  }

  notification_channels = local.alert_channels
}

# Pub/Sub's own metric: messages waiting in the dead-letter subscription.
# It stays in alarm until someone replays or acknowledges them.
resource "google_monitoring_alert_policy" "dead_letters" {
  display_name = "gmail-relay: send requests reached the dead-letter topic"
  combiner     = "OR"

  conditions {
    display_name = "Messages are waiting in ${google_pubsub_subscription.dead_letter.name}"

    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.label.subscription_id = \"${google_pubsub_subscription.dead_letter.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Pub/Sub delivered a send request ${var.max_delivery_attempts} times without success and moved it to gmail-send-dead-letter. Inspect it with `gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letter.name} --project=${var.project_id} --limit=10` (add --auto-ack once handled), check the sender's logs, fix the cause, and republish to gmail-send if it should still go out."
  }

  notification_channels = local.alert_channels

  depends_on = [google_project_service.enabled]
}
