# Domain-wide delegation: with delegated_domains, a delegate service account
# that only the sender, admin and healthcheck may sign as, the IAM
# Credentials API, the functions' settings, and the outputs the Workspace
# admin pastes; without it, none of these.

mock_provider "google" {
  source = "./tests/mocks"
}

mock_provider "google-beta" {}

variables {
  project_id      = "relay-test-123"
  oauth_client_id = "123-abc.apps.googleusercontent.com"
}

run "without_delegation_nothing_is_created" {
  command = apply

  assert {
    condition     = length(google_service_account.delegate) == 0 && length(google_service_account_iam_member.delegate_token_creator) == 0
    error_message = "no delegate and no token-creator grant without delegated_domains"
  }
  assert {
    condition     = !contains(keys(google_project_service.enabled), "iamcredentials.googleapis.com")
    error_message = "the IAM Credentials API is only for delegation"
  }
  assert {
    condition     = !contains(keys(google_cloudfunctions2_function.sender.service_config[0].environment_variables), "DELEGATED_DOMAINS")
    error_message = "the sender gets no delegation settings without delegated_domains"
  }
  assert {
    condition     = output.delegate_client_id == null && output.delegate_scope == null
    error_message = "no delegation outputs without delegated_domains"
  }
}

run "delegated_domains_create_the_delegate" {
  command = apply

  variables {
    delegated_domains = ["example.net", "example.org"]
  }

  assert {
    condition     = length(google_service_account.delegate) == 1
    error_message = "one delegate service account"
  }
  assert {
    condition = (
      toset(keys(google_service_account_iam_member.delegate_token_creator)) == toset(["sender", "admin", "healthcheck"]) &&
      alltrue([for g in google_service_account_iam_member.delegate_token_creator :
      g.role == "roles/iam.serviceAccountTokenCreator" && g.service_account_id == google_service_account.delegate[0].name]) &&
      google_service_account_iam_member.delegate_token_creator["sender"].member == google_service_account.sender.member &&
      google_service_account_iam_member.delegate_token_creator["admin"].member == google_service_account.admin.member &&
      google_service_account_iam_member.delegate_token_creator["healthcheck"].member == google_service_account.healthcheck.member
    )
    error_message = "token creator on the delegate account only, for the sender's, admin's and healthcheck's identities"
  }
  assert {
    condition     = contains(keys(google_project_service.enabled), "iamcredentials.googleapis.com")
    error_message = "signJwt needs the IAM Credentials API"
  }
  assert {
    condition = alltrue([for f in [google_cloudfunctions2_function.sender, google_cloudfunctions2_function.admin, google_cloudfunctions2_function.healthcheck] :
      f.service_config[0].environment_variables["DELEGATED_DOMAINS"] == "example.net,example.org" &&
      f.service_config[0].environment_variables["DELEGATE_SERVICE_ACCOUNT"] == "gmail-relay-delegate@relay-test-123.iam.gserviceaccount.com" &&
    f.service_config[0].environment_variables["DELEGATE_CLIENT_ID"] == "112233445566778899001"])
    error_message = "sender, admin and healthcheck get the domains, the delegate and its client ID"
  }
  assert {
    condition     = !contains(keys(google_cloudfunctions2_function.confirm.service_config[0].environment_variables), "DELEGATED_DOMAINS")
    error_message = "confirm does not sign as the delegate"
  }
  assert {
    condition     = google_pubsub_topic_iam_member.sender_publishes_account_events[0].member == google_service_account.sender.member
    error_message = "the sender announces a withdrawn delegation on the account-events topic"
  }
  assert {
    condition     = output.delegate_client_id == "112233445566778899001" && output.delegate_scope == "https://www.googleapis.com/auth/gmail.send"
    error_message = "the outputs are what the Workspace admin pastes: the delegate's unique ID and gmail.send"
  }
}

run "delegated_domains_must_be_domains" {
  command = plan

  variables {
    delegated_domains = ["Example.net"]
  }

  expect_failures = [var.delegated_domains]
}
