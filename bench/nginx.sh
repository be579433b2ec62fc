#!/usr/bin/env bash
# What atna's forward-auth costs behind nginx: wrk through nginx with `auth_request` to atna (deploy/nginx/atna.conf,
# as shipped) against the same nginx proxying without auth, both to the same tiny upstream (an nginx server block
# that answers `return 200`). nginx (one worker) and atna run pinned to CPU 0, wrk (-t1 -c32, keep-alive, loopback)
# to CPU 1, as in bench/http.sh.
#
#   bench/nginx.sh                      # 10 s per run, 3 runs each, alternating
#   DURATION=30s RUNS=5 bench/nginx.sh
#
# Needs: nginx, wrk and taskset (Debian: apt-get install nginx wrk util-linux). Only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "$tool is missing: apt-get install -y nginx wrk util-linux" >&2; exit 1; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q -p atna
atna_bin=${CARGO_TARGET_DIR:-target}/release/atna
work=$(mktemp -d)
chmod 755 "$work" # nginx started as root runs its worker as nobody
cleanup() {
  [ -f "$work/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT

ATNA_PORT=18191 UPSTREAM_PORT=18192 AUTH_PORT=18193 PLAIN_PORT=18194
export ATNA_DATA_DIR=$work/data ATNA_LOG=warn
echo "bench-password" | "$atna_bin" user create --email bench@example.com --password-stdin >/dev/null
KEY=$("$atna_bin" key create --user bench@example.com --name "bench-$(date +%d_%m_%Y-%H_%M)" --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

# The shipped config with its placeholders filled in, plus the plain proxy and the upstream.
sed -e "s/\${ATNA_ADDR}/127.0.0.1:$ATNA_PORT/; s/\${UPSTREAM_ADDR}/127.0.0.1:$UPSTREAM_PORT/" \
    -e "s/\${LISTEN_PORT}/127.0.0.1:$AUTH_PORT/" deploy/nginx/atna.conf >"$work/atna.conf"
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
    include $work/atna.conf;
    server {
        listen 127.0.0.1:$PLAIN_PORT;
        location / {
            proxy_pass http://protected_service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / { return 200 "ok\n"; }
    }
}
CONF

wait_up() { # poll with a deadline, no fixed sleep
  for _ in $(seq 1 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = "$2" ] && return 0; sleep 0.05; done
  echo "server at $1 did not answer $2" >&2; exit 1
}
taskset -c 0 "$atna_bin" serve --listen "127.0.0.1:$ATNA_PORT" >"$work/atna.log" 2>&1 &
atna_pid=$!
taskset -c 0 "$nginx_bin" -p "$work" -c "$work/nginx.conf" -e "$work/error.log" &
wait_up "http://127.0.0.1:$ATNA_PORT/healthz" 200
wait_up "http://127.0.0.1:$PLAIN_PORT/" 200
wait_up "http://127.0.0.1:$AUTH_PORT/" 401
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "http://127.0.0.1:$AUTH_PORT/")" = 200 ] ||
  { echo "a good key was not let through" >&2; exit 1; }

# Besides requests/s, the CPU time nginx and atna spent per request (from /proc, in µs): it depends far less on what
# else the machine is doing than throughput does.
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
nginx_ticks() { ticks "$(cat "$work/nginx.pid")" $(pgrep -P "$(cat "$work/nginx.pid")"); }
per_req() { echo "$1 * 1000000 / $(getconf CLK_TCK) / $2" | bc -l; }
run() { # url -> "rps p50 p99 nginx_us atna_us" (CPU per request)
  local out n0 a0 n1 a1 reqs
  n0=$(nginx_ticks); a0=$(ticks "$atna_pid")
  out=$(taskset -c 1 wrk -t1 -c32 -d"$DURATION" --latency -H "Authorization: Bearer $KEY" "$1")
  n1=$(nginx_ticks); a1=$(ticks "$atna_pid")
  grep -q 'Non-2xx' <<<"$out" && { echo "non-2xx answers during the run:" >&2; echo "$out" >&2; exit 1; }
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "99%" {print $2}' <<<"$out") $(per_req $((n1 - n0)) "$reqs") $(per_req $((a1 - a0)) "$reqs")"
}
echo "run  plain_rps  auth_rps   auth/plain  plain_p50  auth_p50  plain_p99  auth_p99  CPU us/req: plain(nginx)  auth(nginx+atna)"
plain_sum=0; auth_sum=0; plain_cpu=0; auth_ngx=0; auth_atna=0
for i in $(seq 1 "$RUNS"); do
  read -r p p50 p99 pn _ < <(run "http://127.0.0.1:$PLAIN_PORT/")
  read -r a a50 a99 an aa < <(run "http://127.0.0.1:$AUTH_PORT/")
  printf '%-4s %-10s %-10s %-11.3f %-10s %-9s %-10s %-9s %-23.2f %.2f+%.2f\n' \
    "$i" "$p" "$a" "$(echo "$a / $p" | bc -l)" "$p50" "$a50" "$p99" "$a99" "$pn" "$an" "$aa"
  plain_sum=$(echo "$plain_sum + $p" | bc -l); auth_sum=$(echo "$auth_sum + $a" | bc -l)
  plain_cpu=$(echo "$plain_cpu + $pn" | bc -l); auth_ngx=$(echo "$auth_ngx + $an" | bc -l)
  auth_atna=$(echo "$auth_atna + $aa" | bc -l)
done
printf 'mean: nginx proxy_pass %.0f rps, with atna auth_request %.0f rps, auth/plain = %.3f\n' \
  "$(echo "$plain_sum / $RUNS" | bc -l)" "$(echo "$auth_sum / $RUNS" | bc -l)" "$(echo "$auth_sum / $plain_sum" | bc -l)"
printf 'CPU per request: plain nginx %.2f us; with auth nginx %.2f us + atna %.2f us\n' \
  "$(echo "$plain_cpu / $RUNS" | bc -l)" "$(echo "$auth_ngx / $RUNS" | bc -l)" "$(echo "$auth_atna / $RUNS" | bc -l)"
