#!/usr/bin/env bash
# Usage buckets at scale: one user with 100,000 keys, each active every hour of one day. Prints the bytes the buckets
# take per key per day (and at the default retention), how long one usage flush of all those keys takes, and how long
# My API Keys (sparklines included) and a key page take to render. SQLite by default; PostgreSQL as well when
# ATNA_BENCH_POSTGRES_URL names a server (a fresh schema is made in its database).
#
#   bench/usage-storage.sh                     # needs the sqlite3 shell (for dbstat)
#   KEYS=10000 bench/usage-storage.sh          # fewer keys
#   ATNA_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres bench/usage-storage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:---release}
cargo build $profile -q -p atna-server --example usage_scale
dir=${CARGO_TARGET_DIR:-target}/$([ "$profile" = --release ] && echo release || echo debug)/examples
pg=${ATNA_BENCH_POSTGRES_URL:-}
echo "== SQLite"
env -u ATNA_BENCH_POSTGRES_URL ATNA_LOG=warn "$dir/usage_scale"
if [ -n "$pg" ]; then
  echo "== PostgreSQL"
  ATNA_BENCH_POSTGRES_URL=$pg ATNA_TEST_POSTGRES_URL=$pg "$dir/usage_scale"
fi
