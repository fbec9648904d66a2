#!/usr/bin/env bash
# What the per-request log line costs: Twilio mint req/s at log level info against the same binary at warn, and
# GET /healthz beside them, in one run, for each binary given (default: this checkout's release build).
#
#   tests/bench/log_cost.sh [seconds per run, default 8] [binary ...]
#
# Give an older build's binary too (e.g. one built from the commit before the non-blocking writer) to compare
# before and after in the same run. Logs go to a file, as under a container runtime. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-8}"; shift || true
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --release --locked --quiet
  bins=(target/release/tokenmint)
fi
command -v wrk >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq wrk; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export TOKENMINT_BENCH_AUTH="Basic $(printf '%s' 'SK00000000000000000000000000000001:sample-twilio-secret-not-for-production-1' | base64 -w0)"

rps() { wrk -t1 -c32 -d"${duration}s" "$@" | awk '/^Requests\/sec:/ {print $2}'; }

echo "log cost: ${duration}s per run, 32 connections, wrk -t1"
printf '%-40s %-6s %12s %12s\n' binary level "mint req/s" "healthz req/s"
declare -A mint
for bin in "${bins[@]}"; do
  for level in info warn; do
    port=$(free_port)
    TOKENMINT_ENV=development TOKENMINT_SERVER__PORT="$port" TOKENMINT_LOG__LEVEL="$level" \
      TOKENMINT_STORE__EMBEDDED__PATH="$work/store-$RANDOM.redb" "$bin" serve >"$work/service.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do "$bin" healthcheck --addr "127.0.0.1:$port" --timeout-secs 1 >/dev/null 2>&1 && break; sleep 0.1; done
    m=$(rps -s tests/bench/twilio_mint.lua "http://127.0.0.1:$port/twilio/v1/tokens")
    h=$(rps "http://127.0.0.1:$port/healthz")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    mint["$bin/$level"]=$m
    printf '%-40s %-6s %12s %12s\n' "$bin" "$level" "$m" "$h"
  done
done
echo "mint at info as a share of mint at warn (1.00: the log line costs nothing):"
for bin in "${bins[@]}"; do
  awk -v a="${mint[$bin/info]}" -v b="${mint[$bin/warn]}" -v n="$bin" 'BEGIN { printf "  %-40s %.2f\n", n, a / b }'
done
