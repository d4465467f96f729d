# The attachments bucket (storage.tf): private, self-cleaning, writable by
# each app's publishers under its own prefix only, readable by the sender
# only, and deletable by the sender only when attachment_delete_after_send
# asks for it.

mock_provider "google" {
  source = "./tests/mocks"
}

mock_provider "google-beta" {}

variables {
  project_id      = "relay-test-123"
  oauth_client_id = "123-abc.apps.googleusercontent.com"
}

run "default_bucket_is_private_and_expires" {
  command = apply

  assert {
    condition     = google_storage_bucket.attachments.name == "relay-test-123-gmail-relay-attachments" && google_storage_bucket.attachments.location == "us-central1"
    error_message = "the default bucket is <project>-<prefix>attachments in region: ${google_storage_bucket.attachments.name} in ${google_storage_bucket.attachments.location}"
  }
  assert {
    condition     = google_storage_bucket.attachments.uniform_bucket_level_access == true && google_storage_bucket.attachments.public_access_prevention == "enforced"
    error_message = "the bucket needs uniform bucket-level access and enforced public access prevention"
  }
  assert {
    condition = (length(google_storage_bucket.attachments.lifecycle_rule) == 1 &&
      one(google_storage_bucket.attachments.lifecycle_rule[0].action).type == "Delete" &&
    one(google_storage_bucket.attachments.lifecycle_rule[0].condition).age == 7)
    error_message = "one lifecycle rule must delete objects at age 7 days"
  }
  assert {
    condition     = google_storage_bucket.attachments.soft_delete_policy[0].retention_duration_seconds == 0
    error_message = "a deleted attachment must not be kept by soft delete"
  }
  assert {
    condition     = google_storage_bucket.attachments.force_destroy == true
    error_message = "make destroy must remove the bucket with whatever transient objects it holds"
  }
}

run "default_app_gets_no_creator_and_sender_reads" {
  command = apply

  assert {
    condition     = length(google_storage_bucket_iam_member.attachment_publishers) == 0
    error_message = "without apps the default app has no publishers: Terraform grants nobody objectCreator"
  }
  assert {
    condition = (google_storage_bucket_iam_member.sender_reads_attachments.member == google_service_account.sender.member &&
      google_storage_bucket_iam_member.sender_reads_attachments.role == "roles/storage.objectViewer" &&
    google_storage_bucket_iam_member.sender_reads_attachments.bucket == google_storage_bucket.attachments.name)
    error_message = "the sender must read the attachments bucket"
  }
  assert {
    condition     = length(google_project_iam_custom_role.attachment_delete) == 0 && length(google_storage_bucket_iam_member.sender_deletes_attachments) == 0
    error_message = "without attachment_delete_after_send nobody may delete attachments"
  }
  assert {
    condition     = length(google_storage_bucket_iam_member.sender_reads_extra_buckets) == 0
    error_message = "no extra bucket, no extra grant"
  }
  assert {
    condition = (google_cloudfunctions2_function.sender.service_config[0].environment_variables["ATTACHMENTS_BUCKET"] == "relay-test-123-gmail-relay-attachments" &&
      google_cloudfunctions2_function.sender.service_config[0].environment_variables["ATTACHMENTS_EXTRA_BUCKETS"] == "" &&
    google_cloudfunctions2_function.sender.service_config[0].environment_variables["ATTACHMENTS_DELETE_AFTER_SEND"] == "false")
    error_message = "the sender must be told its bucket, no extra buckets and no deletion"
  }
  assert {
    condition = alltrue([for f in [google_cloudfunctions2_function.authorize, google_cloudfunctions2_function.confirm, google_cloudfunctions2_function.admin, google_cloudfunctions2_function.healthcheck] :
    !contains(keys(f.service_config[0].environment_variables), "ATTACHMENTS_BUCKET")])
    error_message = "only the sender reads attachments"
  }
  assert {
    condition     = output.attachment_bucket == "relay-test-123-gmail-relay-attachments" && output.attachment_prefixes == { default = "gs://relay-test-123-gmail-relay-attachments/default/" }
    error_message = "outputs: ${output.attachment_bucket}, ${jsonencode(output.attachment_prefixes)}"
  }
}

