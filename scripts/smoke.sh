#!/usr/bin/env bash
# End-to-end check of a deployed relay: publishes one test message (a fresh
# idempotency key each run) to an app's send topic and waits for its result
# on gmail-send-results. Exits non-zero unless the message was sent.
#
# Usage: scripts/smoke.sh PROJECT_ID
#   ACCOUNT  a connected mailbox the app may send as (required)
#   TO       the recipient (default: ACCOUNT itself)
#   APP      the app whose topic to publish to (needed when several exist)
#   TOPIC    the topic, instead of looking it up in the output send_topics
#   WAIT     how long to wait for the result (default 120s: a function that
#            scaled to zero starts first)
# The caller needs publish rights on the topic and pubsub.subscriptions.create
# (scripts/publish -wait makes a filtered subscription on the results topic,
# and deletes it after).
set -euo pipefail

[[ $# -eq 1 ]] || {
  echo "usage: ACCOUNT=you@example.com $0 PROJECT_ID" >&2
  exit 2
}
project="$1"
: "${ACCOUNT:?set ACCOUNT to a connected mailbox, e.g. make smoke PROJECT=$project ACCOUNT=alice@example.com}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

topic="${TOPIC:-}"
if [[ -z "$topic" ]]; then
  # {"billing":"gmail-send-billing",...}: app names and topics are
  # [a-z0-9-] only, so a line per pair is all the parsing JSON needs here.
  if ! topics="$(terraform -chdir=infra output -json send_topics 2>/dev/null)"; then
    echo "smoke.sh: cannot read the output send_topics from the Terraform state in infra/ (deploy from this checkout first, with the same BACKEND_BUCKET), or set TOPIC" >&2
    exit 1
  fi
  pairs="$(tr -d '{} \n' <<<"$topics" | tr ',' '\n' | tr -d '"' | grep : || true)"
  if [[ -n "${APP:-}" ]]; then
    topic="$(awk -F: -v app="$APP" '$1 == app { print $2 }' <<<"$pairs")"
    [[ -n "$topic" ]] || {
      echo "smoke.sh: no app $APP; apps: $(cut -d: -f1 <<<"$pairs" | paste -sd' ')" >&2
      exit 2
    }
  elif [[ "$(grep -c : <<<"$pairs")" == 1 ]]; then
    topic="$(cut -d: -f2 <<<"$pairs")"
  else
    echo "smoke.sh: several apps ($(cut -d: -f1 <<<"$pairs" | paste -sd' ')): choose one with APP=" >&2
    exit 2
  fi
fi

key="smoke-$(date -u +%Y%m%dT%H%M%SZ)-$RANDOM"
echo "==> Publishing a test message as $ACCOUNT to ${TO:-$ACCOUNT} on $topic (idempotency_key $key)"
unset PUBSUB_EMULATOR_HOST
export GOOGLE_CLOUD_PROJECT="$project"
go run ./scripts/sample -account "$ACCOUNT" -to "${TO:-$ACCOUNT}" -subject "gmail-relay smoke test $key" |
  sed "s/^{/{\"idempotency_key\":\"$key\",/" |
  go run ./scripts/publish -topic "$topic" -wait "${WAIT:-120s}"
