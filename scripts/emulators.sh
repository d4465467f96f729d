#!/usr/bin/env bash
# Starts and stops the gcloud Firestore and Pub/Sub emulators that the tests
# and make dev use.
#
#   scripts/emulators.sh start   start both (if not running), print exports
#   scripts/emulators.sh env     print the exports of the running emulators
#   scripts/emulators.sh stop    stop both; safe to repeat
#
# Exports go to stdout, for `eval "$(scripts/emulators.sh start)"`; everything
# else goes to stderr. The Pub/Sub emulator is exported as
# GCLOUD_PUBSUB_EMULATOR_HOST, not PUBSUB_EMULATOR_HOST, so that it never
# silently redirects clients in tests that use pstest (see internal/testing/testenv).
#
# Without gcloud, Java or an emulator component, start explains what is
# missing on stderr and exits 0 printing nothing: the emulator tests then
# skip locally and fail under CI=true.
#
# Environment:
#   EMULATOR_DIR       state dir for pids, ports and logs (default .dev/emulators
#                      under the repository root)
#   EMULATOR_PROJECT   project passed to the Pub/Sub emulator (default gmail-relay-dev)
#   EMULATOR_TIMEOUT   seconds to wait for each emulator to answer (default 60)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_dir="${EMULATOR_DIR:-${repo_root}/.dev/emulators}"
project="${EMULATOR_PROJECT:-gmail-relay-dev}"
timeout_s="${EMULATOR_TIMEOUT:-60}"

# gcloud must not stop to prompt or reach the network for update checks.
export CLOUDSDK_CORE_DISABLE_PROMPTS=1
export CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=1
export CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=1

emulators="firestore pubsub"

log() { printf 'emulators: %s\n' "$*" >&2; }

env_var() {
  case "$1" in
    firestore) echo FIRESTORE_EMULATOR_HOST ;;
    pubsub) echo GCLOUD_PUBSUB_EMULATOR_HOST ;;
  esac
}

# now_ms prints wall-clock milliseconds, for the start-up times reported.
now_ms() {
  if [[ -n "${EPOCHREALTIME:-}" ]]; then
    local s="${EPOCHREALTIME/[.,]/}"
    echo $((10#${s} / 1000))
  else
    echo $(($(date +%s) * 1000))
  fi
}

# missing_prereq prints why the emulators cannot run here, or nothing.
missing_prereq() {
  if ! command -v gcloud >/dev/null 2>&1; then
    echo "gcloud is not installed (https://cloud.google.com/sdk/docs/install)"
    return
  fi
  if ! command -v java >/dev/null 2>&1; then
    echo "java is not installed; the emulators need a Java 11+ runtime (Java 21+ for future Firestore emulators)"
    return
  fi
  # The SDK root is where the gcloud binary lives; asking gcloud info costs
  # more than a second, so it is only the fallback.
  local root="" bin
  bin="$(command -v gcloud)"
  bin="$(readlink -f "$bin" 2>/dev/null || true)"
  if [[ -n "$bin" && -d "$(dirname "$bin")/../platform" ]]; then
    root="$(cd "$(dirname "$bin")/.." && pwd)"
  else
    root="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)"
  fi
  if [[ -z "$root" ]]; then
    echo "gcloud info could not report the SDK root"
    return
  fi
  local comp pkg
  for comp in cloud-firestore-emulator pubsub-emulator; do
    if [[ ! -d "$root/platform/$comp" ]]; then
      case "$comp" in
        cloud-firestore-emulator) pkg=google-cloud-cli-firestore-emulator ;;
        pubsub-emulator) pkg=google-cloud-cli-pubsub-emulator ;;
      esac
      echo "the gcloud component $comp is not installed (gcloud components install $comp, or apt-get install $pkg)"
      return
    fi
  done
}

# group_alive reports whether the process group started for an emulator
# still runs. Matching the command line as well guards against a reused pid.
group_alive() {
  local pgid="$1"
  [[ "$pgid" =~ ^[0-9]+$ ]] || return 1
  ps -eo pgid=,args= 2>/dev/null | awk -v g="$pgid" '$1 == g && /emulator/ { found = 1 } END { exit !found }'
}

running() {
  local name="$1" pgid
  [[ -f "$state_dir/$name.pid" ]] || return 1
  pgid="$(cat "$state_dir/$name.pid")"
  group_alive "$pgid"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port picks an unused port at random, below Linux's ephemeral range so
# that outgoing connections do not take it. Another process may still bind it
# first; the emulator then dies and start reports it.
free_port() {
  local port i
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + RANDOM % 12000))
    if ! port_in_use "$port" && [[ "$port" != "${taken_port:-}" ]]; then
      echo "$port"
      return
    fi
  done
  log "found no free port"
  return 1
}

