#!/usr/bin/env bash
# Instructions per request for `GET /v1/whoami` (valid key) and for a bare axum "ok" handler, counted by
# valgrind's callgrind: repeatable whatever else the machine is doing, unlike requests/s.
# Each server is measured twice (N1 and N2 requests over one keep-alive connection); the difference divided by
# N2 - N1 is the cost of one request, free of start-up and shutdown.
#
#   bench/instructions.sh          # needs valgrind and python3
#   ATNA_BIN=/tmp/atna-before bench/instructions.sh   # a given atna binary
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-500}
N2=${N2:-2500}
# ATNA_BIN / BARE_BIN measure given binaries (e.g. two builds to compare) instead of building this tree's.
if [ -z "${ATNA_BIN:-}" ]; then cargo build --release -q -p atna; fi
if [ -z "${BARE_BIN:-}" ]; then cargo build --release -q -p atna-server --example bare; fi
ATNA_BIN=${ATNA_BIN:-${CARGO_TARGET_DIR:-target}/release/atna}
BARE_BIN=${BARE_BIN:-${CARGO_TARGET_DIR:-target}/release/examples/bare}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
export ATNA_DATA_DIR=$work/data ATNA_LOG=warn
echo "bench-password" | $ATNA_BIN user create --email bench@example.com --password-stdin >/dev/null
KEY=$($ATNA_BIN key create --user bench@example.com --name bench --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

client() { # port path n
  python3 - "$@" <<'PY'
import http.client, sys, time
port, path, n, key = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
deadline = time.time() + 120
while True:  # poll until the server (slow under valgrind) answers
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30); c.request("GET", "/healthz" if path != "/" else "/"); c.getresponse().read(); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.2)
for _ in range(n):
    c.request("GET", path, headers={"Authorization": "Bearer " + key})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}
measure() { # name n cmd...
  local name=$1 n=$2 port=$3 path=$4; shift 4
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.$n.out" "$@" >/dev/null 2>"$work/$name.$n.log" &
  local pid=$!
  client "$port" "$path" "$n" "$KEY"
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^summary:|^totals:/ {print $2; exit}' "$work/$name.$n.out"
}
per_request() { echo "($2 - $1) / ($N2 - $N1)" | bc; }
# The key is warmed into atna's cache by the first request of each run; both runs include that one miss.
a1=$(measure atna $N1 18191 /v1/whoami $ATNA_BIN serve --listen 127.0.0.1:18191)
a2=$(measure atna $N2 18191 /v1/whoami $ATNA_BIN serve --listen 127.0.0.1:18191)
b1=$(measure bare $N1 18192 / $BARE_BIN 127.0.0.1:18192)
b2=$(measure bare $N2 18192 / $BARE_BIN 127.0.0.1:18192)
a=$(per_request "$a1" "$a2"); b=$(per_request "$b1" "$b2")
echo "instructions per request: bare $b, whoami $a (bare/whoami = $(echo "scale=3; $b / $a" | bc))"
