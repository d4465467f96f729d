variable "project_id" {
  description = "ID of the Google Cloud project to deploy into (not its number or name). One relay per project."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID: 6 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region for the functions, the source bucket, the scheduler job and (unless firestore_location is set) the Firestore database."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west1."
  }
}

variable "name_prefix" {
  description = "Prefix for the names of the functions, service accounts, custom roles, source bucket and OAuth client secret. Topic names are fixed (gmail-send, ...)."
  type        = string
  default     = "gmail-relay-"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,13}-$", var.name_prefix))
    error_message = "name_prefix must be 2 to 15 lowercase letters, digits or hyphens, start with a letter and end with a hyphen (service account IDs are limited to 30 characters)."
  }
}

variable "oauth_client_id" {
  description = "Client ID of the OAuth client of type Web application created in the Google Cloud console (APIs & Services > Credentials)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-z-]+\\.apps\\.googleusercontent\\.com$", var.oauth_client_id))
    error_message = "oauth_client_id must be an OAuth client ID, ending with .apps.googleusercontent.com (the client secret goes to Secret Manager, never here)."
  }
}

variable "allowed_domains" {
  description = "Domains whose mailboxes may connect (for example [\"example.com\"]). Empty, together with allowed_emails empty, lets any Google account that can pass the consent screen connect."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.allowed_domains : can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", d))])
    error_message = "Each allowed_domains entry must be a lowercase domain name such as example.com."
  }
}

variable "delegated_domains" {
  description = "Workspace domains whose users the relay sends as without a connect step (domain-wide delegation). Set, Terraform creates the delegate service account; a super admin of each domain then authorises the delegate_client_id output for the delegate_scope output."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.delegated_domains : can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", d))])
    error_message = "Each delegated_domains entry must be a lowercase domain name such as example.com."
  }
}

variable "allowed_emails" {
  description = "Individual addresses that may connect, in addition to allowed_domains."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.allowed_emails : can(regex("^[^@,\\s]+@[^@,\\s]+\\.[^@,\\s]+$", e))])
    error_message = "Each allowed_emails entry must be one bare email address, without a display name or commas."
  }
}

variable "oauth_app_testing" {
  description = "True while the OAuth consent screen is in Testing status: Google then expires refresh tokens after 7 days, and the healthcheck and admin say so when an account needs reconnecting."
  type        = bool
  default     = true
}

variable "sender_max_instances" {
  description = "Maximum number of sender instances. Each instance handles up to sender_concurrency pushes at once."
  type        = number
  default     = 10

  validation {
    condition     = var.sender_max_instances >= 1 && var.sender_max_instances <= 100 && floor(var.sender_max_instances) == var.sender_max_instances
    error_message = "sender_max_instances must be a whole number from 1 to 100."
  }
}

