# Declared apps: each gets its topic, its publishers' IAM and nobody else's,
# its push subscription with the default's retry and dead-letter policy, and
# its policy in the sender's APPS.

mock_provider "google" {
  source = "./tests/mocks"
}

mock_provider "google-beta" {}

variables {
  project_id      = "relay-test-123"
  oauth_client_id = "123-abc.apps.googleusercontent.com"
  apps = {
    billing = {
      publishers = ["serviceAccount:billing@relay-test-123.iam.gserviceaccount.com", "group:billing-devs@example.com"]
      accounts   = ["alice@example.com"]
    }
    crm = {
      publishers     = ["serviceAccount:crm@other-project.iam.gserviceaccount.com"]
      accounts       = ["*@example.org", "bob@example.com"]
      raw            = true
      max_recipients = 20
    }
  }
}

run "one_topic_and_subscription_per_app" {
  command = apply

  assert {
    condition     = { for app, t in google_pubsub_topic.send : app => t.name } == { billing = "gmail-send-billing", crm = "gmail-send-crm" }
    error_message = "topics must be gmail-send-<app>, and gmail-send must go"
  }
  assert {
    condition     = { for app, s in google_pubsub_subscription.send_push : app => s.name } == { billing = "gmail-send-billing-push", crm = "gmail-send-crm-push" }
    error_message = "subscriptions must be gmail-send-<app>-push: the sender maps them back to the app"
  }
  assert {
    condition = alltrue([for app, s in google_pubsub_subscription.send_push :
      s.topic == google_pubsub_topic.send[app].id &&
      endswith(s.push_config[0].push_endpoint, "/projects/relay-test-123/topics/gmail-send-${app}") &&
      s.push_config[0].oidc_token[0].service_account_email == google_service_account.push.email &&
      s.retry_policy[0].minimum_backoff == "10s" && s.retry_policy[0].maximum_backoff == "600s" &&
      s.dead_letter_policy[0].dead_letter_topic == google_pubsub_topic.dead_letter.id &&
    s.dead_letter_policy[0].max_delivery_attempts == 100])
    error_message = "each app's subscription reads its own topic, pushes to the sender, and retries and dead-letters as the default does"
  }
  assert {
    condition = alltrue([for app, s in google_pubsub_subscription.send_push :
    google_pubsub_subscription_iam_member.agent_subscribes_send[app].subscription == s.id])
    error_message = "the Pub/Sub service agent must subscribe to every app's subscription, to dead-letter from it"
  }
}

run "each_topic_has_only_its_publishers" {
  command = apply

  assert {
    condition = alltrue([for app, a in var.apps :
      toset([for m in google_pubsub_topic_iam_member.app_publishers : m.member if m.topic == google_pubsub_topic.send[app].id]) == toset(a.publishers)
    ])
    error_message = "a topic's publishers must be exactly its app's publishers"
  }
  assert {
    condition     = length(google_pubsub_topic_iam_member.app_publishers) == 3 && alltrue([for m in google_pubsub_topic_iam_member.app_publishers : m.role == "roles/pubsub.publisher"])
    error_message = "one roles/pubsub.publisher member per (app, publisher), nothing more"
  }
}

run "sender_gets_the_policy" {
  command = plan

  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["APPS"] == "{\"billing\":{\"accounts\":[\"alice@example.com\"],\"raw\":false},\"crm\":{\"accounts\":[\"*@example.org\",\"bob@example.com\"],\"max_recipients\":20,\"raw\":true}}"
    error_message = "APPS is ${google_cloudfunctions2_function.sender.service_config[0].environment_variables["APPS"]}"
  }
}

run "outputs_name_the_app_topics" {
  command = apply

  assert {
    condition     = output.send_topics == { billing = "gmail-send-billing", crm = "gmail-send-crm" } && output.send_topic == null
    error_message = "send_topics must map each app to its topic; send_topic is null with several apps"
  }
  assert {
    condition     = startswith(output.example_publish_command, "gcloud pubsub topics publish gmail-send-billing ") && strcontains(output.example_publish_command, "\"account\":\"alice@example.com\"")
    error_message = "the example publishes as the first app, from one of its accounts: ${output.example_publish_command}"
  }
}

run "an_app_named_default_is_an_ordinary_app" {
  command = plan

  variables {
    apps = {
      default = {
        publishers = ["serviceAccount:app@relay-test-123.iam.gserviceaccount.com"]
        accounts   = ["*"]
      }
    }
  }

  assert {
    condition     = google_pubsub_topic.send["default"].name == "gmail-send-default" && google_pubsub_subscription.send_push["default"].name == "gmail-send-default-push"
    error_message = "a declared app named default follows the gmail-send-<app> convention"
  }
  assert {
    condition     = google_cloudfunctions2_function.sender.service_config[0].environment_variables["APPS"] == "{\"default\":{\"accounts\":[\"*\"],\"raw\":false}}"
    error_message = "a declared app gets raw false unless it asks"
  }
}
