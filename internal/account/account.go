// Package account says what identifies a connected mailbox: the one
// normalised form of its address, and the storage IDs derived from that
// form. The token store (Secret Manager) and the account registry
// (Firestore) both key a mailbox by these IDs, so they must come from here
// and nowhere else: an ID derived any other way would point at a secret or
// document that does not exist.
package account

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// SecretIDPrefix starts the ID of every token secret. Terraform's IAM
// condition (infra/locals.tf) grants access to secrets with this prefix only.
const SecretIDPrefix = "gmail-token-"

// Normalize is the form of an address that the relay compares, stores and
// hashes: trimmed and lower-cased, since Gmail ignores case, so that
// "Alice@Example.com " and "alice@example.com" are one mailbox.
func Normalize(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// IDs derives a mailbox's storage IDs from one hash of its normalised
// address (DESIGN §4): the Secret Manager secret ID,
// "gmail-token-" + hex(sha256(address)), and the Firestore document ID,
// hex(sha256(address)). Secret and document IDs cannot hold every character
// an address may, so neither is the address itself. Both are pinned by
// tests: changing them would orphan every stored token and account.
func IDs(email string) (secretID, docID string) {
	sum := sha256.Sum256([]byte(Normalize(email)))
	docID = hex.EncodeToString(sum[:])
	return SecretIDPrefix + docID, docID
}
