# The account registry (collection accounts) and the send ledger (collection
# sends) live in the project's (default) database, the one with a free tier.
resource "google_firestore_database" "default" {
  name        = "(default)"
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"

  deletion_policy         = var.firestore_deletion_policy
  delete_protection_state = var.firestore_deletion_policy == "DELETE" ? "DELETE_PROTECTION_DISABLED" : "DELETE_PROTECTION_ENABLED"

  depends_on = [google_project_service.enabled]
}

# Ledger records carry expire_at (7 days after the send); Firestore deletes
# them after that time. The field gets no single-field index: nothing queries
# it, and an index on a steadily increasing timestamp creates hotspots.
resource "google_firestore_field" "sends_expire_at" {
  database   = google_firestore_database.default.name
  collection = "sends"
  field      = "expire_at"

  ttl_config {}
  index_config {}
}
