#!/usr/bin/env bash
# The main job (README's first command): install what is missing, build the extension
# (release), start a cluster of our own ('dc_demo', port 5499, library preloaded so the
# compaction worker runs), install distributed_counter (schema dc), load sample page
# views, and run the SQL tour in examples/tour.sql; where postgresql-hll is installed
# (PostgreSQL 15), also install it (schema phll) and compare (examples/
# beside_postgresql_hll.sql). PostgreSQL 15 by default; PG_MAJOR=18 targets 18.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
./scripts/setup.sh
. scripts/lib/pg.sh
PORT=${DC_DEMO_PORT:-5499}
log() { printf '\033[1;34m[demo]\033[0m %s\n' "$*"; }

log "building and installing distributed_counter (release) into PostgreSQL $PG_MAJOR"
flock -o /tmp/distributed_counter.pg.lock \
  cargo pgrx install --release --no-default-features --features "pg$PG_MAJOR" --pg-config "$PG_CONFIG" \
  >/tmp/dc-install.log 2>&1 || { tail -30 /tmp/dc-install.log; exit 1; }

log "starting cluster dc_demo on port $PORT"
pg_cluster_up dc_demo "$PORT" "distributed_counter.database = 'dc_demo'"
psql_() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h localhost -p "$PORT" "$@"; }

log "creating the demo database with sample data"
psql_ -d postgres -c "DROP DATABASE IF EXISTS dc_demo WITH (FORCE)" -c "CREATE DATABASE dc_demo"
psql_ -d dc_demo -f examples/setup.sql
log "the SQL tour (examples/tour.sql)"
psql_ -d dc_demo -e -f examples/tour.sql
if [ -f "$("$PG_CONFIG" --sharedir)/extension/hll.control" ]; then
  log "beside postgresql-hll (examples/beside_postgresql_hll.sql)"
  psql_ -d dc_demo -c "CREATE SCHEMA phll" -c "CREATE EXTENSION hll SCHEMA phll"
  psql_ -d dc_demo -e -f examples/beside_postgresql_hll.sql
else
  log "postgresql-hll is not installed for PostgreSQL $PG_MAJOR: no side-by-side comparison"
fi
log "done. Connect with: runuser -u postgres -- psql -h localhost -p $PORT dc_demo"
