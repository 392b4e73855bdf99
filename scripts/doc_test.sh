#!/usr/bin/env bash
# The README's SQL blocks run as written, in order, on the demo data: a fresh database
# loaded by examples/setup.sql (what ./scripts/demo.sh loads) on the preloaded cluster
# dc_test (port 5498), then scripts/doc_test.py over README.md (expected outputs
# `-- => x` checked; blocks marked `<!-- doc-test: skip (...) -->` not run).
# Usage: scripts/doc_test.sh [FILE.md]   (default README.md; uses the installed build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pg.sh
PORT=${DC_TEST_PORT:-5498}
DOC=${1:-README.md}
pg_cluster_up dc_test "$PORT"
psql_() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h localhost -p "$PORT" "$@"; }
psql_ -d postgres -c "DROP DATABASE IF EXISTS dc_doctest WITH (FORCE)" -c "CREATE DATABASE dc_doctest"
psql_ -d dc_doctest -f examples/setup.sql >/dev/null
# a copy the postgres user can read, wherever the checkout is
tmp=$(mktemp /tmp/doc_test.XXXXXX.md); chmod 644 "$tmp"; cp "$DOC" "$tmp"
trap 'rm -f "$tmp"; psql_ -d postgres -c "DROP DATABASE IF EXISTS dc_doctest WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
/usr/bin/python3 scripts/doc_test.py "$tmp" -- runuser -u postgres -- psql -h localhost -p "$PORT" -d dc_doctest \
  | sed "s|$tmp|$DOC|g"
