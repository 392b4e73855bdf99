#!/usr/bin/env bash
# Scenario test for sharded counters against the preloaded cluster dc_test (port 5498),
# with the compaction worker compacting throughout (compact_interval lowered via ALTER
# SYSTEM). Uses the build installed into the PostgreSQL of PG_MAJOR (scripts/lib/pg.sh;
# cargo pgrx test does that); run it under the install lock:
#   flock /tmp/distributed_counter.pg.lock scripts/tests/counters_concurrency.sh
# Checks: (a) exactness under many concurrent pgbench writers of one hot key and of
# many keys, with readers that must never see a counter go backwards; (b) crash safety:
# an immediate shutdown mid-load and a kill -9 of the worker mid-compaction, after which
# every key equals a ledger written in the same transactions, and the worker restarts;
# (c) rolled-back adds never count; plus concurrent request_id dedupe, SIGHUP
# (worker_enabled), SIGTERM, and an ERROR inside a pass not ending the worker.
# Loopback only, bounded in time (~2 min), cleans up, exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/pg.sh
PORT=${DC_TEST_PORT:-5498}
CLUSTER=dc_test
BIN=$PG_BIN
LOG=$(pg_cluster_log "$CLUSTER")
WORK=$(mktemp -d /tmp/counters_concurrency.XXXXXX)
chmod 755 "$WORK"
LOG_OFFSET=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
new_log() { tail -c +$((LOG_OFFSET + 1)) "$LOG"; }

