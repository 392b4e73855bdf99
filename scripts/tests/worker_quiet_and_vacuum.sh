#!/usr/bin/env bash
# The compaction worker on a live preloaded server, from a fresh cluster (the #[pg_test]
# layer cannot see it: its transactions roll back). Checks: no warnings while the
# extension is not installed; once it is, adds are folded exactly (against a ledger) and
# the worker vacuums counter_pending itself (vacuum() has a different form on 15 and 18),
# also after rows that counter_compact() calls folded.
# Cluster dc_worker (port 5560), made afresh on every run; PG_MAJOR picks the version.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/pg.sh
CLUSTER=dc_worker
PORT=5560
say() { printf '\033[1;34m[worker]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[worker] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
trap 'pg_cluster_stop $CLUSTER' EXIT
pg_cluster_stop "$CLUSTER"
rm -rf "$(pg_cluster_dir "$CLUSTER")"
pg_cluster_up "$CLUSTER" "$PORT" "distributed_counter.compact_interval = 100"
LOG=$(pg_cluster_log "$CLUSTER")
q() { (cd / && runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -d postgres "$@"); }

for _ in $(seq 1 50); do
  [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'")" = 1 ] && break
  sleep 0.2
done
[ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'")" = 1 ] \
  || fail "no compactor in pg_stat_activity"
sleep 1  # about ten passes without the extension
! grep -q "WARNING" "$LOG" || { grep WARNING "$LOG" | head -3; fail "the worker warns while the extension is not installed"; }
say "ok: $(q -c "SELECT version()" | cut -d' ' -f1-2): the worker runs, quietly, before the extension exists"

q -c "CREATE EXTENSION distributed_counter" -c "SELECT counter_create('v', 16)" \
  -c "CREATE TABLE ledger (key text, delta int8)" >/dev/null
q -c "WITH adds AS (SELECT 'k' || (i % 10) AS key, (i % 7)::int8 AS delta FROM generate_series(1, 60000) i)
      INSERT INTO ledger SELECT key, delta FROM adds WHERE counter_add('v', key, delta)" >/dev/null
for _ in $(seq 1 100); do
  [ "$(q -c "SELECT count(*) FROM counter_pending")" = 0 ] && [ "$(q -c "SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname = 'counter_pending'")" -gt 0 ] && break
  sleep 0.2
done
[ "$(q -c "SELECT count(*) FROM counter_pending")" = 0 ] || fail "the worker did not fold the pending rows"
bad=$(q -c "SELECT count(*) FROM (SELECT key, sum(delta) s FROM ledger GROUP BY key) l WHERE counter_value('v', l.key) <> l.s")
[ "$bad" = 0 ] || fail "$bad keys differ from the ledger"
vacuums=$(q -c "SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname = 'counter_pending'")
[ "$vacuums" -gt 0 ] || fail "the worker did not vacuum counter_pending after folding 60,000 rows"
! grep -q "WARNING" "$LOG" || { grep WARNING "$LOG" | head -3; fail "warnings in the server log"; }
say "ok: 60,000 adds folded exactly (10 keys against a ledger); the worker vacuumed counter_pending ($vacuums)"

# Rows folded by counter_compact() calls, not by the worker (added and folded in one
# transaction, so the worker never sees them pending): the worker still vacuums, from
# the dead rows the statistics count, so manual compaction leaves storage bounded.
sleep 11  # the shortest gap between two vacuums started by the statistics
before=$(q -c "SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname = 'counter_pending'")
q -c "BEGIN" -c "SELECT count(*) FROM (SELECT counter_add('v', 'm' || (i % 10), 1) FROM generate_series(1, 60000) i) s" \
  -c "SELECT counter_compact()" -c "COMMIT" >/dev/null
for _ in $(seq 1 150); do
  [ "$(q -c "SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname = 'counter_pending'")" -gt "$before" ] && break
  sleep 0.2
done
after=$(q -c "SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname = 'counter_pending'")
[ "$after" -gt "$before" ] || fail "60,000 rows folded by counter_compact() left counter_pending unvacuumed"
check=$(q -c "SELECT sum(counter_value('v', 'm' || i)) FROM generate_series(0, 9) i")
[ "$check" = 60000 ] || fail "the manually compacted adds sum to $check, not 60000"
say "ok: 60,000 rows folded by counter_compact() in the adding transaction: the worker vacuumed counter_pending from the statistics ($before -> $after)"
