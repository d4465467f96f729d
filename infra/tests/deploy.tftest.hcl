# The default deployment (apps unset), planned and applied against mock
# providers that carry the real hashicorp/google schema: run it with
# `make test-infra`, which also explains the stand-in for the one google-beta
# resource.

mock_provider "google" {
  source = "./tests/mocks"
}

mock_provider "google-beta" {}

variables {
  project_id      = "relay-test-123"
  oauth_client_id = "123-abc.apps.googleusercontent.com"
  admin_invokers  = ["user:ops@example.com", "group:mail-admins@example.com"]
}

run "redirect_uri" {
  command = apply

  assert {
    condition     = output.redirect_uri == "https://us-central1-relay-test-123.cloudfunctions.net/gmail-relay-confirm"
    error_message = "redirect_uri is ${output.redirect_uri}"
  }
  assert {
    condition = alltrue([for f in [google_cloudfunctions2_function.authorize, google_cloudfunctions2_function.confirm] :
    f.service_config[0].environment_variables["OAUTH_REDIRECT_URL"] == output.redirect_uri])
    error_message = "authorize and confirm must send the redirect_uri output byte for byte"
  }
  assert {
    condition     = output.connect_url == "https://us-central1-relay-test-123.cloudfunctions.net/gmail-relay-authorize"
    error_message = "connect_url is ${output.connect_url}"
  }
  assert {
    condition = (output.admin_url == "https://us-central1-relay-test-123.cloudfunctions.net/gmail-relay-admin" &&
    google_cloudfunctions2_function.admin.service_config[0].environment_variables["ADMIN_URL"] == output.admin_url)
    error_message = "the admin must be told the URL operators call (output admin_url)"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["ALLOWED_DOMAINS"] == google_cloudfunctions2_function.confirm.service_config[0].environment_variables["ALLOWED_DOMAINS"]
    error_message = "the sender applies the same allow-list as confirm"
  }
}

run "default_app_keeps_todays_resources" {
  command = apply

  assert {
    condition     = keys(google_pubsub_topic.send) == ["default"] && google_pubsub_topic.send["default"].name == "gmail-send"
    error_message = "with apps unset the only send topic must be gmail-send"
  }
  assert {
    condition     = keys(google_pubsub_subscription.send_push) == ["default"] && google_pubsub_subscription.send_push["default"].name == "gmail-send-push"
    error_message = "with apps unset the only push subscription must be gmail-send-push"
  }
  assert {
    condition     = google_pubsub_subscription.send_push["default"].topic == google_pubsub_topic.send["default"].id
    error_message = "gmail-send-push must read gmail-send"
  }
  assert {
    condition     = endswith(google_pubsub_subscription.send_push["default"].push_config[0].push_endpoint, "/projects/relay-test-123/topics/gmail-send")
    error_message = "the push endpoint is ${google_pubsub_subscription.send_push["default"].push_config[0].push_endpoint}"
  }
  assert {
    condition     = length(google_pubsub_topic_iam_member.app_publishers) == 0
    error_message = "the default app's topic gets no IAM of its own, as before apps existed"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["APPS"] == "{\"default\":{\"accounts\":[\"*\"],\"raw\":true}}"
    error_message = "APPS is ${google_cloudfunctions2_function.sender.service_config[0].environment_variables["APPS"]}"
  }
  assert {
    condition     = output.send_topic == google_pubsub_topic.send["default"].id && output.send_topics == { default = "gmail-send" }
    error_message = "send_topic and send_topics must name gmail-send"
  }
}

run "push_retry_and_dead_letter" {
  command = apply

  assert {
    condition = alltrue([for s in google_pubsub_subscription.send_push :
      s.retry_policy[0].minimum_backoff == "10s" && s.retry_policy[0].maximum_backoff == "600s" &&
      s.dead_letter_policy[0].dead_letter_topic == google_pubsub_topic.dead_letter.id &&
    s.dead_letter_policy[0].max_delivery_attempts == 100 && s.ack_deadline_seconds == 60])
    error_message = "every push subscription retries 10s..600s and dead-letters after 100 attempts"
  }
  assert {
    condition = alltrue([for s in google_pubsub_subscription.send_push :
      s.push_config[0].oidc_token[0].service_account_email == google_service_account.push.email &&
    s.push_config[0].oidc_token[0].audience == google_cloudfunctions2_function.sender.service_config[0].uri])
    error_message = "pushes must be signed by the push identity for the sender's audience"
  }
  assert {
    condition     = google_pubsub_subscription.dead_letter.topic == google_pubsub_topic.dead_letter.id
    error_message = "the dead-letter topic needs its hold subscription"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["SEND_MAX_DELIVERY_ATTEMPTS"] == "100"
    error_message = "the sender must know the subscription's max_delivery_attempts"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["SEND_MAX_ATTEMPTS"] == "10"
    error_message = "the sender must bound its Gmail tries by max_send_attempts"
  }
}

