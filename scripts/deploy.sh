#!/usr/bin/env bash
# Deploys gmail-relay to a Google Cloud project with Terraform.
#
# Usage: scripts/deploy.sh PROJECT_ID [terraform apply arguments...]
#   e.g. scripts/deploy.sh my-project -var oauth_client_id=123-abc.apps.googleusercontent.com
# Variables can also come from infra/terraform.tfvars or TF_VAR_* variables.
#
# Steps:
#   1. scripts/package.sh builds dist/function-source.zip;
#   2. terraform init, then a first apply limited to the APIs and the OAuth
#      client secret's container;
#   3. if that secret has no version yet, the value is added with gcloud, from
#      OAUTH_CLIENT_SECRET or a hidden prompt (it never enters Terraform), because
#      a function cannot start without it;
#   4. an existing Firestore (default) database that Terraform does not know
#      (a previous deployment whose database was kept) is imported;
#   5. the full apply; then the redirect URI to register is printed.
set -euo pipefail

usage() {
  echo "usage: $0 PROJECT_ID [terraform apply arguments...]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
project="$1"
shift
[[ "$project" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || {
  echo "deploy.sh: \"$project\" is not a project ID" >&2
  usage
}

for tool in terraform gcloud go; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "deploy.sh: $tool is required but not installed" >&2
    exit 1
  }
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tf=(terraform -chdir="$root/infra")

# Only -var and -var-file arguments apply to terraform import.
var_args=(-var "project_id=$project")
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -var=* | -var-file=*) var_args+=("${args[i]}") ;;
    -var | -var-file)
      var_args+=("${args[i]}" "${args[i + 1]:-}")
      i=$((i + 1))
      ;;
  esac
done

"$root/scripts/package.sh"

"${tf[@]}" init -input=false

echo "==> Enabling APIs and creating the OAuth client secret's container"
"${tf[@]}" apply -var "project_id=$project" \
  -target=google_project_service.enabled \
  -target=google_secret_manager_secret.oauth_client "$@"

secret_id="$("${tf[@]}" state show -no-color google_secret_manager_secret.oauth_client |
  awk -F'"' '/^[[:space:]]*secret_id[[:space:]]*=/ { print $2; exit }')"
[[ -n "$secret_id" ]] || {
  echo "deploy.sh: could not read the OAuth client secret's ID from the Terraform state" >&2
  exit 1
}

if [[ -z "$(gcloud secrets versions list "$secret_id" --project="$project" \
  --filter='state=ENABLED' --limit=1 --format='value(name)')" ]]; then
  value="${OAUTH_CLIENT_SECRET:-}"
  if [[ -z "$value" && -t 0 ]]; then
    read -r -s -p "OAuth client secret (from APIs & Services > Credentials; input hidden): " value
    echo
  fi
  if [[ -z "$value" ]]; then
    echo "deploy.sh: secret $secret_id has no value yet. Set OAUTH_CLIENT_SECRET, or run" >&2
    echo "  printf %s \"\$SECRET\" | gcloud secrets versions add $secret_id --project=$project --data-file=-" >&2
    echo "and run deploy.sh again." >&2
    exit 1
  fi
  printf %s "$value" | gcloud secrets versions add "$secret_id" --project="$project" --data-file=- >/dev/null
  unset value
  echo "==> Stored the OAuth client secret in $secret_id"
fi

if ! "${tf[@]}" state list google_firestore_database.default | grep -q .; then
  db_type="$(gcloud firestore databases describe --database='(default)' --project="$project" \
    --format='value(type)' 2>/dev/null || true)"
  case "$db_type" in
    "") ;; # no database yet: Terraform creates it
    FIRESTORE_NATIVE)
      echo "==> Importing the existing Firestore (default) database"
      "${tf[@]}" import "${var_args[@]}" google_firestore_database.default "projects/$project/databases/(default)"
      ;;
    *)
      echo "deploy.sh: the project's Firestore (default) database is in $db_type mode; gmail-relay needs Native mode (a project holds one (default) database)" >&2
      exit 1
      ;;
  esac
fi

echo "==> Deploying"
"${tf[@]}" apply -var "project_id=$project" "$@"

cat <<EOF

gmail-relay is deployed to $project.

Register this redirect URI, exactly, on the OAuth client (Google Cloud console >
APIs & Services > Credentials > your Web application client > Authorized
redirect URIs), if it is not there yet:

  $("${tf[@]}" output -raw redirect_uri)

Mailbox owners connect at:

  $("${tf[@]}" output -raw connect_url)

Send a test message (replace both addresses):

  $("${tf[@]}" output -raw example_publish_command)
EOF
