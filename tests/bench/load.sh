#!/usr/bin/env bash
# Load benchmark: req/s and p99 latency of each route beside GET /healthz of the same process, in one run.
#
#   tests/bench/load.sh [seconds per route, default 10] [connections, default 32]
#
# Builds the release binary, starts it on a free loopback port with the development profile (log level from
# TOKENMINT_BENCH_LOG, default info, written to a file), and drives it with wrk (installed with apt-get when
# missing). Only 127.0.0.1 is ever targeted; every run is bounded by its duration. Compare the ratios, not the
# absolute figures: the machine is shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-10}"
connections="${2:-32}"
threads=1

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk
fi
cargo build --release --locked --quiet

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
TOKENMINT_ENV=development TOKENMINT_SERVER__PORT="$port" TOKENMINT_LOG__LEVEL="${TOKENMINT_BENCH_LOG:-info}" \
  target/release/tokenmint serve >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 50); do
  target/release/tokenmint healthcheck --addr "127.0.0.1:$port" --timeout-secs 1 >/dev/null 2>&1 && break
  sleep 0.1
done
if ! target/release/tokenmint healthcheck --addr "127.0.0.1:$port" >/dev/null 2>&1; then
  echo "tokenmint did not start:" >&2; cat "$log" >&2; exit 1
fi

export TOKENMINT_BENCH_AUTH="Basic $(printf '%s' 'SK00000000000000000000000000000001:sample-twilio-secret-not-for-production-1' | base64 -w0)"
base="http://127.0.0.1:$port"

# run NAME URL [wrk args...] -> prints "NAME req/s p99"
run() {
  local name=$1 url=$2; shift 2
  local out
  out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$@" "$url")
  local rps p99 non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%-22s %12s req/s   p99 %-10s %s\n' "$name" "$rps" "$p99" "${non2xx:+NON-2XX: $non2xx}"
  eval "rps_${name//[^a-zA-Z0-9]/_}=$rps"
}

echo "tokenmint load benchmark: ${duration}s per route, $connections connections, wrk -t$threads, log level ${TOKENMINT_BENCH_LOG:-info}"
run healthz "$base/healthz"
run twilio_mint "$base/twilio/v1/tokens" -s tests/bench/twilio_mint.lua
run healthz_again "$base/healthz"

awk -v m="$rps_twilio_mint" -v h1="$rps_healthz" -v h2="$rps_healthz_again" \
  'BEGIN { h = (h1 + h2) / 2; printf "twilio_mint / healthz throughput ratio: %.2f (healthz averaged over the runs before and after)\n", m / h }'