# answers reports whether an HTTP GET / on port gets a 200. Both emulators
# answer "Ok" there once they accept requests.
answers() {
  local port="$1"
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$port" >&3
    IFS= read -r -t 2 status <&3 || exit 1
    [[ "$status" == *" 200 "* ]]
  ) 2>/dev/null
}

launch() {
  local name="$1" port="$2"
  local logf="$state_dir/$name.log"
  : >"$logf"
  # Job control gives each emulator its own process group, so stop can end
  # gcloud's wrapper and the Java server it forks in one signal, and an
  # interrupt of the calling shell does not reach them.
  set -m
  case "$name" in
    firestore)
      gcloud emulators firestore start --host-port="127.0.0.1:$port" \
        </dev/null >>"$logf" 2>&1 &
      ;;
    pubsub)
      mkdir -p "$state_dir/pubsub-data"
      gcloud beta emulators pubsub start --host-port="127.0.0.1:$port" \
        --project="$project" --data-dir="$state_dir/pubsub-data" \
        </dev/null >>"$logf" 2>&1 &
      ;;
  esac
  local pid=$!
  set +m
  echo "$pid" >"$state_dir/$name.pid"
  echo "127.0.0.1:$port" >"$state_dir/$name.addr"
}

kill_group() {
  local name="$1" pgid i
  [[ -f "$state_dir/$name.pid" ]] || return 0
  pgid="$(cat "$state_dir/$name.pid")"
  if group_alive "$pgid"; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      group_alive "$pgid" || break
      sleep 0.1
    done
    if group_alive "$pgid"; then
      log "$name did not stop on TERM; killing it"
      kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    log "stopped $name"
  fi
  rm -f "$state_dir/$name.pid" "$state_dir/$name.addr"
}

print_env() {
  local name
  for name in $emulators; do
    echo "export $(env_var "$name")=$(cat "$state_dir/$name.addr")"
  done
}

fail_start() {
  local name="$1" why="$2"
  log "$name $why; last lines of $state_dir/$name.log:"
  tail -n 30 "$state_dir/$name.log" >&2 || true
  local n
  for n in $started; do
    kill_group "$n"
  done
  exit 1
}

cmd_start() {
  local why
  why="$(missing_prereq)"
  if [[ -n "$why" ]]; then
    log "not starting: $why."
    log "Tests that need the emulators skip locally and fail under CI=true."
    exit 0
  fi
  (umask 077 && mkdir -p "$state_dir")

  started=""
  taken_port=""
  local name port t0
  t0="$(now_ms)"
  for name in $emulators; do
    if running "$name"; then
      log "$name already running at $(cat "$state_dir/$name.addr")"
      continue
    fi
    kill_group "$name"
    if ! port="$(free_port)"; then
      for name in $started; do
        kill_group "$name"
      done
      exit 1
    fi
    taken_port="$port"
    launch "$name" "$port"
    started="$started $name"
  done

  local pending="$started" deadline=$((SECONDS + timeout_s)) still retried=" "
  while [[ -n "${pending// /}" ]]; do
    still=""
    for name in $pending; do
      port="$(cut -d: -f2 <"$state_dir/$name.addr")"
      if answers "$port"; then
        log "$name ready at 127.0.0.1:$port after $(($(now_ms) - t0)) ms"
      elif ! running "$name" && [[ "$retried" != *" $name "* ]]; then
        # Seen on CI once, with an empty log: the emulator died at once
        # (a port taken between the check and the bind, or two gcloud
        # processes starting together). One more try on another port.
        log "$name exited before answering; starting it once more on another port"
        retried="$retried$name "
        kill_group "$name"
        port="$(free_port)" || fail_start "$name" "exited before answering, and no other port is free"
        taken_port="$port"
        launch "$name" "$port"
        still="$still $name"
      elif ! running "$name"; then
        fail_start "$name" "exited before answering"
      else
        still="$still $name"
      fi
    done
    pending="$still"
    [[ -z "${pending// /}" ]] && break
    if ((SECONDS >= deadline)); then
      for name in $pending; do
        fail_start "$name" "did not answer within ${timeout_s}s"
      done
    fi
    sleep 0.2
  done
  print_env
}

cmd_env() {
  local name
  for name in $emulators; do
    if ! running "$name"; then
      log "$name is not running; run scripts/emulators.sh start"
      exit 1
    fi
  done
  print_env
}

cmd_stop() {
  local name
  for name in $emulators; do
    kill_group "$name"
  done
}

case "${1:-}" in
  start) cmd_start ;;
  env) cmd_env ;;
  stop) cmd_stop ;;
  *)
    echo "usage: $0 start|env|stop" >&2
    exit 2
    ;;
esac
