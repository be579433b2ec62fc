#!/usr/bin/env bash
# HTTP throughput of `GET /v1/whoami` with a valid key, against a bare axum "ok" server, in the same run.
# Each server runs pinned to CPU 0, wrk (-t1 -c32, keep-alive, loopback) pinned to CPU 1.
#
#   bench/http.sh            # 10 s per run, 3 runs each, alternating
#   DURATION=30s RUNS=5 bench/http.sh
#   BACKEND=postgres bench/http.sh   # atna on PostgreSQL (a fresh database atna_bench on PG_SERVER, dropped after)
#   ENDPOINT=/v1/forward-auth bench/http.sh   # the gateway's sub-request instead of whoami
#   KEY_FLAGS='--allow-ip 127.0.0.1 --rate-limit 1000000/1s' ENDPOINT=/v1/forward-auth bench/http.sh   # with rules
#
# Needs: wrk and taskset (Debian: apt-get install wrk util-linux). Only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
ENDPOINT=${ENDPOINT:-/v1/whoami}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q -p atna
cargo build --release -q -p atna-server --example bare
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export ATNA_DATA_DIR=$work/data ATNA_LOG=warn
if [ "${BACKEND:-sqlite}" = postgres ]; then
  PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432/postgres}
  psql "$PG_SERVER" -q -c "DROP DATABASE IF EXISTS atna_bench WITH (FORCE)" -c "CREATE DATABASE atna_bench"
  export ATNA_DATABASE_URL=${PG_SERVER%/*}/atna_bench
  cleanup() {
    kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"
    psql "$PG_SERVER" -q -c "DROP DATABASE IF EXISTS atna_bench WITH (FORCE)"
  }
fi
echo "backend: ${BACKEND:-sqlite}"
echo "bench-password" | target/release/atna user create --email bench@example.com --password-stdin >/dev/null
# KEY_FLAGS: rules for the key, e.g. KEY_FLAGS='--allow-ip 127.0.0.1 --rate-limit 1000000/1s' (a limit no run reaches).
# shellcheck disable=SC2086
KEY=$(target/release/atna key create --user bench@example.com --name "bench-$(date +%d_%m_%Y-%H_%M)" ${KEY_FLAGS:-} --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

wait_up() { # poll with a deadline, no fixed sleep
  for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "server at $1 did not come up" >&2; exit 1
}
taskset -c 0 target/release/atna serve --listen 127.0.0.1:18181 >"$work/atna.log" 2>&1 &
atna_pid=$!
taskset -c 0 target/release/examples/bare 127.0.0.1:18182 >"$work/bare.log" 2>&1 &
bare_pid=$!
wait_up http://127.0.0.1:18181/healthz
wait_up http://127.0.0.1:18182/
curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:18181$ENDPOINT" >/dev/null || { echo "$ENDPOINT failed" >&2; exit 1; }

# Both servers get the same request (the bare one ignores the header), so the difference is atna's work alone.
# Besides requests/s, report the server's CPU time per request (from /proc, in µs): it depends far less on what else
# the machine is doing than throughput does.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # pid url -> "rps cpu_us_per_req"
  local pid=$1 url=$2 before after out rps reqs
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c32 -d"$DURATION" -H "Authorization: Bearer $KEY" "$url")
  after=$(cpu_ticks "$pid")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$rps $(echo "($after - $before) * 1000000 / $(getconf CLK_TCK) / $reqs" | bc -l)"
}
echo "endpoint: $ENDPOINT (\"atna\" columns)"
echo "run  bare_rps  atna_rps    ratio   bare_cpu_us/req  atna_cpu_us/req"
bare_sum=0; who_sum=0; bare_cpu=0; who_cpu=0
for i in $(seq 1 "$RUNS"); do
  read -r b bc_ < <(run "$bare_pid" http://127.0.0.1:18182/)
  read -r w wc_ < <(run "$atna_pid" "http://127.0.0.1:18181$ENDPOINT")
  printf '%-4s %-9s %-11s %.3f   %-16.2f %.2f\n' "$i" "$b" "$w" "$(echo "$w / $b" | bc -l)" "$bc_" "$wc_"
  bare_sum=$(echo "$bare_sum + $b" | bc -l); who_sum=$(echo "$who_sum + $w" | bc -l)
  bare_cpu=$(echo "$bare_cpu + $bc_" | bc -l); who_cpu=$(echo "$who_cpu + $wc_" | bc -l)
done
printf 'mean: bare %.0f rps, atna %.0f rps, atna/bare = %.3f; CPU per request: bare %.2f us, atna %.2f us (bare/atna = %.3f)\n' \
  "$(echo "$bare_sum / $RUNS" | bc -l)" "$(echo "$who_sum / $RUNS" | bc -l)" "$(echo "$who_sum / $bare_sum" | bc -l)" \
  "$(echo "$bare_cpu / $RUNS" | bc -l)" "$(echo "$who_cpu / $RUNS" | bc -l)" "$(echo "$bare_cpu / $who_cpu" | bc -l)"