variable "sender_concurrency" {
  description = "Concurrent push requests per sender instance. Above 1 the sender gets a whole vCPU, which Cloud Run requires for concurrency."
  type        = number
  default     = 80

  validation {
    condition     = var.sender_concurrency >= 1 && var.sender_concurrency <= 1000 && floor(var.sender_concurrency) == var.sender_concurrency
    error_message = "sender_concurrency must be a whole number from 1 to 1000."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of one send request before Pub/Sub moves it to the dead-letter topic gmail-send-dead-letter. Deliveries held for a mailbox's daily cap count here but not in max_send_attempts: 100 outlasts a hold of about 15 hours."
  type        = number
  default     = 100

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number from 5 to 100 (Pub/Sub's limits are 5 and 100)."
  }
}

variable "max_send_attempts" {
  description = "Deliveries of one send request that may try Gmail (SEND_MAX_ATTEMPTS): a transient failure on the last ends in a failed result."
  type        = number
  default     = 10

  validation {
    condition     = var.max_send_attempts >= 1 && var.max_send_attempts <= var.max_delivery_attempts && floor(var.max_send_attempts) == var.max_send_attempts
    error_message = "max_send_attempts must be a whole number from 1 to max_delivery_attempts."
  }
}

variable "healthcheck_schedule" {
  description = "Cron schedule (five fields, UTC) on which the healthcheck refreshes every stored token."
  type        = string
  default     = "0 */6 * * *"

  validation {
    condition     = can(regex("^[0-9A-Za-z*,/?#-]+(\\s+[0-9A-Za-z*,/?#-]+){4}$", trimspace(var.healthcheck_schedule)))
    error_message = "healthcheck_schedule must be a five-field cron expression such as \"0 */6 * * *\"."
  }
}

variable "alert_email" {
  description = "Address that receives alert notifications (accounts needing reconnection, dead-lettered messages). Empty creates the alert policies without a notification channel."
  type        = string
  default     = ""

  validation {
    condition     = var.alert_email == "" || can(regex("^[^@,\\s]+@[^@,\\s]+\\.[^@,\\s]+$", var.alert_email))
    error_message = "alert_email must be empty or one email address."
  }
}

variable "admin_invokers" {
  description = "IAM principals allowed to call the admin function, such as [\"user:ops@example.com\", \"group:mail-admins@example.com\"]."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.admin_invokers : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+$", m))])
    error_message = "Each admin_invokers entry must be an IAM principal with a type prefix (user:, group:, serviceAccount:, domain:, principal:, principalSet:); allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "log_level" {
  description = "Log level of every function: debug, info, warning or error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warning", "error"], var.log_level)
    error_message = "log_level must be one of debug, info, warning, error."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore (default) database, a region (us-central1) or multi-region (nam5, eur3). Empty uses region. It cannot change after creation."
  type        = string
  default     = ""

  validation {
    condition     = var.firestore_location == "" || can(regex("^[a-z0-9-]+$", var.firestore_location))
    error_message = "firestore_location must be empty or a Firestore location such as us-central1, nam5 or eur3."
  }
}

variable "firestore_deletion_policy" {
  description = "What terraform destroy does to the Firestore (default) database holding the account registry and send ledger: ABANDON keeps it (a later deploy into the same project imports it), DELETE deletes it."
  type        = string
  default     = "ABANDON"

  validation {
    condition     = contains(["ABANDON", "DELETE"], var.firestore_deletion_policy)
    error_message = "firestore_deletion_policy must be ABANDON or DELETE."
  }
}

variable "source_archive" {
  description = "Path of the function source archive built by scripts/package.sh. Empty means dist/function-source.zip in the repository."
  type        = string
  default     = ""

  validation {
    condition     = var.source_archive == "" || endswith(var.source_archive, ".zip")
    error_message = "source_archive must be empty or the path of a .zip file built by scripts/package.sh."
  }
}

