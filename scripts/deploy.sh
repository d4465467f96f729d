#!/usr/bin/env bash
# Deploys gmail-relay to a Google Cloud project with Terraform.
#
# Usage: scripts/deploy.sh PROJECT_ID [terraform apply arguments...]
#   e.g. scripts/deploy.sh my-project -var oauth_client_id=123-abc.apps.googleusercontent.com
#   or   make deploy PROJECT=my-project VARS=prod.tfvars [ARGS='-var ...']
# Variables come from VARS (a .tfvars file, relative to where you run this),
# -var / -var-file arguments (-var-file relative to infra/), infra/terraform.tfvars
# or TF_VAR_* variables. infra/terraform.tfvars.example lists every variable.
#
# Environment:
#   VARS            a .tfvars file (see above)
#   AUTO_APPROVE=1  skip the one confirmation (so does -auto-approve)
#   BACKEND_BUCKET  keep the Terraform state in this GCS bucket (prefix
#                   BACKEND_PREFIX, default gmail-relay) instead of the local
#                   infra/terraform.tfstate; a local state is moved there once
#   OAUTH_CLIENT_SECRET  the OAuth client's secret, stored in Secret Manager on
#                   the first deploy (asked for, hidden, when unset)
#
# Steps, after one confirmation:
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

# The confirmation below is the only one: both applies run with -auto-approve.
auto_approve="${AUTO_APPROVE:-}"
args=()
for a in "$@"; do
  if [[ "$a" == "-auto-approve" ]]; then
    auto_approve=1
  else
    args+=("$a")
  fi
done
if [[ -n "${VARS:-}" ]]; then
  [[ -f "$VARS" ]] || {
    echo "deploy.sh: VARS=$VARS is not a file" >&2
    exit 2
  }
  # terraform runs in infra/ (-chdir): make the path absolute first.
  args=("-var-file=$(cd "$(dirname "$VARS")" && pwd)/$(basename "$VARS")" ${args[@]+"${args[@]}"})
fi

# Only -var and -var-file arguments apply to terraform import.
var_args=(-var "project_id=$project")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -var=* | -var-file=*) var_args+=("${args[i]}") ;;
    -var | -var-file)
      var_args+=("${args[i]}" "${args[i + 1]:-}")
      i=$((i + 1))
      ;;
  esac
done

init=(init -input=false)
if [[ -n "${BACKEND_BUCKET:-}" ]]; then
  state="gs://$BACKEND_BUCKET/${BACKEND_PREFIX:-gmail-relay}"
  if [[ ! -f "$root/infra/backend.tf" ]]; then
    printf '%s\n' '# Written by scripts/deploy.sh for BACKEND_BUCKET: the state lives in GCS.' \
      'terraform {' '  backend "gcs" {}' '}' >"$root/infra/backend.tf"
  fi
  init+=(-backend-config="bucket=$BACKEND_BUCKET" -backend-config="prefix=${BACKEND_PREFIX:-gmail-relay}")
  if [[ -s "$root/infra/terraform.tfstate" ]]; then
    echo "==> Moving the local state infra/terraform.tfstate to $state"
    init+=(-migrate-state -force-copy)
  fi
elif [[ -f "$root/infra/backend.tf" ]]; then
  state="the backend configured in infra/backend.tf"
else
  state="$root/infra/terraform.tfstate (local: keep it, or later deploys cannot update or destroy what this one creates)"
fi

cat <<EOF
This deploys gmail-relay to project $project:
  - enables the APIs and creates the OAuth client secret's container, stores the
    client secret there on the first deploy, then creates or updates the functions,
    topics, subscriptions, IAM, Firestore, scheduler job and alerts (see README, Deploy);
  - Terraform arguments: ${args[*]:-(none: infra/terraform.tfvars and TF_VAR_* only)}
  - state: $state
EOF
if [[ -z "$auto_approve" ]]; then
  if [[ ! -t 0 ]]; then
    echo "deploy.sh: no terminal to confirm on; set AUTO_APPROVE=1 to deploy without asking" >&2
    exit 1
  fi
  read -r -p "Deploy? [y/N] " answer
  [[ "$answer" == [yY] || "$answer" == [yY][eE][sS] ]] || {
    echo "Nothing was changed."
    exit 1
  }
fi

"$root/scripts/package.sh"

"${tf[@]}" "${init[@]}"

echo "==> Enabling APIs and creating the OAuth client secret's container"
"${tf[@]}" apply -auto-approve -input=false -var "project_id=$project" \
  -target=google_project_service.enabled \
  -target=google_secret_manager_secret.oauth_client ${args[@]+"${args[@]}"}

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
      "${tf[@]}" import -input=false "${var_args[@]}" google_firestore_database.default "projects/$project/databases/(default)"
      ;;
    *)
      echo "deploy.sh: the project's Firestore (default) database is in $db_type mode; gmail-relay needs Native mode (a project holds one (default) database)" >&2
      exit 1
      ;;
  esac
fi

echo "==> Deploying"
"${tf[@]}" apply -auto-approve -input=false -var "project_id=$project" ${args[@]+"${args[@]}"}

cat <<EOF

gmail-relay is deployed to $project.

Register this redirect URI, exactly, on the OAuth client (Google Cloud console >
APIs & Services > Credentials > your Web application client > Authorized
redirect URIs), if it is not there yet:

  $("${tf[@]}" output -raw redirect_uri)

Create your results subscription before the first publish (Pub/Sub keeps
nothing for a topic without one):

  gcloud pubsub subscriptions create my-results --topic=gmail-send-results --project=$project

Mailbox owners connect at:

  $("${tf[@]}" output -raw connect_url)

Then check the whole path (it sends one message and waits for its result):

  make smoke PROJECT=$project ACCOUNT=you@example.com

or send a test message yourself (replace both addresses):

  $("${tf[@]}" output -raw example_publish_command)
EOF
