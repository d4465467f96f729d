# Attachments by Cloud Storage reference (attachments[].gcs_uri): a bucket
# publishers upload large files to, which the sender reads with its own
# identity and streams into Gmail. Objects are transient copies, so the
# bucket deletes them itself after attachment_retention_days.

resource "google_storage_bucket" "attachments" {
  name     = local.attachment_bucket
  location = local.attachment_location

  # IAM only (no object ACLs), which the per-app IAM conditions below also
  # require; and never public, whatever a publisher's upload asks for.
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # The objects are copies of what publishers still hold, kept at most
  # attachment_retention_days: terraform destroy (make destroy) deletes them
  # with the bucket rather than stopping half-way on a non-empty bucket,
  # as it does for the source bucket.
  force_destroy = true

  # A deleted attachment (by the lifecycle rule or after the send) is gone,
  # not kept another 7 days by the default soft-delete policy: it is mail
  # content, and keeping it would only cost.
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  # Age-based deletion runs asynchronously: Cloud Storage usually deletes an
  # object within a day of reaching the age.
  lifecycle_rule {
    condition {
      age = var.attachment_retention_days
    }
    action {
      type = "Delete"
    }
  }

  labels = {
    app = "gmail-relay"
  }

  depends_on = [google_project_service.enabled]
}

# Each app's publishers may create objects only under gs://BUCKET/<app>/,
# the prefix the sender requires of that app's references, so one app
# cannot have the relay mail another app's uploads. objectCreator holds no
# get, list or delete: a publisher cannot read others' files, nor replace
# an object (overwriting needs delete), so each upload takes a new name.
resource "google_storage_bucket_iam_member" "attachment_publishers" {
  for_each = local.app_publishers

  bucket = google_storage_bucket.attachments.name
  role   = "roles/storage.objectCreator"
  member = each.value.member

  condition {
    title       = "gmail-relay attachments of ${each.value.app}"
    description = "Only objects under ${each.value.app}/, the prefix the sender accepts from app ${each.value.app}."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.attachments.name}/objects/${each.value.app}/\")"
  }
}

# The sender, and only the sender, reads the objects (it checks the app's
# prefix itself, from the push's subscription).
resource "google_storage_bucket_iam_member" "sender_reads_attachments" {
  bucket = google_storage_bucket.attachments.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.sender.member
}

# With attachment_delete_after_send the sender deletes what it sent. A
# custom role with storage.objects.delete alone, bound on this bucket only,
# rather than roles/storage.objectUser: that role would also let the sender
# create and overwrite objects, which it never needs (a condition can narrow
# where a role applies, not which of its permissions).
resource "google_project_iam_custom_role" "attachment_delete" {
  count = var.attachment_delete_after_send ? 1 : 0

  role_id     = "${replace(trimsuffix(var.name_prefix, "-"), "-", "_")}_attachment_delete"
  title       = "gmail-relay: delete sent attachments"
  description = "Delete objects of the attachments bucket once sent (granted on that bucket only)."
  permissions = ["storage.objects.delete"]
}

resource "google_storage_bucket_iam_member" "sender_deletes_attachments" {
  count = var.attachment_delete_after_send ? 1 : 0

  bucket = google_storage_bucket.attachments.name
  role   = google_project_iam_custom_role.attachment_delete[0].id
  member = google_service_account.sender.member
}

# The operator's own buckets the sender may also read (never delete from).
# Only the grant is managed here, not the buckets.
resource "google_storage_bucket_iam_member" "sender_reads_extra_buckets" {
  for_each = toset(var.attachment_extra_buckets)

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.sender.member
}
