#!/usr/bin/env bash
# Publishes a sample send request to the local stack started by `make dev`
# (or to real Pub/Sub when PUBSUB_EMULATOR_HOST is empty and
# GOOGLE_CLOUD_PROJECT is set) and waits for its result.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${ACCOUNT:?set ACCOUNT to a connected mailbox, e.g. make send ACCOUNT=alice@example.com TO=bob@example.org}"
: "${TO:?set TO to a recipient, e.g. make send ACCOUNT=alice@example.com TO=bob@example.org}"
SUBJECT="${SUBJECT:-Hello from gmail-relay}"
if [ -z "${GOOGLE_CLOUD_PROJECT:-}" ]; then
  export PUBSUB_EMULATOR_HOST="${PUBSUB_EMULATOR_HOST:-localhost:${PUBSUB_PORT:-8085}}"
fi


go run ./scripts/sample -account "$ACCOUNT" -to "$TO" -subject "$SUBJECT" | go run ./scripts/publish -wait "${WAIT:-30s}"