run "settings_follow_the_variables" {
  command = plan

  variables {
    attachment_bucket         = "acme_mail-attachments"
    attachment_location       = "EU"
    attachment_retention_days = 30
  }

  assert {
    condition = (google_storage_bucket.attachments.name == "acme_mail-attachments" && google_storage_bucket.attachments.location == "EU" &&
    one(google_storage_bucket.attachments.lifecycle_rule[0].condition).age == 30)
    error_message = "the bucket must take attachment_bucket, attachment_location and attachment_retention_days"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["ATTACHMENTS_BUCKET"] == "acme_mail-attachments"
    error_message = "the sender must be told the named bucket"
  }
}

run "each_app_creates_only_under_its_prefix" {
  command = apply

  variables {
    apps = {
      billing = {
        publishers = ["serviceAccount:billing@relay-test-123.iam.gserviceaccount.com", "group:billing-devs@example.com"]
        accounts   = ["alice@example.com"]
      }
      crm = {
        publishers = ["serviceAccount:crm@other-project.iam.gserviceaccount.com"]
        accounts   = ["*"]
      }
    }
  }

  assert {
    condition = { for k, m in google_storage_bucket_iam_member.attachment_publishers : k => [m.member, m.role, m.condition[0].expression] } == {
      "billing serviceAccount:billing@relay-test-123.iam.gserviceaccount.com" = ["serviceAccount:billing@relay-test-123.iam.gserviceaccount.com", "roles/storage.objectCreator", "resource.name.startsWith(\"projects/_/buckets/relay-test-123-gmail-relay-attachments/objects/billing/\")"]
      "billing group:billing-devs@example.com"                                = ["group:billing-devs@example.com", "roles/storage.objectCreator", "resource.name.startsWith(\"projects/_/buckets/relay-test-123-gmail-relay-attachments/objects/billing/\")"]
      "crm serviceAccount:crm@other-project.iam.gserviceaccount.com"          = ["serviceAccount:crm@other-project.iam.gserviceaccount.com", "roles/storage.objectCreator", "resource.name.startsWith(\"projects/_/buckets/relay-test-123-gmail-relay-attachments/objects/crm/\")"]
    }
    error_message = "each publisher gets objectCreator limited to its own app's prefix, and nothing else"
  }
  assert {
    condition     = alltrue([for m in google_storage_bucket_iam_member.attachment_publishers : m.bucket == google_storage_bucket.attachments.name])
    error_message = "publisher grants belong on the attachments bucket"
  }
  assert {
    # Only the sender reads: no publisher holds a role that lists or gets.
    condition = [for m in concat(values(google_storage_bucket_iam_member.attachment_publishers), [google_storage_bucket_iam_member.sender_reads_attachments]) :
    m.member if m.role != "roles/storage.objectCreator"] == [google_service_account.sender.member]
    error_message = "the sender must be the only reader of the attachments bucket"
  }
  assert {
    condition = output.attachment_prefixes == {
      billing = "gs://relay-test-123-gmail-relay-attachments/billing/"
      crm     = "gs://relay-test-123-gmail-relay-attachments/crm/"
    }
    error_message = "attachment_prefixes is ${jsonencode(output.attachment_prefixes)}"
  }
}

