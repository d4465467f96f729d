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
mkdir -p "$TEST_ARTIFACTS_DIR"
log="$TEST_ARTIFACTS_DIR/go-test.log"
status=0
go test -race -shuffle=on -count=1 -timeout 15m -v ./... >"$log" 2>&1 || status=$?
if [[ $status -eq 0 ]]; then
  # Package lines and every skip with its reason; the full log is in $log.
  grep -E '^(ok|FAIL|\?) ' "$log" | grep -v 'no test files' || true
  grep -E -A1 -- '--- SKIP' "$log" | grep -v '^--$' || true
else
  # Everything but the passing tests' progress lines, so each failure shows with its messages.
  grep -v -E '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS)' "$log" || true
fi
summary() { grep -c -E -- "^\s*--- $1" "$log" || true; }
echo "== summary: $(summary PASS) passed, $(summary FAIL) failed, $(summary SKIP) skipped (tests and subtests); full log: $log"
exit "$status"