run "sender_memory" {
  command = plan

  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].available_memory == "512Mi"
    error_message = "the sender's memory is ${google_cloudfunctions2_function.sender.service_config[0].available_memory}"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["GOMEMLIMIT"] == "460MiB"
    error_message = "GOMEMLIMIT must be 90% of 512Mi, 460MiB"
  }
}

run "sender_memory_follows_the_setting" {
  command = plan

  variables {
    sender_memory_mib = 1024
  }

  assert {
    condition = (google_cloudfunctions2_function.sender.service_config[0].available_memory == "1024Mi" &&
    google_cloudfunctions2_function.sender.service_config[0].environment_variables["GOMEMLIMIT"] == "921MiB")
    error_message = "1024Mi must give GOMEMLIMIT 921MiB"
  }
}

run "iam_per_function" {
  command = apply

  # confirm stores tokens and cleans up after itself, but never reads one.
  assert {
    condition = (contains(google_project_iam_custom_role.token_store.permissions, "secretmanager.secrets.delete") &&
      contains(google_project_iam_custom_role.token_store.permissions, "secretmanager.versions.add") &&
    !contains(google_project_iam_custom_role.token_store.permissions, "secretmanager.versions.access"))
    error_message = "confirm's token role must include secrets.delete and versions.add, and exclude versions.access"
  }
  assert {
    condition = toset([for m in concat(
      values(google_project_iam_member.token_versions), values(google_project_iam_member.datastore_user), values(google_project_iam_member.build),
      [google_project_iam_member.confirm_token_create, google_project_iam_member.confirm_token_store, google_project_iam_member.admin_token_delete],
      ) : m.role if m.member == google_service_account.confirm.member]) == toset([
      google_project_iam_custom_role.token_create.id, google_project_iam_custom_role.token_store.id, "roles/datastore.user",
    ])
    error_message = "confirm's project roles must be exactly token_create, token_store and datastore.user"
  }
  assert {
    condition     = strcontains(google_project_iam_member.confirm_token_store.condition[0].expression, "\"projects/123456789012/secrets/gmail-token-\"")
    error_message = "confirm's token grant must be limited to gmail-token-* by project number"
  }
  assert {
    condition     = keys(google_project_iam_member.token_versions) == ["admin", "healthcheck", "sender"]
    error_message = "only admin, healthcheck and sender may read token secrets"
  }
  assert {
    condition     = google_project_iam_member.admin_token_delete.member == google_service_account.admin.member
    error_message = "admin deletes token secrets on disconnect"
  }
  assert {
    condition = (google_pubsub_topic_iam_member.sender_publishes_results.member == google_service_account.sender.member &&
    google_pubsub_topic_iam_member.healthcheck_publishes_account_events.member == google_service_account.healthcheck.member)
    error_message = "sender publishes results, healthcheck publishes account events"
  }
  assert {
    condition = (google_pubsub_topic_iam_member.agent_publishes_dead_letters.member == "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com" &&
    alltrue([for k, m in google_pubsub_subscription_iam_member.agent_subscribes_send : m.subscription == google_pubsub_subscription.send_push[k].id && m.role == "roles/pubsub.subscriber"]))
    error_message = "the Pub/Sub service agent must publish dead letters and subscribe to every push subscription"
  }
  assert {
    condition = (google_cloud_run_service_iam_member.authorize_public.member == "allUsers" &&
      google_cloud_run_service_iam_member.confirm_public.member == "allUsers" &&
      google_cloud_run_service_iam_member.sender_push.member == google_service_account.push.member &&
      google_cloud_run_service_iam_member.healthcheck_push.member == google_service_account.push.member &&
    toset([for m in google_cloud_run_service_iam_member.admin_invokers : m.member]) == toset(["user:ops@example.com", "group:mail-admins@example.com"]))
    error_message = "invokers: authorize and confirm public, sender and healthcheck the push identity, admin only admin_invokers"
  }
  assert {
    condition     = alltrue([for f in ["authorize", "confirm", "admin", "healthcheck"] : contains(keys(google_secret_manager_secret_iam_member.oauth_client), f)]) && length(google_secret_manager_secret_iam_member.oauth_client) == 5
    error_message = "every function reads the OAuth client secret, on that secret only"
  }
}

run "example_publish_command_makes_a_fresh_key" {
  command = apply

  assert {
    condition     = strcontains(output.example_publish_command, "gcloud pubsub topics publish gmail-send --project=relay-test-123 --attribute=idempotency_key=relay-test-$(date +%s) ")
    error_message = "example_publish_command is ${output.example_publish_command}"
  }
  assert {
    condition     = !strcontains(output.example_publish_command, "idempotency_key=relay-test-1 ") && !strcontains(output.example_publish_command, "\"idempotency_key\"")
    error_message = "the command must not fix a key in the message body"
  }
}

run "missing_source_archive_is_refused" {
  command = plan

  variables {
    source_archive = "/nonexistent/function-source.zip"
  }

  expect_failures = [google_storage_bucket_object.source]
}
