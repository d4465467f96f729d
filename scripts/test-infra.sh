#!/usr/bin/env bash
# Tests infra/ offline with the real hashicorp/google provider's schema and
# mock_provider blocks: terraform validate, then terraform test
# (infra/tests/*.tftest.hcl). Nothing talks to Google.
#
# The provider is built from its Go module into a filesystem mirror by
# ../shared/tools/tf-mirror.sh (beside the repository; TF_MIRROR_TOOL overrides
# the path): about 10 minutes the first time, seconds afterwards.
#
# The run works on a copy of infra/ in a temporary directory, so that no
# .terraform/ or .terraform.lock.hcl (which would hold the mirror's local
# hashes) is left in the repository. In that copy the one google-beta resource
# (infra/pubsub_agent.tf) is replaced by infra/tests/stand-ins/pubsub_agent.tf:
# the GA build cannot describe it, and google-beta is not served.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tool="${TF_MIRROR_TOOL:-$root/../shared/tools/tf-mirror.sh}"
if [[ ! -x "$tool" ]]; then
  echo "test-infra.sh: $tool is missing (or not executable)." >&2
  echo "  It builds the hashicorp/google provider offline; set TF_MIRROR_TOOL to its path." >&2
  exit 1
fi
command -v terraform >/dev/null 2>&1 || {
  echo "test-infra.sh: terraform is required but not installed" >&2
  exit 1
}

eval "$("$tool")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/infra" "$work/dist"
cp "$root"/infra/*.tf "$work/infra/"
rm "$work/infra/pubsub_agent.tf"
cp "$root"/infra/tests/stand-ins/*.tf "$work/infra/"
mkdir "$work/infra/tests"
cp "$root"/infra/tests/*.tftest.hcl "$work/infra/tests/"
cp -r "$root/infra/tests/mocks" "$work/infra/tests/"
# The configuration hashes the function archive (local.source_sha256); any
# file serves, since the mock provider uploads nothing.
echo "test stand-in for dist/function-source.zip" >"$work/dist/function-source.zip"

tf=(terraform -chdir="$work/infra")
"${tf[@]}" init -backend=false -input=false -no-color >/dev/null
"${tf[@]}" validate -no-color
"${tf[@]}" test -no-color "$@"
