#!/usr/bin/env bash
# Measures what a gmail-relay deployment feels and prints one table: what
# `make bench` runs. Everything is local (loopback) and bounded; no emulator
# is needed.
#
#   1. go test -bench ./internal/testing/bench   relay CPU per send against the
#      sandbox (process CPU, not wall), directly and through the sender's
#      push handler; the naive-sender baseline (benchstat-readable)
#   2. go test -run ... ./internal/testing/bench external calls per send and the
#      reliability suite (10,000 messages with faults, per-user quota,
#      invalid_grant)
#   3. scripts/loadtest                  the packaged sender as a process:
#      throughput at a realistic Gmail (concurrency 80, GOMEMLIMIT as
#      deployed, 300 ms per send), peak RSS for the largest request and a
#      30 MB message, cold start and binary size
#
# Environment:
#   BENCH_OUT       output directory (default .dev/bench/<UTC time>)
#   BENCH_MAX_LOAD  wait until the 1-minute load average is below this
#                   (default 2) ...
#   BENCH_WAIT      ... for at most this many seconds (default 1800; 0: no wait)
#   BENCH_COUNT     -count for the benchmarks (default 6, what benchstat needs
#                   for a confidence interval)
#   BENCH_TIME      -benchtime (default 1s)
#   BENCH_N         messages in the throughput run (default 3000)
#   BENCH_GMAIL_LATENCY  the sandbox's answer time in that run (default 300ms)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${BENCH_OUT:-$root/.dev/bench/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
max_load="${BENCH_MAX_LOAD:-2}"
wait_s="${BENCH_WAIT:-1800}"
count="${BENCH_COUNT:-6}"
benchtime="${BENCH_TIME:-1s}"
n="${BENCH_N:-3000}"
gmail_latency="${BENCH_GMAIL_LATENCY:-300ms}"
figures="$out/figures.tsv"
: >"$figures"
failed=""

log() { printf 'bench: %s\n' "$*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }

# The sender's deployed settings, from Terraform's defaults: its request
# concurrency (sender_concurrency) and GOMEMLIMIT, which infra/locals.tf
# sets to 90% of sender_memory_mib.
tfdefault() { awk -v name="$1" '$0 ~ "^variable \"" name "\"" { v = 1 } v && /default/ { gsub(/[^0-9]/, ""); print; exit }' infra/variables.tf 2>/dev/null || true; }
concurrency="$(tfdefault sender_concurrency)"
concurrency="${concurrency:-80}"
memory_mib="$(tfdefault sender_memory_mib)"
memory_mib="${memory_mib:-512}"
memlimit="$((memory_mib * 9 / 10))MiB"
memlimit_from="90% of sender_memory_mib (${memory_mib})"

# Wait (bounded) for a quiet machine: other work skews every figure.
if [[ -r /proc/loadavg && "$wait_s" -gt 0 ]]; then
  deadline=$((SECONDS + wait_s))
  while awk -v l="$(load1)" -v m="$max_load" 'BEGIN { exit !(l >= m) }'; do
    if ((SECONDS >= deadline)); then
      log "load average still $(load1) after ${wait_s}s; measuring anyway"
      break
    fi
    log "load average $(load1) >= $max_load; waiting (until $((deadline - SECONDS))s from now)"
    sleep 15
  done
fi
load_start="$(cat /proc/loadavg 2>/dev/null | cut -d' ' -f1-3 || echo unknown)"
log "load average at start: $load_start; output in $out"

# 1. Benchmarks.
log "benchmarks (-count=$count -benchtime=$benchtime)"
if ! go test -run '^$' -bench . -benchmem -count "$count" -benchtime "$benchtime" -timeout 60m ./internal/testing/bench >"$out/bench.txt" 2>"$out/bench.err"; then
  failed="$failed benchmarks"
  tail -n 20 "$out/bench.err" >&2 || true
fi
if go run golang.org/x/perf/cmd/benchstat@latest "$out/bench.txt" >"$out/benchstat.txt" 2>/dev/null; then
  log "benchstat summary in $out/benchstat.txt"
else
  echo "benchstat unavailable (the module proxy did not serve golang.org/x/perf)" >"$out/benchstat.txt"
fi

# 2. Calls per send and the reliability suite: tests that assert outcomes.
log "calls per send and reliability suite"
if ! BENCH_FIGURES="$figures" go test -count=1 -v -timeout 30m -run 'TestExternalCallsPerMessage|TestReliability' ./internal/testing/bench >"$out/reliability.txt" 2>&1; then
  failed="$failed reliability"
  grep -E -- '--- FAIL|Error|error' "$out/reliability.txt" | head -n 20 >&2 || true
fi

# 3. The packaged sender as a process.
go build -o "$out/loadtest" ./scripts/loadtest
lt() { # lt <label> <args...>: one harness run, its figures appended
  local label="$1"
  shift
  log "loadtest $label: $*"
  if ! "$out/loadtest" -label "$label" "$@" >"$out/$label.out" 2>"$out/$label.err"; then
    failed="$failed $label"
    tail -n 5 "$out/$label.err" >&2 || true
  fi
  awk -F'\t' '$1 == "FIGURE" { print $2 "\t" $3 }' "$out/$label.out" >>"$figures"
}
lt build -mode=build -out "$out/build"
bin="$out/build/app/server"
lt throughput -mode=push -bin "$bin" -n "$n" -concurrency "$concurrency" -gmail-latency "$gmail_latency" -gomemlimit "$memlimit"
lt large -mode=large -bin "$bin"
lt cold -mode=coldstart -bin "$bin" -runs 5
lt burst -mode=burst -bin "$bin" -timeout 3m -burst-gomemlimit "$memlimit"
lt kill -mode=kill -bin "$bin"
load_end="$(cat /proc/loadavg 2>/dev/null | cut -d' ' -f1-3 || echo unknown)"

# The table. Benchmark figures are medians over -count runs.
bench_median() { # bench_median <benchmark name> <unit>
  awk -v name="$1" -v unit="$2" '
    $1 ~ /^Benchmark/ {
      b = $1; sub(/-[0-9]+$/, "", b)
      if (b != name) next
      for (i = 3; i < NF; i++) if ($(i + 1) == unit) v[++k] = $i
    }
    END {
      if (k == 0) { print ""; exit }
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      print v[int((k + 1) / 2)]
    }' "$out/bench.txt"
}
fig() { awk -F'\t' -v k="$1" '$1 == k { v = $2 } END { print v }' "$figures"; }
num() { awk -v s="$1" 'BEGIN { if (match(s, /-?[0-9]+(\.[0-9]+)?/)) print substr(s, RSTART, RLENGTH); else print "" }'; }
verdict() { # verdict <value> <op> <target>: met, MISSED or n/a
  [[ -z "$1" ]] && { echo "n/a"; return; }
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    ok = (op == "<=") ? (v <= t) : (op == ">=") ? (v >= t) : (v == t)
    print ok ? "met" : "MISSED" }'
}
msec() { [[ -n "$1" ]] && awk -v v="$1" 'BEGIN { printf "%.2f", v / 1e6 }' || echo ""; }
passed() { grep -q -- "--- PASS: $1 " "$out/reliability.txt" && echo met || echo MISSED; }

