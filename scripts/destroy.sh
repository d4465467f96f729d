#!/usr/bin/env bash
# Removes what scripts/deploy.sh created in a Google Cloud project.
#
# Usage: scripts/destroy.sh PROJECT_ID [--delete-tokens] [terraform destroy arguments...]
#
# terraform destroy removes the functions, topics, subscriptions, scheduler
# job, alerts, service accounts, roles, the source bucket, the attachments
# bucket with any objects still in it, and the OAuth client secret. It
# leaves:
#   - the APIs enabled (other workloads may use them);
#   - the Firestore (default) database, unless firestore_deletion_policy is
#     DELETE (then the account registry and send ledger are deleted too);
#   - the refresh-token secrets gmail-token-*, which confirm created at run
#     time; --delete-tokens deletes them after the destroy.
#
# VARS (a .tfvars file) and BACKEND_BUCKET / BACKEND_PREFIX (the GCS state)
# mean what they mean to scripts/deploy.sh. Terraform asks once before it
# destroys anything (-auto-approve skips that).
set -euo pipefail

usage() {
  echo "usage: $0 PROJECT_ID [--delete-tokens] [terraform destroy arguments...]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
project="$1"
shift
[[ "$project" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || {
  echo "destroy.sh: \"$project\" is not a project ID" >&2
  usage
}

delete_tokens=false
args=()
for a in "$@"; do
  if [[ "$a" == "--delete-tokens" ]]; then
    delete_tokens=true
  else
    args+=("$a")
  fi
done

command -v terraform >/dev/null 2>&1 || {
  echo "destroy.sh: terraform is required but not installed" >&2
  exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tf=(terraform -chdir="$root/infra")

if [[ -n "${VARS:-}" ]]; then
  [[ -f "$VARS" ]] || {
    echo "destroy.sh: VARS=$VARS is not a file" >&2
    exit 2
  }
  args=("-var-file=$(cd "$(dirname "$VARS")" && pwd)/$(basename "$VARS")" ${args[@]+"${args[@]}"})
fi

init=(init -input=false)
if [[ -n "${BACKEND_BUCKET:-}" ]]; then
  [[ -f "$root/infra/backend.tf" ]] || printf '%s\n' '# Written by scripts/destroy.sh for BACKEND_BUCKET: the state lives in GCS.' \
    'terraform {' '  backend "gcs" {}' '}' >"$root/infra/backend.tf"
  init+=(-backend-config="bucket=$BACKEND_BUCKET" -backend-config="prefix=${BACKEND_PREFIX:-gmail-relay}")
fi
"${tf[@]}" "${init[@]}"
# The OAuth client ID is required by the configuration but irrelevant to a
# destroy; a placeholder avoids a prompt when none is set.
client_id=()
if [[ -z "${TF_VAR_oauth_client_id:-}" && ! -f "$root/infra/terraform.tfvars" && -z "${VARS:-}" ]] &&
  [[ " ${args[*]-} " != *"oauth_client_id"* ]]; then
  client_id=(-var "oauth_client_id=0-destroy.apps.googleusercontent.com")
fi
"${tf[@]}" destroy -var "project_id=$project" ${client_id[@]+"${client_id[@]}"} ${args[@]+"${args[@]}"}

command -v gcloud >/dev/null 2>&1 || exit 0
tokens="$(gcloud secrets list --project="$project" --filter='name~/secrets/gmail-token-' --format='value(name)')"
if [[ -z "$tokens" ]]; then
  exit 0
fi
if [[ "$delete_tokens" == true ]]; then
  while read -r name; do
    [[ -n "$name" ]] || continue
    gcloud secrets delete "$name" --project="$project" --quiet
  done <<<"$tokens"
  echo "Deleted $(wc -l <<<"$tokens") refresh-token secret(s)."
else
  echo
  echo "These refresh-token secrets are not managed by Terraform and were kept:"
  echo "$tokens" | sed 's/^/  /'
  echo "Run scripts/destroy.sh $project --delete-tokens to delete them as well."
fi
