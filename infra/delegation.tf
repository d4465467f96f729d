# Domain-wide delegation (var.delegated_domains): the relay sends as any
# user of those Workspace domains without a connect step. It holds no key:
# the sender, admin and healthcheck sign the assertion with the delegate's
# Google-managed key through IAM Credentials signJwt, which
# roles/iam.serviceAccountTokenCreator on the delegate account, and on it
# alone, allows. A super admin of each domain authorises the delegate's
# unique ID (output delegate_client_id) for gmail.send in the Admin console.

locals {
  delegated = length(var.delegated_domains) > 0

  delegation_env = local.delegated ? {
    DELEGATED_DOMAINS        = join(",", var.delegated_domains)
    DELEGATE_SERVICE_ACCOUNT = google_service_account.delegate[0].email
    DELEGATE_CLIENT_ID       = google_service_account.delegate[0].unique_id
  } : {}
}

resource "google_service_account" "delegate" {
  count        = local.delegated ? 1 : 0
  account_id   = "${var.name_prefix}delegate"
  display_name = "gmail-relay domain-wide delegate"
  description  = "Authorised by Workspace admins for gmail.send; the relay signs as it through signJwt, without a key."
}

resource "google_service_account_iam_member" "delegate_token_creator" {
  for_each = local.delegated ? {
    sender      = google_service_account.sender.member
    admin       = google_service_account.admin.member
    healthcheck = google_service_account.healthcheck.member
  } : {}

  service_account_id = google_service_account.delegate[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

# The sender announces a withdrawn delegation on the account-events topic.
resource "google_pubsub_topic_iam_member" "sender_publishes_account_events" {
  count  = local.delegated ? 1 : 0
  topic  = google_pubsub_topic.account_events.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.sender.member
}

output "delegate_client_id" {
  description = "With delegated_domains set: the client ID a Workspace super admin authorises under Admin console → Security → Access and data control → API controls → Domain-wide delegation, for the delegate_scope output."
  value       = local.delegated ? google_service_account.delegate[0].unique_id : null
}

output "delegate_scope" {
  description = "The one scope to authorise for delegate_client_id."
  value       = local.delegated ? "https://www.googleapis.com/auth/gmail.send" : null
}

output "delegate_service_account" {
  description = "The delegate service account's email (DELEGATE_SERVICE_ACCOUNT)."
  value       = local.delegated ? google_service_account.delegate[0].email : null
}
