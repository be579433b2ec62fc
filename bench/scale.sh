#!/usr/bin/env bash
# atna at scale (issue 12 §3): loads KEYS keys into one installation (one user of which has 100,000), then measures
# in process with the real verifier against the real store: a hot working set of 100,000 keys (p50/p99 at KEYS keys
# against a 1,000-key installation), verifies spread uniformly over all keys (cache misses: latency, throughput),
# memory per cached key, start-up time and database size; then that user's My API Keys (first page, a page deep by
# cursor, searches) and GET /v1/keys the same, through the real server on loopback. Prints how long loading took.
#
#   bench/scale.sh                          # short mode: 100,000 keys, SQLite
#   MODE=long bench/scale.sh                # 10,000,000 keys
#   BACKEND=postgres bench/scale.sh         # PostgreSQL (database atna_bench_scale on PG_SERVER); BACKEND=both
#   KEYS=1000000 bench/scale.sh             # any size
#   KEEP=1 bench/scale.sh                   # keep the loaded database: the next run with the same KEYS reuses it
#
# The loaded data is deterministic (key i's ID and secret derive from i), so a kept database is valid for a rerun.
# Before loading, the free disk space is checked against an estimate of the bytes per key measured here (SQLite
# ~325, PostgreSQL ~445, with room for the WAL while loading): the run is skipped, with a message, when it is short.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-short}
if [ "$MODE" = long ]; then KEYS=${KEYS:-10000000}; else KEYS=${KEYS:-100000}; fi
BACKEND=${BACKEND:-sqlite}
PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432/postgres}
export SCALE_DIR=${SCALE_DIR:-${TMPDIR:-/tmp}}
cargo build --release -q -p atna-server --example scale
bin=${CARGO_TARGET_DIR:-target}/release/examples/scale

# Free bytes where a backend keeps its data, and whether KEYS keys fit (bytes per key × 2 for the WAL and headroom).
fits() { # fits NAME DIR BYTES_PER_KEY
  local free need
  free=$(df -B1 --output=avail "$2" | tail -1)
  need=$((KEYS * $3 * 2))
  if [ "$free" -lt "$need" ]; then
    echo "== $1: skipped: $KEYS keys need about $((need / 1000000)) MB free in $2, only $((free / 1000000)) MB are" >&2
    return 1
  fi
}

run_sqlite() {
  fits SQLite "$SCALE_DIR" 325 || return 0
  env -u ATNA_BENCH_POSTGRES_URL ATNA_LOG=warn KEYS="$KEYS" "$bin"
  [ -n "${KEEP:-}" ] || rm -f "$SCALE_DIR"/atna-scale-*.db*
}

run_postgres() {
  local datadir
  datadir=$(psql "$PG_SERVER" -Atc "SHOW data_directory" 2>/dev/null || echo /)
  [ -d "$datadir" ] || datadir=/
  fits PostgreSQL "$datadir" 450 || return 0
  if [ -z "$(psql "$PG_SERVER" -Atc "SELECT 1 FROM pg_database WHERE datname = 'atna_bench_scale'")" ]; then
    psql "$PG_SERVER" -q -c "CREATE DATABASE atna_bench_scale"
  fi
  ATNA_LOG=warn KEYS="$KEYS" ATNA_BENCH_POSTGRES_URL="${PG_SERVER%/*}/atna_bench_scale" "$bin"
  [ -n "${KEEP:-}" ] || psql "$PG_SERVER" -q -c "DROP DATABASE IF EXISTS atna_bench_scale WITH (FORCE)"
}

case "$BACKEND" in
  sqlite) run_sqlite ;;
  postgres) run_postgres ;;
  both) run_sqlite; run_postgres ;;
  *) echo "BACKEND is sqlite, postgres or both" >&2; exit 2 ;;
esac