run "delete_after_send_grants_delete_only" {
  command = apply

  variables {
    attachment_delete_after_send = true
  }

  assert {
    condition     = google_project_iam_custom_role.attachment_delete[0].permissions == toset(["storage.objects.delete"]) && google_project_iam_custom_role.attachment_delete[0].role_id == "gmail_relay_attachment_delete"
    error_message = "the delete role must hold storage.objects.delete and nothing else"
  }
  assert {
    condition = (google_storage_bucket_iam_member.sender_deletes_attachments[0].member == google_service_account.sender.member &&
      google_storage_bucket_iam_member.sender_deletes_attachments[0].role == google_project_iam_custom_role.attachment_delete[0].id &&
    google_storage_bucket_iam_member.sender_deletes_attachments[0].bucket == google_storage_bucket.attachments.name)
    error_message = "the sender gets the delete role on the attachments bucket only"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["ATTACHMENTS_DELETE_AFTER_SEND"] == "true"
    error_message = "the sender must be told to delete after the send"
  }
}

run "extra_buckets_are_readable_not_deletable" {
  command = apply

  variables {
    attachment_extra_buckets     = ["acme-reports", "exports.acme.example.com"]
    attachment_delete_after_send = true
  }

  assert {
    condition = { for b, m in google_storage_bucket_iam_member.sender_reads_extra_buckets : b => [m.bucket, m.role, m.member] } == {
      "acme-reports"             = ["acme-reports", "roles/storage.objectViewer", google_service_account.sender.member]
      "exports.acme.example.com" = ["exports.acme.example.com", "roles/storage.objectViewer", google_service_account.sender.member]
    }
    error_message = "the sender reads each extra bucket"
  }
  assert {
    condition     = [for m in google_storage_bucket_iam_member.sender_deletes_attachments : m.bucket] == [google_storage_bucket.attachments.name]
    error_message = "delete is granted on the relay's own bucket only, never on an extra bucket"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["ATTACHMENTS_EXTRA_BUCKETS"] == "acme-reports,exports.acme.example.com"
    error_message = "ATTACHMENTS_EXTRA_BUCKETS is ${google_cloudfunctions2_function.sender.service_config[0].environment_variables["ATTACHMENTS_EXTRA_BUCKETS"]}"
  }
}

run "retention_of_zero_days" {
  command = plan
  variables {
    attachment_retention_days = 0
  }
  expect_failures = [var.attachment_retention_days]
}

run "retention_over_a_year" {
  command = plan
  variables {
    attachment_retention_days = 366
  }
  expect_failures = [var.attachment_retention_days]
}

run "retention_of_half_a_day" {
  command = plan
  variables {
    attachment_retention_days = 1.5
  }
  expect_failures = [var.attachment_retention_days]
}

run "bucket_with_capitals" {
  command = plan
  variables {
    attachment_bucket = "Acme-Attachments"
  }
  expect_failures = [var.attachment_bucket]
}

run "bucket_as_a_uri" {
  command = plan
  variables {
    attachment_bucket = "gs://acme-attachments"
  }
  expect_failures = [var.attachment_bucket]
}

run "bucket_too_long" {
  command = plan
  variables {
    attachment_bucket = "a123456789b123456789c123456789d123456789e123456789f123456789g123"
  }
  expect_failures = [var.attachment_bucket]
}

run "bucket_named_google" {
  command = plan
  variables {
    attachment_bucket = "my-google-attachments"
  }
  expect_failures = [var.attachment_bucket]
}

run "bucket_with_dots" {
  command = plan
  variables {
    attachment_bucket = "attachments.acme.example.com"
  }
  expect_failures = [var.attachment_bucket]
}

run "location_with_spaces" {
  command = plan
  variables {
    attachment_location = "us central1"
  }
  expect_failures = [var.attachment_location]
}

run "extra_bucket_as_a_uri" {
  command = plan
  variables {
    attachment_extra_buckets = ["acme-reports", "gs://acme-exports"]
  }
  expect_failures = [var.attachment_extra_buckets]
}

run "extra_bucket_with_a_path" {
  command = plan
  variables {
    attachment_extra_buckets = ["acme-reports/2026"]
  }
  expect_failures = [var.attachment_extra_buckets]
}

run "extra_bucket_twice" {
  command = plan
  variables {
    attachment_extra_buckets = ["acme-reports", "acme-reports"]
  }
  expect_failures = [var.attachment_extra_buckets]
}
