#!/usr/bin/env bash
# Connects a mailbox to the local relay (`make dev`) without a browser: it
# opens the connect link, submits the sandbox's consent form (a plain HTML
# form) with every permission ticked, follows Google's redirect back to
# confirm, and prints confirm's JSON answer. Only for the sandbox Google:
# real Google's consent screen needs a person.
#
# Usage: scripts/connect.sh alice@example.com
# RELAY_URL defaults to http://localhost:$PORT (8080).
set -euo pipefail

email="${1:?usage: scripts/connect.sh EMAIL}"
base="${RELAY_URL:-http://localhost:${PORT:-8080}}"
base="${base%/}"
jar="$(mktemp)"
trap 'rm -f "$jar"' EXIT

consent="$(curl -sS -c "$jar" -o /dev/null -w '%{redirect_url}' --get --data-urlencode "login_hint=$email" "$base/authorize?start=1")"
[[ -n "$consent" ]] || { echo "connect.sh: $base/authorize did not redirect to a consent page (is \`make dev\` running there?)" >&2; exit 1; }
form="$(curl -sS "$consent")"
grep -q 'id="consent"' <<<"$form" || { echo "connect.sh: $consent is not the sandbox's consent page; this script works only with the sandbox Google" >&2; exit 1; }
action="$(grep -o '<form id="consent"[^>]*action="[^"]*"' <<<"$form" | sed -E 's/.*action="([^"]*)"/\1/; s/&amp;/\&/g')"
args=()
while IFS= read -r kv; do args+=(--data-urlencode "$kv"); done < <(grep -o 'name="[a-z_]*" value="[^"]*"' <<<"$form" |
  sed -E 's/name="([^"]*)" value="([^"]*)"/\1=\2/; s/&amp;/\&/g; s/&#43;/+/g' | grep -v '^action=')
case "$action" in http*) ;; *) action="${consent%%/o/*}$action" ;; esac
back="$(curl -sS -o /dev/null -w '%{redirect_url}' "${args[@]}" --data-urlencode action=allow "$action")"
[[ -n "$back" ]] || { echo "connect.sh: the consent form did not redirect back" >&2; exit 1; }
curl -sS -b "$jar" -H 'Accept: application/json' "$back"
echo
