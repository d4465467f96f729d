# Five Cloud Run functions (gen2) built from one archive by the Go buildpack.
# The archive's root package blank-imports every function package, so each
# function is the same source with a different entry point (FUNCTION_TARGET).

resource "google_storage_bucket" "source" {
  name                        = "${var.project_id}-${var.name_prefix}source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  depends_on = [google_project_service.enabled]
}

# The object name carries the archive's hash: a changed source is a new
# object, which changes every function's build_config and redeploys it.
resource "google_storage_bucket_object" "source" {
  name   = "function-source-${local.source_sha256}.zip"
  bucket = google_storage_bucket.source.name
  source = local.source_archive

  lifecycle {
    precondition {
      condition     = local.source_sha256 != ""
      error_message = "The function source archive ${local.source_archive} does not exist: run scripts/package.sh first (scripts/deploy.sh does)."
    }
  }
}

resource "google_cloudfunctions2_function" "authorize" {
  name        = local.function_names.authorize
  location    = var.region
  description = "Connect page: redirects a mailbox owner to Google's consent screen."

  build_config {
    runtime         = local.go_runtime
    entry_point     = "authorize"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
    automatic_update_policy {}
  }

  service_config {
    service_account_email = google_service_account.authorize.email
    ingress_settings      = "ALLOW_ALL"
    available_memory      = "256Mi"
    timeout_seconds       = 30
    max_instance_count    = 5

    environment_variables = merge(local.base_env, local.access_env, {
      OAUTH_REDIRECT_URL = local.redirect_uri
    })

    secret_environment_variables {
      key        = "OAUTH_CLIENT_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.oauth_client.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.oauth_client,
  ]
}

resource "google_cloudfunctions2_function" "confirm" {
  name        = local.function_names.confirm
  location    = var.region
  description = "OAuth redirect URI: exchanges the code and stores the refresh token."

  build_config {
    runtime         = local.go_runtime
    entry_point     = "confirm"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
    automatic_update_policy {}
  }

  service_config {
    service_account_email = google_service_account.confirm.email
    ingress_settings      = "ALLOW_ALL"
    available_memory      = "256Mi"
    timeout_seconds       = 60
    max_instance_count    = 5

    environment_variables = merge(local.base_env, local.access_env, local.store_env, {
      OAUTH_REDIRECT_URL = local.redirect_uri
      CONNECT_URL        = local.connect_url
    })

    secret_environment_variables {
      key        = "OAUTH_CLIENT_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.oauth_client.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.oauth_client,
    google_project_iam_member.confirm_token_store,
    google_project_iam_member.confirm_token_create,
    google_project_iam_member.datastore_user,
  ]
}

# Pub/Sub pushes to the sender through google_pubsub_subscription.send_push
# (one per app).
# It is an HTTP function that reads the push body itself
# (internal/entrypoint.Push), deployed without an Eventarc trigger.
# Ingress stays open: Cloud Functions documents that HTTP requests pushed by
# Pub/Sub do not count as internal traffic. Access is by IAM instead: only the
# push identity holds run.invoker.
resource "google_cloudfunctions2_function" "sender" {
  name        = local.function_names.sender
  location    = var.region
  description = "Sends one Gmail message per send request and publishes the result."

  build_config {
    runtime         = local.go_runtime
    entry_point     = "sender"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
    automatic_update_policy {}
  }

  service_config {
    service_account_email = google_service_account.sender.email
    ingress_settings      = "ALLOW_ALL"
    # Concurrency above 1 needs at least one whole vCPU.
    available_cpu                    = "1"
    available_memory                 = local.sender_memory
    max_instance_request_concurrency = var.sender_concurrency
    max_instance_count               = var.sender_max_instances
    timeout_seconds                  = 60

    # access_env too: the allow-list applies again at send time, so an
    # account connected before it changed stops sending.
    environment_variables = merge(local.base_env, local.access_env, local.store_env, {
      RESULTS_TOPIC = google_pubsub_topic.results.name
      CONNECT_URL   = local.connect_url
      # Longer than the 60 s timeout and ack deadline: a redelivery inside
      # the lease waits; after it, an unanswered send is tried once more.
      SEND_LEASE = "3m"
      # Shorter than the 60 s timeout, so the sender itself records an
      # unanswered Gmail call as ambiguous before Cloud Run cuts it off.
      SEND_TIMEOUT = "50s"
      # The push subscription's, so the last attempt publishes a failed
      # result before Pub/Sub dead-letters the request.
      SEND_MAX_DELIVERY_ATTEMPTS = var.max_delivery_attempts
      # Deliveries that try Gmail; held ones do not count.
      SEND_MAX_ATTEMPTS = var.max_send_attempts
      # Each app's policy (accounts, raw, max_recipients), by app name.
      APPS       = local.apps_env
      GOMEMLIMIT = local.sender_gomemlimit
      # Account events the sender raises (a withdrawn delegation).
      ACCOUNT_EVENTS_TOPIC = google_pubsub_topic.account_events.name
      # Attachments by reference (storage.tf).
      ATTACHMENTS_BUCKET            = google_storage_bucket.attachments.name
      ATTACHMENTS_EXTRA_BUCKETS     = join(",", var.attachment_extra_buckets)
      ATTACHMENTS_DELETE_AFTER_SEND = tostring(var.attachment_delete_after_send)
    }, local.delegation_env)

    secret_environment_variables {
      key        = "OAUTH_CLIENT_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.oauth_client.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.oauth_client,
    google_project_iam_member.token_versions,
    google_project_iam_member.datastore_user,
    google_pubsub_topic_iam_member.sender_publishes_results,
    google_storage_bucket_iam_member.sender_reads_attachments,
    google_storage_bucket_iam_member.sender_deletes_attachments,
    google_storage_bucket_iam_member.sender_reads_extra_buckets,
  ]
}

resource "google_cloudfunctions2_function" "admin" {
  name        = local.function_names.admin
  location    = var.region
  description = "Operator API: list, test and disconnect accounts; message status. IAM only."

  build_config {
    runtime         = local.go_runtime
    entry_point     = "admin"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
    automatic_update_policy {}
  }

  service_config {
    service_account_email = google_service_account.admin.email
    ingress_settings      = "ALLOW_ALL"
    available_memory      = "256Mi"
    timeout_seconds       = 60
    max_instance_count    = 2

    environment_variables = merge(local.base_env, local.store_env, {
      CONNECT_URL       = local.connect_url
      OAUTH_APP_TESTING = tostring(var.oauth_app_testing)
      # The address operators call (the admin_url output): the admin refuses
      # another Host and checks bearer tokens for this audience.
      ADMIN_URL = local.admin_url
    }, local.delegation_env)

    secret_environment_variables {
      key        = "OAUTH_CLIENT_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.oauth_client.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.oauth_client,
    google_project_iam_member.token_versions,
    google_project_iam_member.admin_token_delete,
    google_project_iam_member.datastore_user,
  ]
}

# Fed by google_pubsub_subscription.healthcheck_push (see pubsub.tf), like the
# sender.
resource "google_cloudfunctions2_function" "healthcheck" {
  name        = local.function_names.healthcheck
  location    = var.region
  description = "Refreshes every stored token; marks dead ones reauth_required and reports them."

  build_config {
    runtime         = local.go_runtime
    entry_point     = "healthcheck"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
    automatic_update_policy {}
  }

  service_config {
    service_account_email = google_service_account.healthcheck.email
    ingress_settings      = "ALLOW_ALL"
    available_memory      = "256Mi"
    timeout_seconds       = 540
    max_instance_count    = 1

    environment_variables = merge(local.base_env, local.store_env, {
      CONNECT_URL          = local.connect_url
      ACCOUNT_EVENTS_TOPIC = google_pubsub_topic.account_events.name
      OAUTH_APP_TESTING    = tostring(var.oauth_app_testing)
    }, local.delegation_env)

    secret_environment_variables {
      key        = "OAUTH_CLIENT_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.oauth_client.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.oauth_client,
    google_project_iam_member.token_versions,
    google_project_iam_member.datastore_user,
    google_pubsub_topic_iam_member.healthcheck_publishes_account_events,
  ]
}
