#!/usr/bin/env bash
# Load benchmark: req/s and p99 latency of each route beside GET /healthz of the same process, in one run.
#
#   tests/bench/load.sh [seconds per route, default 10] [connections, default 32]
#
# Builds the release binary and starts it on free loopback ports, on the embedded store, on a redis-server and on
# a 3-master Redis Cluster the script starts itself, with the development profile (log level from TOKENMINT_BENCH_LOG,
# default info, written to a file). Drives it with wrk (installed with apt-get when missing). Only 127.0.0.1 is
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

# start_service NAME [ENV=VALUE...] -> sets $base
start_service() {
  local name=$1; shift
  local port; port=$(free_port)
  env "$@" TOKENMINT_ENV=development TOKENMINT_SERVER__PORT="$port" \
    TOKENMINT_LOG__LEVEL="${TOKENMINT_BENCH_LOG:-info}" TOKENMINT_STORE__EMBEDDED__PATH="$work/$name.redb" \
    TOKENMINT_NETEASE__REPLAY_GUARD=false TOKENMINT_NETEASE__APPS__SAMPLE__RATE_LIMIT=0 \
    TOKENMINT_MECLOUD__SINGLE_EXCHANGE=false TOKENMINT_MECLOUD__RATE_LIMIT=0 TOKENMINT_MECLOUD__CHANNEL_RATE_LIMIT=0 \
    target/release/tokenmint serve >"$work/$name.log" 2>&1 &
  pids+=($!)
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
# run LABEL URL [wrk args...]
run() {
  local label=$1 url=$2; shift 2
  local out r p99 non2xx
  out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$@" "$url")
  r=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  rps[$label]=$r
  printf '%-34s %12s req/s   p99 %-10s %s\n' "$label" "$r" "$p99" "${non2xx:+NON-2XX: $non2xx}"
}
ratio() { awk -v a="${rps[$1]}" -v b="${rps[$2]}" -v n="$1" -v d="$2" 'BEGIN { printf "  %-32s %.2f of %s\n", n, a / b, d }'; }

export TOKENMINT_BENCH_AUTH="Basic $(printf '%s' 'SK00000000000000000000000000000001:sample-twilio-secret-not-for-production-1' | base64 -w0)"
export TOKENMINT_BENCH_APPKEY=sampleappkey00000000000000000001
export TOKENMINT_BENCH_NONCE=benchnonce
export TOKENMINT_BENCH_CURTIME=$(date +%s)
export TOKENMINT_BENCH_CHECKSUM=$(printf '%s%s%s' sample-netease-secret-not-for-production "$TOKENMINT_BENCH_NONCE" "$TOKENMINT_BENCH_CURTIME" | sha1sum | cut -d' ' -f1)
netease=/nimserver/user/getToken.action
mecloud_time=$(($(date +%s) * 1000))
mecloud_token=$(printf '1.%s.bench.sample-mecloud-secret-not-for-production' "$mecloud_time" | sha1sum | cut -d' ' -f1)
export TOKENMINT_BENCH_MECLOUD_BODY="{\"appId\":\"1\",\"time\":$mecloud_time,\"randomKey\":\"bench\",\"token\":\"$mecloud_token\"}"

echo "tokenmint load benchmark: ${duration}s per route, $connections connections, wrk -t$threads, log level ${TOKENMINT_BENCH_LOG:-info}"
start_service embedded
run "embedded: healthz" "$base/healthz"
run "embedded: twilio mint" "$base/twilio/v1/tokens" -s tests/bench/twilio_mint.lua
run "embedded: netease getToken new uid" "$base$netease" -s tests/bench/netease_get_token.lua
TOKENMINT_BENCH_UIDS=100 run "embedded: netease getToken repeat" "$base$netease" -s tests/bench/netease_get_token.lua
run "embedded: mecloud exchange" "$base/mecloud/v2/accesstoken" -s tests/bench/mecloud_exchange.lua
run "embedded: healthz again" "$base/healthz"

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
sleep 0.5
start_service redis TOKENMINT_STORE__BACKEND=redis TOKENMINT_STORE__REDIS__URL="redis://127.0.0.1:$redis_port/"
run "redis: healthz" "$base/healthz"
run "redis: netease getToken new uid" "$base$netease" -s tests/bench/netease_get_token.lua
TOKENMINT_BENCH_UIDS=100 run "redis: netease getToken repeat" "$base$netease" -s tests/bench/netease_get_token.lua

# A 3-master Redis Cluster on loopback.
cluster_ports=()
for i in 1 2 3; do
  port=$(free_port); cluster_ports+=("$port")
  mkdir -p "$work/cluster-$i"
  redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes --save "" --appendonly no --dir "$work/cluster-$i" \
    >"$work/cluster-$i.log" 2>&1 &
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
run "cluster: netease getToken new uid" "$base$netease" -s tests/bench/netease_get_token.lua
TOKENMINT_BENCH_UIDS=100 run "cluster: netease getToken repeat" "$base$netease" -s tests/bench/netease_get_token.lua

echo "throughput ratios (same process, same run):"
ratio "embedded: twilio mint" "embedded: healthz"
ratio "embedded: netease getToken new uid" "embedded: healthz"
ratio "embedded: netease getToken repeat" "embedded: healthz"
ratio "embedded: mecloud exchange" "embedded: healthz"
ratio "redis: netease getToken new uid" "redis: healthz"
ratio "redis: netease getToken repeat" "redis: healthz"
ratio "cluster: netease getToken new uid" "cluster: healthz"
ratio "cluster: netease getToken repeat" "cluster: healthz"
