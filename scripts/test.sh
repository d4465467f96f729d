#!/usr/bin/env bash
# The whole test suite: lint, unit tests, then the emulators and the
# integration, end-to-end and browser tests. Under CI=true nothing may skip
# for a missing prerequisite.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== lint"
make --no-print-directory lint

echo "== unit tests"
go test -race -shuffle=on -short ./...

echo "== emulators"
export EMULATOR_DIR="${EMULATOR_DIR:-$(mktemp -d)}"
trap 'scripts/emulators.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(scripts/emulators.sh start)"
echo "FIRESTORE_EMULATOR_HOST=${FIRESTORE_EMULATOR_HOST:-<not running>}"
echo "GCLOUD_PUBSUB_EMULATOR_HOST=${GCLOUD_PUBSUB_EMULATOR_HOST:-<not running>}"

echo "== integration, end-to-end and browser tests"
mkdir -p artifacts
export TEST_ARTIFACTS_DIR="${TEST_ARTIFACTS_DIR:-$PWD/artifacts}"
go test -race -shuffle=on -count=1 -timeout 15m ./...
