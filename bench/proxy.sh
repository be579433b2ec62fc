#!/usr/bin/env bash
# What atna's reverse-proxy mode costs: in the same run, wrk straight to a tiny upstream (an nginx `return 200`),
# wrk through `atna serve --upstream … --proxy-listen …` (key checked, identity headers set, pooled keep-alive
# connections to the upstream), and wrk through nginx `proxy_pass` with an upstream keep-alive pool (no key check).
# The upstream nginx, the proxy under test (nginx: one worker) and atna run pinned to CPU 0, wrk (-t1 -c32,
# keep-alive, loopback) to CPU 1, as in bench/nginx.sh.
#
#   bench/proxy.sh                      # 10 s per run, 3 runs each, alternating
#   DURATION=30s RUNS=5 bench/proxy.sh
#
# Needs: nginx, wrk, taskset, bc (Debian: apt-get install nginx wrk util-linux bc). Only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
for tool in nginx wrk taskset bc; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "$tool is missing: apt-get install -y nginx wrk util-linux bc" >&2; exit 1; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q -p atna
atna_bin=${CARGO_TARGET_DIR:-target}/release/atna
work=$(mktemp -d)
chmod 755 "$work" # nginx started as root runs its worker as nobody
cleanup() {
  for pid in "$work/up.pid" "$work/px.pid"; do [ -f "$pid" ] && kill -QUIT "$(cat "$pid")" 2>/dev/null || true; done
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT

ATNA_PORT=18291 UPSTREAM_PORT=18292 ATNA_PROXY_PORT=18293 NGINX_PROXY_PORT=18294
export ATNA_DATA_DIR=$work/data ATNA_LOG=warn
echo "bench-password" | "$atna_bin" user create --email bench@example.com --password-stdin >/dev/null
KEY=$("$atna_bin" key create --user bench@example.com --name "bench-$(date +%d_%m_%Y-%H_%M)" --scope api --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

nginx_conf() { # name, server block
  cat >"$work/$1.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/$1.pid;
error_log $work/$1-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/$1-body; proxy_temp_path $work/$1-proxy; fastcgi_temp_path $work/$1-fastcgi;
    uwsgi_temp_path $work/$1-uwsgi; scgi_temp_path $work/$1-scgi;
    $2
}
CONF
}
nginx_conf up "server { listen 127.0.0.1:$UPSTREAM_PORT; keepalive_requests 1000000; location / { return 200 \"ok\\n\"; } }"
nginx_conf px "upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; keepalive_requests 1000000; }
    server { listen 127.0.0.1:$NGINX_PROXY_PORT; keepalive_requests 1000000; location / {
        proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
cat >"$work/atna.toml" <<CONF
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
proxy_listen = "127.0.0.1:$ATNA_PROXY_PORT"
[[proxy.routes]]
path_prefix = "/"
scopes = ["api"]
CONF

wait_up() { # poll with a deadline, no fixed sleep
  for _ in $(seq 1 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "${@:3}" "$1" || true)" = "$2" ] && return 0; sleep 0.05; done
  echo "server at $1 did not answer $2: $(curl -s -i "${@:3}" "$1" 2>&1 | head -20)" >&2; cat "$work/atna.log" >&2; exit 1
}
taskset -c 0 "$nginx_bin" -p "$work" -c "$work/up.conf" -e "$work/up-error.log" &
taskset -c 0 "$nginx_bin" -p "$work" -c "$work/px.conf" -e "$work/px-error.log" &
taskset -c 0 "$atna_bin" serve --listen "127.0.0.1:$ATNA_PORT" --config "$work/atna.toml" >"$work/atna.log" 2>&1 &
atna_pid=$!
wait_up "http://127.0.0.1:$UPSTREAM_PORT/" 200
wait_up "http://127.0.0.1:$NGINX_PROXY_PORT/" 200
wait_up "http://127.0.0.1:$ATNA_PROXY_PORT/" 401
wait_up "http://127.0.0.1:$ATNA_PROXY_PORT/" 200 -H "Authorization: Bearer $KEY"

ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
proxy_pids() { # the process doing the proxying in a run: atna, or the proxy nginx's master and worker
  case $1 in atna) echo "$atna_pid" ;; nginx) echo "$(cat "$work/px.pid") $(pgrep -P "$(cat "$work/px.pid")")" ;; *) echo "" ;; esac
}
run() { # who url -> "rps p50 p99 us_per_req" (CPU time of the proxy per request; 0 for the direct run)
  local out t0 t1 reqs pids us
  pids=$(proxy_pids "$1")
  t0=$( [ -n "$pids" ] && ticks $pids || echo 0)
  out=$(taskset -c 1 wrk -t1 -c32 -d"$DURATION" --latency -H "Authorization: Bearer $KEY" "$2")
  t1=$( [ -n "$pids" ] && ticks $pids || echo 0)
  grep -q 'Non-2xx' <<<"$out" && { echo "non-2xx answers during the run:" >&2; echo "$out" >&2; exit 1; }
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  us=$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $reqs" | bc -l)
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "99%" {print $2}' <<<"$out") $us"
}
echo "run  direct_rps  atna_rps   nginx_rps  atna/nginx  p99: direct  atna      nginx     CPU us/req: atna  nginx"
d_sum=0; a_sum=0; n_sum=0; a_cpu=0; n_cpu=0
for i in $(seq 1 "$RUNS"); do
  read -r d _ d99 _ < <(run direct "http://127.0.0.1:$UPSTREAM_PORT/")
  read -r a _ a99 au < <(run atna "http://127.0.0.1:$ATNA_PROXY_PORT/")
  read -r n _ n99 nu < <(run nginx "http://127.0.0.1:$NGINX_PROXY_PORT/")
  printf '%-4s %-11s %-10s %-10s %-11.3f %-12s %-9s %-9s %-17.2f %.2f\n' \
    "$i" "$d" "$a" "$n" "$(echo "$a / $n" | bc -l)" "$d99" "$a99" "$n99" "$au" "$nu"
  d_sum=$(echo "$d_sum + $d" | bc -l); a_sum=$(echo "$a_sum + $a" | bc -l); n_sum=$(echo "$n_sum + $n" | bc -l)
  a_cpu=$(echo "$a_cpu + $au" | bc -l); n_cpu=$(echo "$n_cpu + $nu" | bc -l)
done
printf 'mean: direct %.0f rps, atna proxy %.0f rps, nginx proxy_pass %.0f rps; atna/nginx = %.3f\n' \
  "$(echo "$d_sum / $RUNS" | bc -l)" "$(echo "$a_sum / $RUNS" | bc -l)" "$(echo "$n_sum / $RUNS" | bc -l)" \
  "$(echo "$a_sum / $n_sum" | bc -l)"
printf 'proxy CPU per request: atna %.2f us, nginx %.2f us\n' "$(echo "$a_cpu / $RUNS" | bc -l)" "$(echo "$n_cpu / $RUNS" | bc -l)"