variable "apps" {
  description = "Applications that send through the relay, by name. Each gets its own topic gmail-send-<name>, which only its publishers (IAM members such as serviceAccount:billing@PROJECT.iam.gserviceaccount.com) may publish to, and a policy the sender enforces: accounts (exact addresses, *@domain or *), raw (whether it may send complete RFC 5322 messages; default false) and max_recipients (1 to 100; default Gmail's 100). Empty: one app, default, on topic gmail-send, allowing every account and raw, open to whoever holds Pub/Sub publish rights in the project."
  type = map(object({
    publishers     = list(string)
    accounts       = list(string)
    raw            = optional(bool, false)
    max_recipients = optional(number)
  }))
  default = {}

  validation {
    # results and dead-letter would collide with gmail-send-results and
    # gmail-send-dead-letter.
    condition     = alltrue([for name in keys(var.apps) : can(regex("^[a-z][a-z0-9-]{0,30}$", name)) && !contains(["results", "dead-letter"], name)])
    error_message = "Each apps key must be 1 to 31 lowercase letters, digits or hyphens starting with a letter (it becomes the topic gmail-send-<app>), and not results or dead-letter (those topics exist)."
  }

  validation {
    condition = alltrue(flatten([for a in var.apps : [
      length(a.accounts) > 0,
      [for acc in a.accounts : can(regex("^(\\*|\\*@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}|[^@*,\\s]+@[^@*,\\s]+\\.[^@*,\\s]+)$", acc))],
    ]]))
    error_message = "Each app needs at least one accounts entry, and each entry must be one address (alice@example.com), a whole lowercase domain (*@example.com) or * (every connected account)."
  }

  validation {
    condition     = alltrue([for a in var.apps : a.max_recipients == null ? true : (a.max_recipients >= 1 && a.max_recipients <= 100 && floor(a.max_recipients) == a.max_recipients)])
    error_message = "max_recipients must be a whole number from 1 to 100 (Gmail's limit per message is 100)."
  }

  validation {
    condition     = alltrue(flatten([for a in var.apps : [for m in a.publishers : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):[^\\s]+$", m))]]))
    error_message = "Each publishers entry must be an IAM principal with a type prefix (user:, group:, serviceAccount:, domain:, principal:, principalSet:); allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "sender_memory_mib" {
  description = "Memory of each sender instance, in MiB. The sender's GOMEMLIMIT is set to 90% of it, so the Go collector runs before the instance reaches Cloud Run's limit."
  type        = number
  default     = 512

  validation {
    # Cloud Run allows at most 4 GiB with one vCPU, which the sender has.
    condition     = var.sender_memory_mib >= 256 && var.sender_memory_mib <= 4096 && floor(var.sender_memory_mib) == var.sender_memory_mib
    error_message = "sender_memory_mib must be a whole number from 256 to 4096 (Cloud Run allows at most 4 GiB with the sender's one vCPU)."
  }
}

variable "attachment_bucket" {
  description = "Name of the bucket Terraform creates for attachments by reference (attachments[].gcs_uri). Bucket names are global; empty means <project_id>-<name_prefix>attachments."
  type        = string
  default     = ""

  validation {
    # No dots: a dotted name needs a verified domain.
    condition     = var.attachment_bucket == "" || (can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.attachment_bucket)) && !startswith(var.attachment_bucket, "goog") && !strcontains(var.attachment_bucket, "google"))
    error_message = "attachment_bucket must be empty or a bucket name: 3 to 63 lowercase letters, digits, hyphens or underscores, starting and ending with a letter or digit, not starting with goog nor containing google (dotted names need a verified domain and are not supported here)."
  }
}

variable "attachment_location" {
  description = "Location of the attachments bucket: a region (us-central1) or multi-region (US, EU). Empty uses region, beside the sender."
  type        = string
  default     = ""

  validation {
    condition     = var.attachment_location == "" || can(regex("^[A-Za-z0-9-]+$", var.attachment_location))
    error_message = "attachment_location must be empty or a Cloud Storage location such as us-central1, US or EU."
  }
}

variable "attachment_retention_days" {
  description = "Days after upload at which the attachments bucket's lifecycle rule deletes an object (Cloud Storage acts within about a day of that age). Keep it longer than a request can wait in Pub/Sub (7 days)."
  type        = number
  default     = 7

  validation {
    condition     = var.attachment_retention_days >= 1 && var.attachment_retention_days <= 365 && floor(var.attachment_retention_days) == var.attachment_retention_days
    error_message = "attachment_retention_days must be a whole number from 1 to 365."
  }
}

variable "attachment_delete_after_send" {
  description = "Whether the sender deletes each object of the attachments bucket once its message is sent (ATTACHMENTS_DELETE_AFTER_SEND). True grants the sender storage.objects.delete on that bucket only; objects in attachment_extra_buckets are never deleted."
  type        = bool
  default     = false
}

variable "attachment_extra_buckets" {
  description = "Names of other, existing buckets (without gs://) whose objects requests may reference, without the per-app prefix rule. Terraform grants the sender roles/storage.objectViewer on each; it does not create or manage them."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([for b in var.attachment_extra_buckets :
    can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", b)) && !strcontains(b, "..") && !startswith(b, "goog")])
    error_message = "Each attachment_extra_buckets entry must be a bucket name without gs://: 3 to 63 lowercase letters, digits, dots, hyphens or underscores, starting and ending with a letter or digit."
  }
  validation {
    condition     = length(distinct(var.attachment_extra_buckets)) == length(var.attachment_extra_buckets)
    error_message = "attachment_extra_buckets names a bucket twice."
  }
}
