# Publishes to gmail-healthcheck on schedule. Cloud Scheduler's own service
# agent holds pubsub.topics.publish through its service agent role, so no
# extra identity is needed.
resource "google_cloud_scheduler_job" "healthcheck" {
  name        = "${var.name_prefix}healthcheck"
  description = "Refresh every stored Gmail token and mark dead ones reauth_required."
  region      = var.region
  schedule    = var.healthcheck_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.healthcheck.id
    data       = base64encode("{}")
  }

  depends_on = [google_project_service.enabled]
}
