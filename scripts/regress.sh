#!/usr/bin/env bash
# Runs pg_test/sql/*.sql with pg_regress against cluster 'dc_test' (port 5498), which
# preloads the extension (the worker runs). Expects the extension to be installed in the
# chosen PostgreSQL (PG_MAJOR, scripts/lib/pg.sh; cargo pgrx test / install do that).
# Usage: [PG_MAJOR=15|18] scripts/regress.sh [test names...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pg.sh
PORT=${DC_TEST_PORT:-5498}
pg_cluster_up dc_test "$PORT"
PGXS=$("$PG_CONFIG" --pgxs)
PG_REGRESS=$(dirname "$PGXS")/../test/regress/pg_regress
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  mapfile -t tests < <(ls pg_test/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | sort)
  # postgresql-hll comes from Debian's postgresql-15-hll; there is none for 18.
  if [ ! -f "$("$PG_CONFIG" --sharedir)/extension/hll.control" ]; then
    echo "regress: hll_beside_postgresql_hll skipped (postgresql-hll is not installed for PostgreSQL $PG_MAJOR)"
    mapfile -t tests < <(printf '%s\n' "${tests[@]}" | grep -vx hll_beside_postgresql_hll)
  fi
fi
out=/var/tmp/distributed_counter-regress-pg$PG_MAJOR
rm -rf "$out"; install -d -o postgres -g postgres "$out"
# The COPY and dump files that pg_test/sql/{hll,sketches}.sql write and read back (by
# this fixed path, which their expected output prints): made here, so a new machine has it.
files=/var/tmp/distributed_counter-regress
rm -rf "$files"; install -d -o postgres -g postgres "$files"
cp -r pg_test "$out/in"; chown -R postgres:postgres "$out/in"
# --use-existing leaves database creation to us: a fresh one per run.
runuser -u postgres -- psql -X -q -h localhost -p "$PORT" -d postgres \
  -c "DROP DATABASE IF EXISTS dc_regress WITH (FORCE)" -c "CREATE DATABASE dc_regress"
set +e
runuser -u postgres -- env PGHOST=localhost "$PG_REGRESS" --use-existing --host=localhost --port="$PORT" \
  --inputdir="$out/in" --outputdir="$out" --bindir="$PG_BIN" \
  --dbname=dc_regress "${tests[@]}"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  [ -f "$out/regression.diffs" ] && head -200 "$out/regression.diffs"
  exit $rc
fi
