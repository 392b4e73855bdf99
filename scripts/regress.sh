#!/usr/bin/env bash
# Runs pg_test/sql/*.sql with pg_regress against cluster 'dc_test' (port 5498), which
# preloads the extension (the worker runs). Expects the extension to be installed in
# the Debian PostgreSQL 15 (cargo pgrx test / cargo pgrx install do that).
# Usage: scripts/regress.sh [test names...]
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${DC_TEST_PORT:-5498}
./scripts/cluster.sh dc_test "$PORT"
PGXS=$(/usr/lib/postgresql/15/bin/pg_config --pgxs)
PG_REGRESS=$(dirname "$PGXS")/../test/regress/pg_regress
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  mapfile -t tests < <(ls pg_test/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | sort)
fi
out=/var/tmp/distributed_counter-regress
rm -rf "$out"; install -d -o postgres -g postgres "$out"
cp -r pg_test "$out/in"; chown -R postgres:postgres "$out/in"
# --use-existing leaves database creation to us: a fresh one per run.
runuser -u postgres -- psql -X -q -h localhost -p "$PORT" -d postgres \
  -c "DROP DATABASE IF EXISTS dc_regress WITH (FORCE)" -c "CREATE DATABASE dc_regress"
set +e
runuser -u postgres -- env PGHOST=localhost "$PG_REGRESS" --use-existing --host=localhost --port="$PORT" \
  --inputdir="$out/in" --outputdir="$out" --bindir=/usr/lib/postgresql/15/bin \
  --dbname=dc_regress "${tests[@]}"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  [ -f "$out/regression.diffs" ] && head -200 "$out/regression.diffs"
  exit $rc
fi
