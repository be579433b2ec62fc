#!/usr/bin/env bash
# HTTP throughput of `GET /v1/whoami` with a valid key, against a bare axum "ok" server, in the same run.
# Each server runs pinned to CPU 0, wrk (-t1 -c32, keep-alive, loopback) pinned to CPU 1.
#
#   bench/http.sh            # 10 s per run, 3 runs each, alternating
#   DURATION=30s RUNS=5 bench/http.sh
#
# Needs: wrk and taskset (Debian: apt-get install wrk util-linux). Only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q -p atna -p atna-server --example bare
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export ATNA_DATA_DIR=$work/data ATNA_LOG=warn
echo "bench-password" | target/release/atna user create --email bench@example.com --password-stdin >/dev/null
KEY=$(target/release/atna key create --user bench@example.com --name "bench-$(date +%d_%m_%Y-%H_%M)" --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

wait_up() { # poll with a deadline, no fixed sleep
  for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "server at $1 did not come up" >&2; exit 1
}
taskset -c 0 target/release/atna serve --listen 127.0.0.1:18181 >"$work/atna.log" 2>&1 &
taskset -c 0 target/release/examples/bare 127.0.0.1:18182 >"$work/bare.log" 2>&1 &
wait_up http://127.0.0.1:18181/healthz
wait_up http://127.0.0.1:18182/
curl -sf -H "Authorization: Bearer $KEY" http://127.0.0.1:18181/v1/whoami >/dev/null || { echo "whoami failed" >&2; exit 1; }

rps() { taskset -c 1 wrk -t1 -c32 -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
echo "run  bare_rps  whoami_rps  ratio"
bare_sum=0; who_sum=0
for i in $(seq 1 "$RUNS"); do
  b=$(rps http://127.0.0.1:18182/)
  w=$(rps -H "Authorization: Bearer $KEY" http://127.0.0.1:18181/v1/whoami)
  printf '%-4s %-9s %-11s %.3f\n' "$i" "$b" "$w" "$(echo "$w / $b" | bc -l)"
  bare_sum=$(echo "$bare_sum + $b" | bc -l); who_sum=$(echo "$who_sum + $w" | bc -l)
done
printf 'mean bare %.0f rps, whoami %.0f rps, whoami/bare = %.3f\n' \
  "$(echo "$bare_sum / $RUNS" | bc -l)" "$(echo "$who_sum / $RUNS" | bc -l)" "$(echo "$who_sum / $bare_sum" | bc -l)"
