# Variable validation refuses bad values at plan time, before anything is
# created.

mock_provider "google" {
  source = "./tests/mocks"
}

mock_provider "google-beta" {}

variables {
  project_id      = "relay-test-123"
  oauth_client_id = "123-abc.apps.googleusercontent.com"
}

run "good_apps_pass" {
  command = apply

  variables {
    apps = {
      a = { publishers = [], accounts = ["*"] }
      billing-eu-2 = {
        publishers     = ["principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*"]
        accounts       = ["alice@example.com", "*@example.co.uk"]
        max_recipients = 100
      }
    }
  }
}

run "app_name_with_capitals" {
  command = plan
  variables {
    apps = { Billing = { publishers = [], accounts = ["*"] } }
  }
  expect_failures = [var.apps]
}

run "app_name_too_long" {
  command = plan
  variables {
    apps = { abcdefghijklmnopqrstuvwxyz012345 = { publishers = [], accounts = ["*"] } }
  }
  expect_failures = [var.apps]
}

run "app_name_that_takes_the_results_topic" {
  command = plan
  variables {
    apps = { results = { publishers = [], accounts = ["*"] } }
  }
  expect_failures = [var.apps]
}

run "app_without_accounts" {
  command = plan
  variables {
    apps = { billing = { publishers = [], accounts = [] } }
  }
  expect_failures = [var.apps]
}

run "account_that_is_not_an_address" {
  command = plan
  variables {
    apps = { billing = { publishers = [], accounts = ["alice"] } }
  }
  expect_failures = [var.apps]
}

run "account_list_in_one_entry" {
  command = plan
  variables {
    apps = { billing = { publishers = [], accounts = ["alice@example.com,bob@example.com"] } }
  }
  expect_failures = [var.apps]
}

run "account_wildcard_inside_a_name" {
  command = plan
  variables {
    apps = { billing = { publishers = [], accounts = ["a*@example.com"] } }
  }
  expect_failures = [var.apps]
}

run "max_recipients_zero" {
  command = plan
  variables {
    apps = { billing = { publishers = [], accounts = ["*"], max_recipients = 0 } }
  }
  expect_failures = [var.apps]
}

run "max_recipients_over_gmail_limit" {
  command = plan
  variables {
    apps = { billing = { publishers = [], accounts = ["*"], max_recipients = 101 } }
  }
  expect_failures = [var.apps]
}

run "publisher_all_users" {
  command = plan
  variables {
    apps = { billing = { publishers = ["allUsers"], accounts = ["*"] } }
  }
  expect_failures = [var.apps]
}

run "publisher_without_type_prefix" {
  command = plan
  variables {
    apps = { billing = { publishers = ["billing@relay-test-123.iam.gserviceaccount.com"], accounts = ["*"] } }
  }
  expect_failures = [var.apps]
}

run "sender_memory_too_small" {
  command = plan
  variables {
    sender_memory_mib = 128
  }
  expect_failures = [var.sender_memory_mib]
}

run "sender_memory_over_one_vcpu" {
  command = plan
  variables {
    sender_memory_mib = 8192
  }
  expect_failures = [var.sender_memory_mib]
}

run "project_number_instead_of_id" {
  command = plan
  variables {
    project_id = "123456789012"
  }
  expect_failures = [var.project_id]
}

run "admin_open_to_everyone" {
  command = plan
  variables {
    admin_invokers = ["allUsers"]
  }
  expect_failures = [var.admin_invokers]
}

run "too_few_delivery_attempts" {
  command = plan
  variables {
    max_delivery_attempts = 3
  }
  expect_failures = [var.max_delivery_attempts]
}

run "more_send_attempts_than_deliveries" {
  command = plan
  variables {
    max_delivery_attempts = 20
    max_send_attempts     = 21
  }
  expect_failures = [var.max_send_attempts]
}

run "no_send_attempt" {
  command = plan
  variables {
    max_send_attempts = 0
  }
  expect_failures = [var.max_send_attempts]
}
