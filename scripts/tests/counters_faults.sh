#!/usr/bin/env bash
# Sharded-counter guarantees under faults, in rounds: 16 clients add (each add in the
# same transaction as a ledger row) while two sessions call counter_compact() in a loop,
# racing the worker; mid-round a fault hits: kill -9 of the worker, an immediate
# shutdown, or kill -9 of a backend inside counter_compact(). After every round every
# key must equal its ledger count exactly, and the worker must be back.
# Cluster dc_test (port 5498, preloaded); loopback only; ~1-2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/pg.sh
PORT=${DC_TEST_PORT:-5498}
CLUSTER=dc_test
BIN=$PG_BIN
pg_cluster_up "$CLUSTER" "$PORT"
WORK=$(mktemp -d /tmp/counters_faults.XXXXXX); chmod 755 "$WORK"
q() { PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -U postgres -d cf_faults -c "$1"; }
say() { printf '\033[1;34m[faults]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[faults] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
wait_ready() { for _ in $(seq 1 120); do q "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.5; done; fail "server did not come back"; }
worker_pid() { q "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor' AND datname = 'cf_faults'" 2>/dev/null || echo 0; }
cleanup() {
  set +e
  jobs -p | xargs -r kill 2>/dev/null; wait 2>/dev/null
  "$BIN/psql" -X -q -h localhost -p "$PORT" -U postgres -d postgres -c "ALTER SYSTEM RESET distributed_counter.database" \
    -c "ALTER SYSTEM RESET distributed_counter.compact_interval" >/dev/null 2>&1
  pg_cluster_ctl "$CLUSTER" restart >/dev/null 2>&1
  "$BIN/psql" -X -q -h localhost -p "$PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS cf_faults WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
P() { "$BIN/psql" -X -q -At -h localhost -p "$PORT" -U postgres -d postgres -c "$1"; }
P "DROP DATABASE IF EXISTS cf_faults WITH (FORCE)" >/dev/null
P "CREATE DATABASE cf_faults" >/dev/null
# the worker serves this database, compacting every 20 ms
P "ALTER SYSTEM SET distributed_counter.database = 'cf_faults'" >/dev/null
P "ALTER SYSTEM SET distributed_counter.compact_interval = 20" >/dev/null
q "CREATE EXTENSION distributed_counter" >/dev/null
pg_cluster_ctl "$CLUSTER" restart
wait_ready
q "SELECT counter_create('cf', 16)" >/dev/null
q "CREATE TABLE cf_ledger (id bigserial PRIMARY KEY, key text NOT NULL)"
cat > "$WORK/add.sql" <<'SQL'
\set k random(1, 20)
BEGIN;
SELECT counter_add('cf', 'k' || :k, 1);
INSERT INTO cf_ledger (key) VALUES ('k' || :k);
COMMIT;
SQL
check_round() {
  local bad total
  bad=$(q "SELECT count(*) FROM (SELECT 'k' || i AS key FROM generate_series(1, 20) i) k
           WHERE counter_value('cf', k.key) <> (SELECT count(*) FROM cf_ledger l WHERE l.key = k.key)")
  total=$(q "SELECT count(*) FROM cf_ledger")
  [ "$total" -gt 0 ] || fail "$1: empty ledger"
  [ "$bad" == 0 ] || fail "$1: $bad keys differ from the ledger"
  say "ok: $1: all 20 keys equal the ledger ($total committed adds, $(q "SELECT pending_rows FROM counter_stats WHERE name = 'cf'") pending)"
}
racer() {  # counter_compact() in a loop, racing the worker (errors from faults are expected;
  # a deadlock is not: compactions take one lock, one at a time)
  for _ in $(seq 1 400); do q "SELECT counter_compact('cf')" >/dev/null 2>>"$WORK/racer.err" || sleep 0.2; done
}
for round in 1 2 3 4 5 6; do
  fault=$(( (round - 1) % 3 ))
  timeout 60 "$BIN/pgbench" -h localhost -p "$PORT" -U postgres -n -c 16 -j 2 -T 8 -f "$WORK/add.sql" cf_faults \
    > "$WORK/pgbench.$round" 2>&1 & b=$!
  racer & r1=$!; racer & r2=$!
  sleep 3
  case $fault in
    0) w=$(worker_pid); [ "$w" != 0 ] || fail "round $round: no worker"
       say "round $round: kill -9 of the worker (pid $w) while adds and counter_compact() race it"
       kill -9 "$w" 2>/dev/null || say "(pid $w had just exited)" ;;
    1) say "round $round: immediate shutdown while adds and counter_compact() race the worker"
       pg_cluster_ctl "$CLUSTER" stop -m immediate
       sleep 1
       pg_cluster_ctl "$CLUSTER" start ;;
    2) c=0
       for _ in $(seq 1 300); do
         c=$(q "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE query LIKE 'SELECT counter_compact(%' AND state = 'active' AND pid <> pg_backend_pid()")
         [ "$c" != 0 ] && break
       done
       say "round $round: kill -9 of a backend inside counter_compact() (pid $c)"
       if [ "$c" != 0 ]; then kill -9 "$c" 2>/dev/null || say "(pid $c had just finished)"; else say "(never caught one active: killing the worker instead)"; kill -9 "$(worker_pid)" 2>/dev/null || true; fi ;;
  esac
  wait $b || true; kill $r1 $r2 2>/dev/null || true; wait $r1 $r2 2>/dev/null || true
  wait_ready
  check_round "round $round, right after the fault"
  q "SELECT counter_compact('cf')" >/dev/null
  check_round "round $round, after counter_compact()"
  for _ in $(seq 1 60); do [ "$(worker_pid)" != 0 ] && break; sleep 0.5; done
  [ "$(worker_pid)" != 0 ] || fail "round $round: the worker did not come back"
done
say "all fault rounds exact"
deadlocks=$(grep -c "deadlock detected" "$WORK/racer.err" || true)
[ "$deadlocks" = 0 ] || fail "counter_compact() deadlocked with another compaction $deadlocks times"
say "ok: no counter_compact() deadlocked with the worker or the other racer"

# The worker vacuums counter_pending itself after folding 50,000 rows (autovacuum would
# wait up to a naptime): a burst of 60,000 adds in one transaction, folded by the worker.
q "SELECT counter_create('cf_vac', 16)" >/dev/null
before=$(q "SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname = 'counter_pending'")
q "SELECT count(counter_add('cf_vac', 'k' || (i % 10))) FROM generate_series(1, 60000) i" >/dev/null
vacuumed=0
for _ in $(seq 1 120); do
  after=$(q "SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables WHERE relname = 'counter_pending'")
  [ "$after" -gt "$before" ] && { vacuumed=1; break; }
  sleep 0.5
done
[ "$vacuumed" == 1 ] || fail "the worker did not vacuum counter_pending after folding 60,000 rows"
[ "$(q "SELECT sum(value) FROM counter_values('cf_vac', ARRAY(SELECT 'k' || i FROM generate_series(0, 9) i))")" == 60000 ] \
  || fail "cf_vac: not 60000 after the worker's vacuum"
say "ok: the worker vacuumed counter_pending (vacuum_count $before -> $after); cf_vac exact (60000)"
