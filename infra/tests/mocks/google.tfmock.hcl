# Values for the mock google provider that the real provider's own
# validation accepts (IAM members, service account names): a random string,
# the mock's default, is refused. Shared by every infra/tests/*.tftest.hcl.

mock_data "google_project" {
  defaults = {
    number = "123456789012"
  }
}

override_resource {
  target = google_service_account.authorize
  values = {
    email  = "gmail-relay-authorize@relay-test-123.iam.gserviceaccount.com"
    member = "serviceAccount:gmail-relay-authorize@relay-test-123.iam.gserviceaccount.com"
    name   = "projects/relay-test-123/serviceAccounts/gmail-relay-authorize@relay-test-123.iam.gserviceaccount.com"
    id     = "projects/relay-test-123/serviceAccounts/gmail-relay-authorize@relay-test-123.iam.gserviceaccount.com"
  }
}

override_resource {
  target = google_service_account.confirm
  values = {
    email  = "gmail-relay-confirm@relay-test-123.iam.gserviceaccount.com"
    member = "serviceAccount:gmail-relay-confirm@relay-test-123.iam.gserviceaccount.com"
    name   = "projects/relay-test-123/serviceAccounts/gmail-relay-confirm@relay-test-123.iam.gserviceaccount.com"
    id     = "projects/relay-test-123/serviceAccounts/gmail-relay-confirm@relay-test-123.iam.gserviceaccount.com"
  }
}

override_resource {
  target = google_service_account.sender
  values = {
    email  = "gmail-relay-sender@relay-test-123.iam.gserviceaccount.com"
    member = "serviceAccount:gmail-relay-sender@relay-test-123.iam.gserviceaccount.com"
    name   = "projects/relay-test-123/serviceAccounts/gmail-relay-sender@relay-test-123.iam.gserviceaccount.com"
    id     = "projects/relay-test-123/serviceAccounts/gmail-relay-sender@relay-test-123.iam.gserviceaccount.com"
  }
}

override_resource {
  target = google_service_account.admin
  values = {
    email  = "gmail-relay-admin@relay-test-123.iam.gserviceaccount.com"
    member = "serviceAccount:gmail-relay-admin@relay-test-123.iam.gserviceaccount.com"
    name   = "projects/relay-test-123/serviceAccounts/gmail-relay-admin@relay-test-123.iam.gserviceaccount.com"
    id     = "projects/relay-test-123/serviceAccounts/gmail-relay-admin@relay-test-123.iam.gserviceaccount.com"
  }
}

override_resource {
  target = google_service_account.healthcheck
  values = {
    email  = "gmail-relay-healthcheck@relay-test-123.iam.gserviceaccount.com"
    member = "serviceAccount:gmail-relay-healthcheck@relay-test-123.iam.gserviceaccount.com"
    name   = "projects/relay-test-123/serviceAccounts/gmail-relay-healthcheck@relay-test-123.iam.gserviceaccount.com"
    id     = "projects/relay-test-123/serviceAccounts/gmail-relay-healthcheck@relay-test-123.iam.gserviceaccount.com"
  }
}

override_resource {
  target = google_service_account.push
  values = {
    email  = "gmail-relay-push@relay-test-123.iam.gserviceaccount.com"
    member = "serviceAccount:gmail-relay-push@relay-test-123.iam.gserviceaccount.com"
    name   = "projects/relay-test-123/serviceAccounts/gmail-relay-push@relay-test-123.iam.gserviceaccount.com"
    id     = "projects/relay-test-123/serviceAccounts/gmail-relay-push@relay-test-123.iam.gserviceaccount.com"
  }
}

override_resource {
  target = google_service_account.build
  values = {
    email  = "gmail-relay-build@relay-test-123.iam.gserviceaccount.com"
    member = "serviceAccount:gmail-relay-build@relay-test-123.iam.gserviceaccount.com"
    name   = "projects/relay-test-123/serviceAccounts/gmail-relay-build@relay-test-123.iam.gserviceaccount.com"
    id     = "projects/relay-test-123/serviceAccounts/gmail-relay-build@relay-test-123.iam.gserviceaccount.com"
  }
}

# Google reports the confirm function's URL only after a deployment; the
# check block in outputs.tf compares it with the precomputed redirect URI.
override_resource {
  target = google_cloudfunctions2_function.confirm
  values = {
    url = "https://us-central1-relay-test-123.cloudfunctions.net/gmail-relay-confirm"
  }
}

override_resource {
  target = google_service_account.delegate
  values = {
    email     = "gmail-relay-delegate@relay-test-123.iam.gserviceaccount.com"
    member    = "serviceAccount:gmail-relay-delegate@relay-test-123.iam.gserviceaccount.com"
    name      = "projects/relay-test-123/serviceAccounts/gmail-relay-delegate@relay-test-123.iam.gserviceaccount.com"
    id        = "projects/relay-test-123/serviceAccounts/gmail-relay-delegate@relay-test-123.iam.gserviceaccount.com"
    unique_id = "112233445566778899001"
  }
}
