#!/usr/bin/env bash
# Operator CLI for the admin function.
#
#   scripts/admin.sh list [--json]           # every account: email, status, kind, today (sent / limit), last refresh, last error
#   scripts/admin.sh show EMAIL              # one account
#   scripts/admin.sh test EMAIL [--send]     # a real token refresh (and a test message to itself)
#   scripts/admin.sh disconnect EMAIL        # revoke at Google, destroy the secret, mark disconnected
#   scripts/admin.sh message KEY EMAIL [APP] # send status of KEY sent from EMAIL (APP: default)
#   scripts/admin.sh aliases EMAIL ALIAS...  # replace EMAIL's send-as aliases (--none: remove all)
#   scripts/admin.sh limit EMAIL N           # EMAIL's daily message limit, 1..2000 (0 or --default: its kind's)
#
# ADMIN_URL defaults to the local dev server (http://localhost:8080/admin).
# For a deployed relay set ADMIN_URL to the Terraform output admin_url; the
# script then sends an identity token for that audience from
# `gcloud auth print-identity-token --audiences` (a service account, or
# ADMIN_IMPERSONATE=SA_EMAIL to impersonate one; it needs roles/run.invoker).
set -euo pipefail

ADMIN_URL="${ADMIN_URL:-http://localhost:${PORT:-8080}/admin}"
ADMIN_URL="${ADMIN_URL%/}"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
urlencode() {
  local s="$1" out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in [a-zA-Z0-9.~_@-]) out+="$c" ;; *) printf -v c '%%%02X' "'$c"; out+="$c" ;; esac
  done
  printf '%s' "$out"
}

call() {
  local method="$1" path="$2" accept="${3:-application/json}" data="${4:-}" auth=() send=()
  [ -n "$data" ] && send=(-H "Content-Type: application/json" --data-binary "$data")
  if [[ "$ADMIN_URL" == https://* ]]; then
    local token imp=()
    [ -n "${ADMIN_IMPERSONATE:-}" ] && imp=(--impersonate-service-account="$ADMIN_IMPERSONATE")
    token="$(gcloud auth print-identity-token --audiences="$ADMIN_URL" "${imp[@]}" 2>/dev/null)" || {
      echo "admin.sh: could not get an identity token for $ADMIN_URL: run 'gcloud auth login' with a service account, or set ADMIN_IMPERSONATE" >&2; exit 1; }
    # Cloud Run checks X-Serverless-Authorization and strips its
    # signature; Authorization reaches the function whole, to be verified.
    auth=(-H "X-Serverless-Authorization: Bearer $token" -H "Authorization: Bearer $token")
  fi
  local body code
  body="$(mktemp)"
  code="$(curl -sS -o "$body" -w '%{http_code}' -X "$method" -H "Accept: $accept" "${auth[@]}" "${send[@]}" "$ADMIN_URL$path")" || {
    echo "admin.sh: cannot reach $ADMIN_URL (is \`make dev\` running, or ADMIN_URL right?)" >&2; rm -f "$body"; exit 1; }
  cat "$body"; echo
  rm -f "$body"
  [[ "$code" == 2* ]] || { echo "admin.sh: HTTP $code" >&2; exit 1; }
}

[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
  list)
    case "${1:-}" in
      --json) call GET /accounts ;;
      "") call GET /accounts text/plain ;;
      *) usage ;;
    esac ;;
  show) [ $# -eq 1 ] || usage; call GET "/accounts/$(urlencode "$1")" ;;
  test)
    [ $# -ge 1 ] || usage
    q=""; [ "${2:-}" = "--send" ] && q="?send=1"
    call POST "/accounts/$(urlencode "$1")/test$q" ;;
  disconnect) [ $# -eq 1 ] || usage; call DELETE "/accounts/$(urlencode "$1")" ;;
  message)
    # A key is unique per (app, account): the same key may be two sends.
    [ $# -ge 2 ] && [ $# -le 3 ] || usage
    call GET "/messages/$(urlencode "$1")?account=$(urlencode "$2")&app=$(urlencode "${3:-default}")" ;;
  aliases)
    # The owner must have verified each alias in Gmail (Settings, Accounts,
    # "Send mail as"); the relay refuses a from it does not know.
    [ $# -ge 2 ] || usage
    email="$1"; shift
    list=""
    if [ "$*" != "--none" ]; then
      for a in "$@"; do
        a="${a//\\/\\\\}"; a="${a//\"/\\\"}"
        list+="${list:+, }\"$a\""
      done
    fi
    call PUT "/accounts/$(urlencode "$email")/aliases" application/json "{\"aliases\": [$list]}" ;;
  limit)
    # Messages per rolling 24 hours; a request over it is held, not sent.
    # Without an override: Workspace 2000, consumer Gmail 500.
    [ $# -eq 2 ] || usage
    n="$2"; [ "$n" = "--default" ] && n=0
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "admin.sh: limit: N must be a whole number from 1 to 2000, or 0 (--default) for the account's default" >&2; exit 2; }
    n="${n#"${n%%[!0]*}"}"  # JSON allows no leading zero
    call PATCH "/accounts/$(urlencode "$1")" application/json "{\"daily_limit\": ${n:-0}}" ;;
  *) usage ;;
esac