psql_() { PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -U postgres -d postgres "$@"; }
q() { psql_ -c "$1"; }
bench() { "$BIN/pgbench" -h localhost -p "$PORT" -U postgres -n "$@" postgres; }
say() { printf '\033[1;34m[counters]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[counters] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
check_eq() { [ "$1" == "$2" ] || fail "$3: got '$1', want '$2'"; say "ok: $3 ($1)"; }
start_cluster() { pg_cluster_ctl "$CLUSTER" start; }
wait_ready() {
  for _ in $(seq 1 120); do q "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.5; done
  fail "server did not come back"
}
worker_pid() { q "SELECT pg_stat_clear_snapshot(); SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'" | tail -1; }
wait_worker() { # wait for a worker whose pid differs from $1; echo it
  for _ in $(seq 1 60); do
    local p; p=$(worker_pid 2>/dev/null || echo 0)
    if [ "$p" != 0 ] && [ "$p" != "$1" ]; then echo "$p"; return 0; fi
    sleep 0.5
  done
  fail "compactor worker did not (re)start"
}
wait_drained() { # wait until counter $1 has no pending rows (the worker compacts them)
  for _ in $(seq 1 100); do
    [ "$(q "SELECT pending_rows FROM counter_stats WHERE name = '$1'")" == 0 ] && return 0
    sleep 0.2
  done
  fail "worker did not drain counter $1: $(q "SELECT row_to_json(s) FROM counter_stats s WHERE name = '$1'")"
}

cleanup() {
  set +e
  jobs -p | xargs -r kill 2>/dev/null
  wait 2>/dev/null
  if q "SELECT 1" >/dev/null 2>&1; then
    psql_ >/dev/null 2>&1 <<'SQL'
SELECT counter_drop(name) FROM counter_stats WHERE name LIKE 'cc\_%';
DROP TABLE IF EXISTS cc_ledger, cc_rb_ledger;
DROP DATABASE IF EXISTS cc_dump;
DROP DATABASE IF EXISTS cc_restore;
ALTER SYSTEM RESET distributed_counter.compact_interval;
ALTER SYSTEM RESET distributed_counter.compact_batch;
ALTER SYSTEM RESET distributed_counter.worker_enabled;
ALTER SYSTEM RESET jit_above_cost;
ALTER SYSTEM RESET jit_dump_bitcode;
SELECT pg_reload_conf();
SQL
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say "PostgreSQL $PG_MAJOR, cluster $CLUSTER on port $PORT"
pg_cluster_up "$CLUSTER" "$PORT"
wait_ready
# The worker serves database 'postgres' (pg_cluster_up). Re-create the extension there, so
# its SQL objects are those of the installed build, not of whatever version this
# long-lived test cluster last saw.
q "DROP EXTENSION IF EXISTS distributed_counter CASCADE" >/dev/null
q "CREATE EXTENSION distributed_counter"
psql_ >/dev/null <<'SQL'
SELECT counter_drop(name) FROM counter_stats WHERE name LIKE 'cc\_%';
DROP TABLE IF EXISTS cc_ledger, cc_rb_ledger;
ALTER SYSTEM SET distributed_counter.compact_interval = 50;
ALTER SYSTEM SET distributed_counter.compact_batch = 1000;
ALTER SYSTEM SET distributed_counter.worker_enabled = on;
SELECT pg_reload_conf();
SQL
pid0=$(wait_worker 0)
say "worker pid $pid0"
check_eq "$(q "SELECT backend_type || '/' || datname FROM pg_stat_activity WHERE pid = $pid0")" \
  "distributed_counter compactor/postgres" "worker shows in pg_stat_activity"

# ---- (a) exactness ---------------------------------------------------------------------
say "(a) 32 clients x 400 adds to one hot key, 16 clients x 400 over 50 keys, while readers watch"
q "SELECT counter_create('cc_hot', 16), counter_create('cc_many', 16)" >/dev/null
echo "SELECT counter_add('cc_hot', 'post');" > "$WORK/hot.sql"
printf '%s\n' '\set k random(1, 50)' "SELECT counter_add('cc_many', 'k' || :k, :k);" > "$WORK/many.sql"
# A reader: the hot counter must never go backwards (a compaction seen half-done would
# show as a drop or a jump), and reads never block.
cat > "$WORK/reader.sql" <<'SQL'
DO $$
DECLARE prev int8 := 0; v int8;
BEGIN
  FOR i IN 1..400 LOOP
    v := counter_value('cc_hot', 'post');
    IF v < prev THEN RAISE EXCEPTION 'counter went backwards: % -> %', prev, v; END IF;
    prev := v;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
SQL
psql_ -f "$WORK/reader.sql" > "$WORK/reader.out" 2>&1 & reader=$!
bench -c 32 -j 4 -t 400 -f "$WORK/hot.sql" > "$WORK/hot.out" 2>&1 & b1=$!
bench -c 16 -j 2 -t 400 -f "$WORK/many.sql" > "$WORK/many.out" 2>&1 & b2=$!
wait $b1 || { cat "$WORK/hot.out"; fail "pgbench hot"; }
wait $b2 || { cat "$WORK/many.out"; fail "pgbench many"; }
wait $reader || { cat "$WORK/reader.out"; fail "reader saw the counter go backwards"; }
check_eq "$(q "SELECT counter_value('cc_hot', 'post')")" 12800 "hot key exact right after the load"
many_sum=$(q "SELECT sum(value) FROM counter_values('cc_many', ARRAY(SELECT 'k' || i FROM generate_series(1, 50) i))")
many_n=$(q "SELECT sum(value / substr(key, 2)::int) FROM counter_values('cc_many', ARRAY(SELECT 'k' || i FROM generate_series(1, 50) i))")
check_eq "$many_n" 6400 "50 keys: number of adds exact"
compactions=$(q "SELECT compactions FROM counter_stats WHERE name = 'cc_hot'")
[ "$compactions" -gt 0 ] || fail "the worker did not compact during the load"
say "ok: worker compacted during the load ($compactions batches for cc_hot)"
wait_drained cc_hot; wait_drained cc_many
check_eq "$(q "SELECT counter_value('cc_hot', 'post')")" 12800 "hot key exact after the worker drained it"
check_eq "$(q "SELECT sum(value) FROM counter_values('cc_many', ARRAY(SELECT 'k' || i FROM generate_series(1, 50) i))")" \
  "$many_sum" "50 keys: sum unchanged by compaction"

say "(a') concurrent duplicates of 300 request ids from 16 clients"
q "SELECT counter_create('cc_dedupe', 16)" >/dev/null
printf '%s\n' '\set r random(1, 300)' "SELECT counter_add('cc_dedupe', 'k', 1, 'req-' || :r);" > "$WORK/dedupe.sql"
bench -c 16 -j 2 -t 300 -f "$WORK/dedupe.sql" > "$WORK/dedupe.out" 2>&1 || { cat "$WORK/dedupe.out"; fail "pgbench dedupe"; }
check_eq "$(q "SELECT counter_value('cc_dedupe', 'k')")" \
  "$(q "SELECT count(*) FROM counter_requests q JOIN counter_registry r ON r.id = q.counter_id WHERE r.name = 'cc_dedupe'")" \
  "each request id counted exactly once"

# ---- (c) rollback never counts ---------------------------------------------------------
say "(c) 16 clients, half of the transactions roll back"
q "SELECT counter_create('cc_rb', 8)" >/dev/null
q "CREATE TABLE cc_rb_ledger (id bigserial PRIMARY KEY, key text NOT NULL)"
cat > "$WORK/rb.sql" <<'SQL'
\set k random(1, 5)
\set commit random(0, 1)
BEGIN;
SELECT counter_add('cc_rb', 'k' || :k);
INSERT INTO cc_rb_ledger (key) VALUES ('k' || :k);
\if :commit
COMMIT;
\else
ROLLBACK;
\endif
SQL
bench -c 16 -j 2 -t 300 -f "$WORK/rb.sql" > "$WORK/rb.out" 2>&1 || { cat "$WORK/rb.out"; fail "pgbench rollback"; }
wait_drained cc_rb
bad=$(q "SELECT count(*) FROM (SELECT key, count(*) n FROM cc_rb_ledger GROUP BY key) l WHERE counter_value('cc_rb', l.key) <> l.n")
check_eq "$bad" 0 "every key equals its committed ledger rows"
check_eq "$(q "SELECT sum(counter_value('cc_rb', 'k' || i)) FROM generate_series(1, 5) i")" \
  "$(q "SELECT count(*) FROM cc_rb_ledger")" "total equals committed transactions"
n=$(q "SELECT count(*) FROM cc_rb_ledger")
[ "$n" -gt 500 ] && [ "$n" -lt 4300 ] || fail "expected about half of 4800 committed, got $n"

# ---- (e) counter_add's per-backend cache, across sessions ------------------------------
say "(e) a session's cached counter follows a drop, a re-create and a shard change committed by another"
q "CREATE EXTENSION IF NOT EXISTS dblink" >/dev/null
# compaction paused, so the shard of each pending row can be checked
q "ALTER SYSTEM SET distributed_counter.worker_enabled = off" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
sleep 1
psql_ >/dev/null <<SQL
SELECT dblink_connect('other', 'host=localhost port=$PORT dbname=postgres user=postgres');
CREATE FUNCTION pg_temp.other_add(delta int8) RETURNS text LANGUAGE sql AS
  \$\$ SELECT x FROM dblink('other', format('SELECT counter_add(%L, %L, %s)::text', 'cc_cache', 'k', delta)) t(x text) \$\$;
SELECT counter_create('cc_cache', 4);
SELECT pg_temp.other_add(1);                    -- cached by the other session
SELECT counter_drop('cc_cache');
DO \$\$ BEGIN
  PERFORM pg_temp.other_add(1);
  RAISE EXCEPTION 'a stale cache entry let counter_add write to a dropped counter';
EXCEPTION WHEN undefined_object THEN NULL;  -- 42704 from the other session
END \$\$;
SELECT counter_create('cc_cache', 1);
SELECT pg_temp.other_add(5);
SELECT pg_temp.other_add(1);                    -- cached again, with 1 shard
UPDATE counter_registry SET shards = 1024 WHERE name = 'cc_cache';
SELECT pg_temp.other_add(3);
DO \$\$
DECLARE
  other_pid int4 := (SELECT x::int4 FROM dblink('other', 'SELECT pg_backend_pid()::text') t(x text));
  shard int4 := (SELECT p.shard FROM counter_pending p JOIN counter_registry r ON r.id = p.counter_id
                 WHERE r.name = 'cc_cache' AND p.delta = 3);
BEGIN
  IF counter_value('cc_cache', 'k') <> 9 THEN
    RAISE EXCEPTION 'cc_cache holds %, want 9', counter_value('cc_cache', 'k');
  END IF;
  IF shard IS DISTINCT FROM other_pid % 1024 THEN
    RAISE EXCEPTION 'the add after the shard change went to shard %, want % (pid %)', shard, other_pid % 1024, other_pid;
  END IF;
END \$\$;
-- a REPEATABLE READ transaction reads the registry as of its snapshot: what it finds
-- there must not outlive it in the cache
SELECT counter_create('cc_rr', 4);
SELECT dblink_exec('other', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT x FROM dblink('other', 'SELECT txid_current()::text') t(x text);
SELECT counter_drop('cc_rr');
SELECT counter_create('cc_rr', 4);
SELECT x FROM dblink('other', \$q\$SELECT counter_add('cc_rr', 'k')::text\$q\$) t(x text);
SELECT dblink_exec('other', 'COMMIT');
SELECT x FROM dblink('other', \$q\$SELECT counter_add('cc_rr', 'k', 7)::text\$q\$) t(x text);
DO \$\$ BEGIN
  IF counter_value('cc_rr', 'k') <> 7 THEN
    RAISE EXCEPTION 'cc_rr holds %, want 7: an add after the repeatable-read transaction used its stale counter id',
      counter_value('cc_rr', 'k');
  END IF;
END \$\$;
SELECT dblink_disconnect('other');
SQL
say "ok: adds after a drop fail with 42704; a re-created counter and a new shard count are used at once; a repeatable-read snapshot does not leak into the cache"
q "ALTER SYSTEM SET distributed_counter.worker_enabled = on" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null

# ---- (f) the worker never JIT-compiles -------------------------------------------------
# With JIT forced for every statement (jit_above_cost = 0) and jit_dump_bitcode on, each
# compiled module is written to <pid>.<n>.bc in the data directory: the worker must
# write none while it compacts, and a client's query must (so the check can fail).
if [ "$(q "SELECT pg_jit_available()")" = t ]; then
  say "(f) with JIT forced for every statement, the worker compiles nothing"
  datadir=$(q "SHOW data_directory")
  rm -f "$datadir"/*.bc
  q "ALTER SYSTEM SET jit_above_cost = 0" >/dev/null
  q "ALTER SYSTEM SET jit_dump_bitcode = on" >/dev/null
  q "SELECT pg_reload_conf()" >/dev/null
  wpid=$(worker_pid)
  q "SELECT counter_create('cc_jit', 4)" >/dev/null
  for _ in $(seq 1 20); do q "SELECT counter_add('cc_jit', 'k')" >/dev/null; done
  sleep 1
  wait_drained cc_jit
  check_eq "$(q "SELECT counter_value('cc_jit', 'k')")" 20 "cc_jit exact after compaction"
  client=$(q "SELECT pg_backend_pid() FROM (SELECT sum(x) FROM generate_series(1, 10) x) s")
  [ -n "$(ls "$datadir/$client".*.bc 2>/dev/null)" ] || fail "a client's forced-JIT query wrote no bitcode: the check below would prove nothing"
  check_eq "$(ls "$datadir/$wpid".*.bc 2>/dev/null | wc -l)" 0 "bitcode modules compiled by the worker (pid $wpid)"
  q "ALTER SYSTEM RESET jit_above_cost" >/dev/null
  q "ALTER SYSTEM RESET jit_dump_bitcode" >/dev/null
  q "SELECT pg_reload_conf()" >/dev/null
  rm -f "$datadir"/*.bc
else
  say "(f) skipped: this PostgreSQL build has no JIT provider (pg_jit_available() is false)"
fi

# ---- SIGHUP, ERROR inside a pass, SIGTERM ----------------------------------------------
say "SIGHUP: worker_enabled = off pauses compaction, on resumes it"
q "ALTER SYSTEM SET distributed_counter.worker_enabled = off" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q "SELECT counter_add('cc_hot', 'post', 1) FROM generate_series(1, 100)" >/dev/null
sleep 1
check_eq "$(q "SELECT pending_rows FROM counter_stats WHERE name = 'cc_hot'")" 100 "paused worker leaves rows pending"
q "ALTER SYSTEM SET distributed_counter.worker_enabled = on" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
wait_drained cc_hot
check_eq "$(q "SELECT counter_value('cc_hot', 'post')")" 12900 "resumed worker drained them exactly"

say "an ERROR inside a compaction pass is logged and rolled back; the worker lives on"
cid=$(q "SELECT id FROM counter_registry WHERE name = 'cc_hot'")
q "ALTER TABLE counter_totals ADD CONSTRAINT cc_poison CHECK (counter_id <> $cid OR value < 13000)"
q "SELECT counter_add('cc_hot', 'post', 500)" >/dev/null
sleep 1.5
check_eq "$(q "SELECT pending_rows FROM counter_stats WHERE name = 'cc_hot'")" 1 "failing batch rolled back (row still pending)"
check_eq "$(q "SELECT counter_value('cc_hot', 'post')")" 13400 "value exact while compaction fails"
check_eq "$(worker_pid)" "$pid0" "same worker process after failing passes"
grep -q 'distributed_counter compactor: compaction failed: .*cc_poison' <(new_log) || fail "no warning in $LOG"
say "ok: warning logged"
q "ALTER TABLE counter_totals DROP CONSTRAINT cc_poison"
wait_drained cc_hot
check_eq "$(q "SELECT counter_value('cc_hot', 'post')")" 13400 "compaction resumes once the error is gone"
check_eq "$(worker_pid)" "$pid0" "still the same worker process"

say "SIGTERM stops the worker; the postmaster starts it again after the restart time"
q "SELECT pg_terminate_backend($pid0)" >/dev/null
sleep 0.5
grep -q "distributed_counter compactor shutting down" <(new_log) || fail "worker did not log its shutdown"
pid1=$(wait_worker "$pid0")
say "ok: restarted as pid $pid1"

# ---- (b) crash safety ------------------------------------------------------------------
say "(b) immediate shutdown while 16 clients add (each add in one transaction with a ledger row)"
q "SELECT counter_create('cc_crash', 16)" >/dev/null
q "CREATE TABLE cc_ledger (id bigserial PRIMARY KEY, key text NOT NULL)"
cat > "$WORK/crash.sql" <<'SQL'
\set k random(1, 10)
BEGIN;
SELECT counter_add('cc_crash', 'k' || :k);
INSERT INTO cc_ledger (key) VALUES ('k' || :k);
COMMIT;
SQL
check_ledger() { # $1: what
  local bad total
  bad=$(q "SELECT count(*) FROM (SELECT 'k' || i AS key FROM generate_series(1, 10) i) k
           WHERE counter_value('cc_crash', k.key) <> (SELECT count(*) FROM cc_ledger l WHERE l.key = k.key)")
  total=$(q "SELECT count(*) FROM cc_ledger")
  [ "$total" -gt 0 ] || fail "$1: empty ledger"
  check_eq "$bad" 0 "$1: all 10 keys equal the ledger ($total committed adds)"
}
timeout 60 "$BIN/pgbench" -h localhost -p "$PORT" -U postgres -n -c 16 -j 2 -T 30 -f "$WORK/crash.sql" postgres \
  > "$WORK/crash1.out" 2>&1 & b=$!
sleep 4
pending=$(q "SELECT pending_rows FROM counter_stats WHERE name = 'cc_crash'")
say "stopping -m immediate ($pending rows pending, worker compacting)"
pg_cluster_ctl "$CLUSTER" stop -m immediate
wait $b || true
start_cluster
wait_ready
check_ledger "after crash recovery"
pid2=$(wait_worker 0)
wait_drained cc_crash
check_ledger "after the restarted worker (pid $pid2) compacted"

say "(b') kill -9 of the worker in the middle of a compaction transaction"
q "ALTER SYSTEM SET distributed_counter.worker_enabled = off" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
bench -c 16 -j 2 -t 1500 -f "$WORK/crash.sql" > "$WORK/crash2.out" 2>&1 || { cat "$WORK/crash2.out"; fail "pgbench backlog"; }
say "backlog of $(q "SELECT pending_rows FROM counter_stats WHERE name = 'cc_crash'") pending rows; enabling the worker with 200-row batches"
q "ALTER SYSTEM SET distributed_counter.compact_batch = 200" >/dev/null
q "ALTER SYSTEM SET distributed_counter.worker_enabled = on" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
killed=0
for _ in $(seq 1 400); do
  # active in a compaction transaction while rows remain: kill it there
  st=$(q "SELECT a.state = 'active' AND s.pending_rows > 0 FROM pg_stat_activity a, counter_stats s
          WHERE a.pid = $pid2 AND s.name = 'cc_crash'" 2>/dev/null || true)
  if [ "$st" == t ]; then kill -9 "$pid2"; killed=1; break; fi
  sleep 0.002
done
[ $killed == 1 ] || fail "never saw the worker compacting"
say "killed pid $pid2 while active; the postmaster reinitialises"
sleep 1
wait_ready
left=$(q "SELECT pending_rows FROM counter_stats WHERE name = 'cc_crash'")
# (after a crash cycle the postmaster restarts workers at once, so the new worker may
# already have drained the rest)
say "$left of 24000 rows pending after the restart"
q "ALTER SYSTEM SET distributed_counter.compact_batch = 1000" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
check_ledger "after kill -9 of the worker"
pid3=$(wait_worker "$pid2")
say "ok: worker restarted as pid $pid3"
wait_drained cc_crash
check_ledger "after the restarted worker drained the backlog"
check_eq "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'")" 1 "exactly one worker"

# ---- (d) pg_dump / pg_restore round trip ------------------------------------------------
say "(d) pg_dump -Fc / pg_restore round-trips counters (totals, pending rows, request ids)"
for db in cc_dump cc_restore; do q "DROP DATABASE IF EXISTS $db" >/dev/null; done
q "CREATE DATABASE cc_dump" >/dev/null
dq() { "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -U postgres -d "$1" -c "$2"; }
dq cc_dump "CREATE SCHEMA dc; CREATE EXTENSION distributed_counter SCHEMA dc;
  SELECT dc.counter_create('a', 4), dc.counter_create('b');
  SELECT dc.counter_add('a', 'x', 5, 'r1'), dc.counter_add('b', 'y', 7);
  SELECT dc.counter_compact();
  SELECT dc.counter_add('a', 'x', 2), dc.counter_add('a', 'z', -3), dc.counter_set('b', 'y', 40);" >/dev/null
before=$(dq cc_dump "SELECT string_agg(key || '=' || value, ',') FROM (SELECT * FROM dc.counter_values('a', ARRAY['x', 'z']) UNION ALL SELECT * FROM dc.counter_values('b', ARRAY['y'])) v")
"$BIN/pg_dump" -h localhost -p "$PORT" -U postgres -Fc -f "$WORK/cc.dump" cc_dump
q "CREATE DATABASE cc_restore" >/dev/null
"$BIN/pg_restore" -h localhost -p "$PORT" -U postgres -d cc_restore --exit-on-error "$WORK/cc.dump"
after=$(dq cc_restore "SELECT string_agg(key || '=' || value, ',') FROM (SELECT * FROM dc.counter_values('a', ARRAY['x', 'z']) UNION ALL SELECT * FROM dc.counter_values('b', ARRAY['y'])) v")
check_eq "$after" "$before" "values after restore"
check_eq "$(dq cc_restore "SELECT dc.counter_add('a', 'x', 5, 'r1')")" f "request id remembered after restore"
dq cc_restore "SELECT dc.counter_create('c'); SELECT dc.counter_add('c', 'k')" >/dev/null
check_eq "$(dq cc_restore "SELECT count(DISTINCT id) FROM dc.counter_registry")" 3 "new counter gets a fresh id after restore"
check_eq "$(dq cc_restore "SELECT dc.counter_compact()")" 3 "restored pending rows compact"
check_eq "$(dq cc_restore "SELECT string_agg(key || '=' || value, ',') FROM (SELECT * FROM dc.counter_values('a', ARRAY['x', 'z']) UNION ALL SELECT * FROM dc.counter_values('b', ARRAY['y'])) v")" \
  "$before" "values after compacting the restored copy"
for db in cc_dump cc_restore; do q "DROP DATABASE $db" >/dev/null; done

say "all counters scenario checks passed"
