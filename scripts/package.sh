#!/usr/bin/env bash
# Builds the upload archive for Cloud Run functions: go.mod, go.sum, the
# function packages under functions/, the internal/ packages they import
# (without tests or testdata), and a generated root package that imports them
# all. The Go buildpack builds that root package with its own main and picks
# the function by FUNCTION_TARGET.
#
# Usage: scripts/package.sh [OUTPUT]   (default: dist/function-source.zip)
# The archive is deterministic: the same source gives the same bytes, so its
# hash (which Terraform puts in the object name) changes only with the source.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/dist/function-source.zip}"

if ! command -v go >/dev/null 2>&1; then
  echo "package.sh: the go command is required (https://go.dev/dl/)" >&2
  exit 1
fi

cd "$root"
go run ./scripts/package -root "$root" -out "$out"
