#!/usr/bin/env bash
# Scale benchmark: NetEase getToken on the embedded store when it already holds many live tokens, and while the
# purger deletes many expired ones, beside the same route on an empty store, in one run.
#
#   tests/bench/scale.sh [live tokens, default 1000000] [expired tokens, default 100000] [seconds, default 10]
#                        [connections, default 32]
#
# Three instances of the release binary, one after the other, each on its own store file and the shipped defaults
# (replay guard on, durable group commit, info logs to a file), driven by wrk with realistic requests (a fresh
# Nonce and a new uid each, signed ahead by netease_requests.py; every answer's NetEase code checked):
#   empty   a new store;
#   full    a store preloaded (tests/bench/preload.rs) with the live tokens;
#   purge   the live tokens plus the expired ones (each with its marker and replay guard: three entries), with the
#           purge interval set so the purger starts two seconds into the run; the run then reports how many
#           entries the purger removed and how long its pass took (from /metrics).
# Compare the rows with each other; the machine is shared, so absolute figures vary between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
live="${1:-1000000}"
expired="${2:-100000}"
duration="${3:-10}"
connections="${4:-32}"

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk
fi
cargo build --release --locked --quiet
preload=$(cargo bench --locked --quiet --no-run --bench preload --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and "preload" in m["executable"]][-1])')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "tokenmint scale benchmark: $live live tokens, $expired expired tokens, ${duration}s per row, $connections connections"
"$preload" "$work/full.redb" "$live" 0
"$preload" "$work/purge.redb" "$live" "$expired"

declare -A rps p99
failures=0
# row NAME STORE_FILE [ENV=VALUE...]: starts an instance on STORE_FILE, drives getToken, stops it.
row() {
  local name=$1 file=$2; shift 2
  local port; port=$(free_port)
  env "$@" TOKENMINT_ENV=development TOKENMINT_SERVER__PORT="$port" TOKENMINT_LOG__LEVEL=info \
    TOKENMINT_STORE__EMBEDDED__PATH="$file" TOKENMINT_NETEASE__APPS__SAMPLE__RATE_LIMIT=0 \
    target/release/tokenmint serve >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 1 100); do
    target/release/tokenmint healthcheck --addr "127.0.0.1:$port" --timeout-secs 1 >/dev/null 2>&1 && break
    sleep 0.1
  done
  python3 tests/bench/netease_requests.py $((duration * 60000)) "$work/requests.txt" 1
  local out
  out=$(TOKENMINT_BENCH_REQUESTS="$work/requests.txt" wrk -t1 -c"$connections" -d"${duration}s" --latency \
    -s tests/bench/netease_realistic.lua "http://127.0.0.1:$port/nimserver/user/getToken.action")
  rps[$name]=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99[$name]=$(awk '$1 == "99%" {print $2}' <<<"$out")
  local p50 max codes rss
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  max=$(awk '$1 == "Latency" {print $4}' <<<"$out")
  codes=$(grep '^netease codes:' <<<"$out" || true)
  rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status")
  printf '%-6s %10s req/s   p50 %-9s p99 %-9s max %-9s peak RSS %-10s %s\n' \
    "$name" "${rps[$name]}" "$p50" "${p99[$name]}" "$max" "$rss" "$codes"
  grep -q ', 0 other' <<<"$codes" || failures=$((failures + 1))
  if [ "$name" = purge ]; then
    local metrics
    metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
    awk '/^tokenmint_store_embedded_purged_entries_total/ {printf "       purged entries: %d\n", $2}
         /^tokenmint_store_embedded_purge_duration_seconds_(sum|count)/ {print "       " $0}' <<<"$metrics"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

row empty "$work/empty.redb"
row full "$work/full.redb"
row purge "$work/purge.redb" TOKENMINT_STORE__EMBEDDED__PURGE_INTERVAL_SECS=2
awk -v e="${rps[empty]}" -v f="${rps[full]}" -v p="${rps[purge]}" \
  'BEGIN { printf "full / empty: %.2f   purge / full: %.2f\n", f / e, p / f }'
if [ "$failures" -gt 0 ]; then echo "scale: $failures run(s) had failed answers (see above)" >&2; exit 1; fi
