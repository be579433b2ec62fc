#!/usr/bin/env bash
# Pages of the audit trail at one million events (the admin Activity view and GET /v1/audit): loads 1 000 000 events
# into a fresh database and times newest-first pages of 50, unfiltered, deep by cursor, and filtered by user, key,
# kind and time. Exits 1 when a page takes 100 ms or more.
#
#   bench/audit.sh                     # SQLite in a temporary directory
#   BACKEND=postgres bench/audit.sh    # a fresh database atna_bench_audit on PG_SERVER, dropped after
#   EVENTS=200000 bench/audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1000000}
cargo build --release -q -p atna-server --example audit_pages
bin=${CARGO_TARGET_DIR:-target}/release/examples/audit_pages
if [ "${BACKEND:-sqlite}" = postgres ]; then
  PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432/postgres}
  psql "$PG_SERVER" -q -c "DROP DATABASE IF EXISTS atna_bench_audit WITH (FORCE)" -c "CREATE DATABASE atna_bench_audit"
  trap 'psql "$PG_SERVER" -q -c "DROP DATABASE IF EXISTS atna_bench_audit WITH (FORCE)"' EXIT
  "$bin" "${PG_SERVER%/*}/atna_bench_audit" "$EVENTS"
else
  "$bin" "" "$EVENTS"
fi
