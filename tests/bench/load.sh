#!/usr/bin/env bash
# Load benchmark: req/s and p99 latency of each route beside GET /healthz of the same process, in one run.
#
#   tests/bench/load.sh [seconds per route, default 10] [connections, default 32]
#
# Builds the release binary and starts it on free loopback ports, on the embedded store, on a redis-server and on
# a 3-master Redis Cluster the script starts itself (both with AOF, appendfsync everysec), with the development
# profile and its defaults (log level from TOKENMINT_BENCH_LOG, default info, written to a file; the NetEase
# replay guard on). Drives it with wrk (installed with apt-get when missing): NetEase requests each carry a fresh
# Nonce and a new uid, signed ahead by netease_requests.py, and every answer's NetEase code is checked. The Twilio
# mint route runs beside a minimal axum server signing the same token (minimal_signer.rs). Only 127.0.0.1 is
# targeted and every run is bounded by its duration. Compare ratios, not absolute figures: the machine is shared.
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# start_service NAME [ENV=VALUE...] -> sets $base and $service_pid
start_service() {
  local name=$1; shift
  local port; port=$(free_port)
  env "$@" TOKENMINT_ENV=development TOKENMINT_SERVER__PORT="$port" \
    TOKENMINT_LOG__LEVEL="${TOKENMINT_BENCH_LOG:-info}" TOKENMINT_STORE__EMBEDDED__PATH="$work/$name.redb" \
    TOKENMINT_NETEASE__APPS__SAMPLE__RATE_LIMIT=0 \
    TOKENMINT_MECLOUD__SINGLE_EXCHANGE=false TOKENMINT_MECLOUD__RATE_LIMIT=0 TOKENMINT_MECLOUD__CHANNEL_RATE_LIMIT=0 \
    target/release/tokenmint serve >"$work/$name.log" 2>&1 &
  service_pid=$!
  pids+=($service_pid)
  for _ in $(seq 1 50); do
    target/release/tokenmint healthcheck --addr "127.0.0.1:$port" --timeout-secs 1 >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! target/release/tokenmint healthcheck --addr "127.0.0.1:$port" >/dev/null 2>&1; then
    echo "tokenmint ($name) did not start:" >&2; cat "$work/$name.log" >&2; exit 1
  fi
  base="http://127.0.0.1:$port"
}

declare -A rps
failures=0
# run LABEL URL [wrk args...]
run() {
  local label=$1 url=$2; shift 2
  local out r p50 p99 non2xx codes
  out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$@" "$url")
  r=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  codes=$(grep '^netease codes:' <<<"$out" || true)
  rps[$label]=$r
  printf '%-46s %10s req/s   p50 %-9s p99 %-9s %s%s\n' "$label" "$r" "$p50" "$p99" "${non2xx:+NON-2XX: $non2xx }" "$codes"
  if [ -n "$non2xx" ] || { [ -n "$codes" ] && ! grep -q ', 0 other' <<<"$codes"; }; then failures=$((failures + 1)); fi
}
ratio() { awk -v a="${rps[$1]}" -v b="${rps[$2]}" -v n="$1" -v d="$2" 'BEGIN { printf "  %-44s %.2f of %s\n", n, a / b, d }'; }

# Realistic NetEase requests: a fresh Nonce and a new uid each, signed ahead (wrk's Lua has no SHA-1).
netease_requests() {
  TOKENMINT_BENCH_REQUESTS="$work/requests-$1.txt"
  python3 tests/bench/netease_requests.py $((duration * 60000)) "$TOKENMINT_BENCH_REQUESTS" "$2"
  export TOKENMINT_BENCH_REQUESTS
}

export TOKENMINT_BENCH_AUTH="Basic $(printf '%s' 'SK00000000000000000000000000000001:sample-twilio-secret-not-for-production-1' | base64 -w0)"
netease=/nimserver/user/getToken.action
mecloud_time=$(($(date +%s) * 1000))
mecloud_token=$(printf '1.%s.bench.sample-mecloud-secret-not-for-production' "$mecloud_time" | sha1sum | cut -d' ' -f1)
export TOKENMINT_BENCH_MECLOUD_BODY="{\"appId\":\"1\",\"time\":$mecloud_time,\"randomKey\":\"bench\",\"token\":\"$mecloud_token\"}"