rows="$out/table.tsv"
: >"$rows"
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$rows"; }

cpu="$(msec "$(bench_median BenchmarkSend/gmail=sandbox cpu-ns/op)")"
row "Relay CPU per send, Gmail=sandbox, 80 in flight" "${cpu:-?} ms (process user+sys; kernel $(msec "$(bench_median BenchmarkSend/gmail=sandbox sys-cpu-ns/op)") ms); $(bench_median BenchmarkSend/gmail=sandbox allocs/op) allocs" "<= 1 ms" "$(verdict "$cpu" "<=" 1)"
pcpu="$(msec "$(bench_median BenchmarkPush/handler=sender,gmail=sandbox cpu-ns/op)")"
row "  through the deployed push handler (ServeHTTP)" "${pcpu:-?} ms" "<= 1 ms" "$(verdict "$pcpu" "<=" 1)"
sm="$(fig calls.secret_manager_reads_per_msg)"
rf="$(fig calls.token_refreshes_per_msg)"
fw="$(fig calls.firestore_writes_per_msg)"
fr="$(fig calls.firestore_reads_per_msg)"
row "Secret Manager reads per send (steady state)" "$sm" "0" "$(verdict "$(num "$sm")" "==" 0)"
row "Token refreshes per send" "$rf" "0" "$(verdict "$(num "$rf")" "==" 0)"
lw="$(fig calls.ledger_writes_per_msg)"
rw="$(fig calls.registry_writes_per_msg)"
row "Firestore ledger writes per send" "$lw" "<= 2" "$(verdict "$(num "$lw")" "<=" 2)"
# The registry's are the daily-quota counts, coalesced to one a second
# per mailbox: a full write per send only under one send a second.
row "Firestore registry (quota count) writes per send" "$rw (all writes $fw)" "<= 1" "$(verdict "$(num "$rw")" "<=" 1)"
row "Firestore reads per send (ledger + registry)" "$fr ($(fig calls.firestore_split))" "<= 1" "$(verdict "$(num "$fr")" "<=" 1)"
nv="$(bench_median BenchmarkBaseline/impl=naive msgs/s)"
rl="$(bench_median BenchmarkBaseline/impl=relay msgs/s)"
ratio="$(awk -v a="$rl" -v b="$nv" 'BEGIN { if (b > 0) printf "%.1f", a / b }')"
row "Naive sender vs relay, Gmail=sandbox, 80 in flight" "relay ${ratio:-?}x the naive sender's msgs/s (naive ${nv%.*}/s, $(msec "$(bench_median BenchmarkBaseline/impl=naive cpu-ns/op)") ms CPU; relay ${rl%.*}/s, $(msec "$(bench_median BenchmarkBaseline/impl=relay cpu-ns/op)") ms CPU)" "report" "-"
tp="$(fig throughput.throughput)"
row "Throughput, one packaged sender, Gmail at $gmail_latency" "$tp" ">= 250/s" "$(verdict "$(num "$tp")" ">=" 250)"
row "  latency; sender peak RSS; sender CPU" "$(fig throughput.latency); $(fig throughput.sender_rss); $(fig throughput.sender_cpu)" "report" "-"
row "  delivered; GOMEMLIMIT from" "$(fig throughput.accepted); $memlimit_from" "-" "-"
l30="$(fig large.30mb)"
row "30 MB message, compose+send process VmHWM" "$l30" "<= 3x" "$(verdict "$(awk -v s="$l30" 'BEGIN { if (match(s, /= [0-9.]+x/)) print substr(s, RSTART + 2, RLENGTH - 3) }')" "<=" 3)"
row "Largest request Pub/Sub carries, sender VmHWM" "$(fig large.max_request)" "report" "-"
cold="$(fig cold.coldstart)"
row "Cold start: process start → first push served" "$cold" "<= 100 ms" "$(verdict "$(num "$cold")" "<=" 100)"
row "Binary size" "$(fig build.binary_size)" "report" "-"
row "Reliability: 10,000 msgs, 50 accounts, 10% dup pushes, 5% 5xx, 2% 429" "$(fig reliability.eml_files) .eml; lost $(fig reliability.lost); duplicates $(fig reliability.duplicates); results $(fig reliability.results); dead-lettered $(fig reliability.dead_lettered)" "10000, 0, 0" "$(passed TestReliabilityFaults)"
row "  deliveries, Gmail calls, ledger writes" "$(fig reliability.pushes); Gmail $(fig reliability.gmail_calls); ledger $(fig reliability.ledger_writes_per_msg)/msg; $(fig reliability.elapsed)" "-" "-"
row "Per-user quota 2.5/s: goodput" "$(fig quota.goodput)" "report" "-"
row "  retry amplification; dead-lettered" "$(fig quota.amplification); $(fig quota.dead_lettered)" "report" "-"
row "invalid_grant mid-run" "$(fig invalid_grant.victim); others: $(fig invalid_grant.others)" "fail fast" "$(passed TestReliabilityInvalidGrant)"
row "Burst: 80 pushes of ~13 MB at once, Gmail at 300 ms (GOMEMLIMIT $memlimit)" "$(fig burst.burst_valid)" "<= 512 MiB, once each" "$([[ " $failed " == *" burst "* ]] && echo MISSED || echo met)"
row "Burst: 80 invalid 9.9 MB requests, 330k recipients each" "$(fig burst.burst_invalid)" "<= 512 MiB" "$([[ " $failed " == *" burst "* ]] && echo MISSED || echo met)"
row "Crashes: 2,000 messages, 5 x kill -9 of the sender" "$(fig kill.kill_lost); $(fig kill.kill_unflagged); $(fig kill.kill_duplicates)" "0 lost, 0 unflagged" "$([[ " $failed " == *" kill "* ]] && echo MISSED || echo met)"

{
  echo "gmail-relay measurements, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc 2>/dev/null || echo ?) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null), $(go version | cut -d' ' -f3-)"
  echo "load average: $load_start at start, $load_end at end"
  echo "command: scripts/bench.sh (BENCH_COUNT=$count BENCH_TIME=$benchtime BENCH_N=$n BENCH_GMAIL_LATENCY=$gmail_latency; sender concurrency $concurrency, GOMEMLIMIT=$memlimit); raw output in $out"
  echo
  awk -F'\t' '{ printf "%-62s | %-9s | %-6s | %s\n", $1, $3, $4, $2 }' "$rows"
} | tee "$out/table.txt"

if [[ -n "$failed" ]]; then
  log "failed steps:$failed (see $out)"
  exit 1
fi