# The yardstick for the mint route: a minimal axum server signing the same HS256 token.
signer=$(cargo bench --locked --quiet --no-run --bench minimal_signer --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and "minimal_signer" in m["executable"]][-1])')
signer_port=$(free_port)
"$signer" "$signer_port" >"$work/signer.log" 2>&1 &
pids+=($!)

echo "tokenmint load benchmark: ${duration}s per route, $connections connections, wrk -t$threads, log level ${TOKENMINT_BENCH_LOG:-info}"
echo "NetEase rows: replay guard on (idempotent, the default), a fresh Nonce and a new uid per request, rate limit off,"
echo "every answer's NetEase code checked; durable writes (embedded: fsync per group commit; Redis: AOF everysec)."
start_service embedded
run "embedded: healthz" "$base/healthz"
run "embedded: twilio mint" "$base/twilio/v1/tokens" -s tests/bench/twilio_mint.lua
run "minimal axum HS256 signer" "http://127.0.0.1:$signer_port/sign" -s tests/bench/twilio_mint.lua
netease_requests embedded 1
run "embedded: netease getToken" "$base$netease" -s tests/bench/netease_realistic.lua
# Latency at half the peak rate just measured (each connection paced by the script).
half=$(awk -v r="${rps[embedded: netease getToken]}" 'BEGIN { printf "%d", r / 2 }')
netease_requests embedded-half 300000000
TOKENMINT_BENCH_RATE=$half TOKENMINT_BENCH_CONNECTIONS=$connections \
  run "embedded: netease getToken at half peak" "$base$netease" -s tests/bench/netease_realistic.lua
run "embedded: mecloud exchange" "$base/mecloud/v2/accesstoken" -s tests/bench/mecloud_exchange.lua
run "embedded: healthz again" "$base/healthz"
embedded_rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$service_pid/status")

redis_port=$(free_port)
mkdir -p "$work/redis"
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly yes --appendfsync everysec \
  --dir "$work/redis" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
start_service redis TOKENMINT_STORE__BACKEND=redis TOKENMINT_STORE__REDIS__URL="redis://127.0.0.1:$redis_port/"
run "redis: healthz" "$base/healthz"
netease_requests redis 100000000
run "redis: netease getToken" "$base$netease" -s tests/bench/netease_realistic.lua
redis_rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$service_pid/status")

# A 3-master Redis Cluster on loopback, AOF everysec.
cluster_ports=()
for i in 1 2 3; do
  # A cluster node's bus port is its port + 10000, so the port must be at most 55535.
  port=$(free_port); while [ "$port" -gt 55535 ]; do port=$(free_port); done
  cluster_ports+=("$port")
  mkdir -p "$work/cluster-$i"
  redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes --save "" --appendonly yes \
    --appendfsync everysec --dir "$work/cluster-$i" >"$work/cluster-$i.log" 2>&1 &
  pids+=($!)
done
for port in "${cluster_ports[@]}"; do
  for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
until redis-cli -p "${cluster_ports[0]}" cluster info | grep -q 'cluster_state:ok'; do sleep 0.2; done
cluster_url=$(printf 'redis://127.0.0.1:%s,' "${cluster_ports[@]}"); cluster_url=${cluster_url%,}
start_service cluster TOKENMINT_STORE__BACKEND=redis TOKENMINT_STORE__REDIS__CLUSTER=true \
  TOKENMINT_STORE__REDIS__URL="$cluster_url"
run "cluster: healthz" "$base/healthz"
netease_requests cluster 200000000
run "cluster: netease getToken" "$base$netease" -s tests/bench/netease_realistic.lua

echo "throughput ratios (same process, same run):"
ratio "embedded: twilio mint" "embedded: healthz"
ratio "embedded: twilio mint" "minimal axum HS256 signer"
ratio "embedded: netease getToken" "embedded: healthz"
ratio "embedded: mecloud exchange" "embedded: healthz"
ratio "redis: netease getToken" "redis: healthz"
ratio "cluster: netease getToken" "cluster: healthz"
echo "peak RSS: embedded instance $embedded_rss, redis instance $redis_rss"
if [ "$failures" -gt 0 ]; then echo "load: $failures run(s) had failed answers (see above)" >&2; exit 1; fi
