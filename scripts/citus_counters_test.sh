#!/usr/bin/env bash
# Sharded counters on Citus (a coordinator and two workers, scripts/lib/citus.sh; skipped
# with one line where ../shared is absent). From the coordinator:
#   - counter_distribute() on an install with data: values, pending rows and remembered
#     request ids survive; idempotent; 55000 on a worker node;
#   - pgbench writers through the coordinator and through each worker node (Citus keeps
#     its metadata on every node), each add in one transaction with a ledger row (the
#     ledger is distributed by key, co-located): every key equals its ledger; the adds
#     land on both workers; each worker node's compaction worker drains its own shards;
#     no node's shell table gets a row (the coordinator's not even with Citus's own
#     trigger on it removed, so the fast path's explicit rule is what holds);
#   - counter_values, counter_set, counter_compact(), counter_drop, counter_stats over
#     the cluster, and the SQLSTATEs of bad calls;
#   - fault rounds under load (a worker stopped, the coordinator restarted, a worker
#     stopped with -m immediate): adds routed to a node that is down fail with an error,
#     others keep working, and afterwards no add that returned true is lost and every
#     key equals its ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pg.sh
say() { printf '\033[1;34m[citus-counters]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[citus-counters] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
. scripts/lib/citus.sh
WORK=$(mktemp -d /tmp/citus_counters.XXXXXX); chmod 755 "$WORK"
cleanup() { set +e; jobs -p | xargs -r kill 2>/dev/null; wait 2>/dev/null; citus_stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
citus_cluster_up "distributed_counter.compact_interval = 100"
check_eq() { [ "$1" == "$2" ] || fail "$3: got '$1', want '$2'"; say "ok: $3 ($1)"; }
state() { # NODE SQL: the SQLSTATE the statement fails with, or OK
  local n=$1 out; shift
  if out=$(q "$n" -v VERBOSITY=sqlstate -c "$1" 2>&1); then echo OK; else
    grep -o 'ERROR:  [0-9A-Z]\{5\}' <<<"$out" | head -1 | cut -c9-
  fi
}

# ---- distribute an install that holds data -----------------------------------------------
q coord >/dev/null <<'SQL'
SELECT counter_create('likes', 4);
SELECT counter_add('likes', 'k' || g, g) FROM generate_series(1, 200) g;
SELECT counter_compact();
SELECT counter_add('likes', 'k' || g, 1) FROM generate_series(1, 100) g;
SELECT counter_add('likes', 'req', 5, 'request-1');
SQL
values_of_likes="SELECT string_agg(k || '=' || counter_value('likes', k), ',' ORDER BY k)
                 FROM (SELECT 'k' || g AS k FROM generate_series(1, 200) g UNION ALL SELECT 'req') s"
before=$(q coord -c "$values_of_likes")
check_eq "$(state w1 "SELECT counter_distribute()")" 55000 "counter_distribute() before Citus tables exist, on a worker node"
q coord -c "SELECT counter_create('per_minute', bucket => '1 minute')" >/dev/null
check_eq "$(state coord "SELECT counter_distribute()")" 0A000 "counter_distribute() with a bucketed counter is refused"
q coord -c "SELECT counter_drop('per_minute')" >/dev/null
q coord -c "SELECT counter_create('write_behind', mode => 'buffered')" >/dev/null
check_eq "$(state coord "SELECT counter_distribute()")" 0A000 "counter_distribute() with a buffered counter is refused"
q coord -c "SELECT counter_drop('write_behind')" >/dev/null
q coord -c "SELECT counter_distribute()" >/dev/null
q coord -c "SELECT counter_distribute()" >/dev/null
check_eq "$(q coord -c "SELECT string_agg(logicalrelid::regclass::text || ':' || partmethod::text, ',' ORDER BY logicalrelid::regclass::text)
                         FROM pg_dist_partition WHERE logicalrelid::regclass::text LIKE 'counter\_%'")" \
  "counter_buckets:h,counter_pending:h,counter_registry:n,counter_requests:h,counter_totals:h" \
  "counter_distribute(), twice: registry a reference table, the row tables distributed"
[ "$(q coord -c "$values_of_likes")" = "$before" ] || fail "values changed by the move"; say "ok: all 201 values unchanged by the move"
check_eq "$(q coord -c "SELECT counter_add('likes', 'req', 5, 'request-1')")" f "a request id remembered across the move"
check_eq "$(q coord -c "SELECT pg_relation_size('counter_pending') + pg_relation_size('counter_totals') + pg_relation_size('counter_registry')")" \
  0 "the coordinator's local copies are emptied"
check_eq "$(state w1 "SELECT counter_distribute()")" 55000 "counter_distribute() on a worker node"

# ---- load from the coordinator, against a ledger ------------------------------------------
q coord >/dev/null <<'SQL'
SELECT counter_create('hits', 16);
CREATE TABLE ledger (key text, id text, delta int8);
SELECT create_distributed_table('ledger', 'key', colocate_with => 'counter_pending');
SQL
# Citus puts a TRUNCATE trigger on the coordinator's shell tables, which alone would keep
# counter_add off its C fast path; without it, the explicit rule must.
trig=$(q coord -c "SELECT tgname FROM pg_trigger WHERE tgrelid = 'counter_pending'::regclass AND tgname LIKE 'truncate\_trigger%'")
[ -n "$trig" ] || fail "Citus put no truncate trigger on the shell table (this check expected one)"
q coord -c "SET citus.enable_ddl_propagation = off" -c "DROP TRIGGER $trig ON counter_pending" >/dev/null
shell_inserts() { q coord -c "SELECT pg_stat_force_next_flush()" -c "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'counter_pending'::regclass" | tail -1; }
shell_before=$(shell_inserts)
cat >"$WORK/add.sql" <<'EOF'
\set k random(1, 400)
\set d random(1, 9)
BEGIN;
SELECT counter_add('hits', 'key' || :k, :d);
INSERT INTO ledger VALUES ('key' || :k, :client_id || '-' || random(), :d);
COMMIT;
EOF
cat >"$WORK/hot.sql" <<'EOF'
BEGIN;
SELECT counter_add('hits', 'hot', 1);
INSERT INTO ledger VALUES ('hot', :client_id || '-' || random(), 1);
COMMIT;
EOF
say "pgbench, 8 s: 8 clients over 400 keys and 4 on one hot key through the coordinator; 4 over the same keys through each worker node"
pgbench -h 127.0.0.1 -p "${PORT[coord]}" -U postgres -n -T 8 -c 8 -j 1 -f "$WORK/add.sql" postgres >"$WORK/pgb1" 2>&1 &
pgbench -h 127.0.0.1 -p "${PORT[coord]}" -U postgres -n -T 8 -c 4 -j 1 -f "$WORK/hot.sql" postgres >"$WORK/pgb2" 2>&1 &
pgbench -h 127.0.0.1 -p "${PORT[w1]}" -U postgres -n -T 8 -c 4 -j 1 -f "$WORK/add.sql" postgres >"$WORK/pgb3" 2>&1 &
pgbench -h 127.0.0.1 -p "${PORT[w2]}" -U postgres -n -T 8 -c 4 -j 1 -f "$WORK/add.sql" postgres >"$WORK/pgb4" 2>&1 &
wait
for i in 1 2 3 4; do
  tps[i]=$(grep -o 'tps = [0-9.]*' "$WORK/pgb$i" | head -1 | cut -d' ' -f3)
  [ -n "${tps[i]}" ] || { tail -20 "$WORK/pgb$i"; fail "pgbench $i failed"; }
done
say "adds/s: keys ${tps[1]} and hot key ${tps[2]} through the coordinator, keys ${tps[3]} and ${tps[4]} through the worker nodes"
# ledger sums pulled to the coordinator first (a CTE), then read through the counter API
ledger_diff="WITH l AS MATERIALIZED (SELECT key, sum(delta) AS s FROM ledger GROUP BY key)
             SELECT count(*) FILTER (WHERE v.value IS DISTINCT FROM l.s) || '/' || count(*)
             FROM l LEFT JOIN counter_values('hits', ARRAY(SELECT key FROM l)) v USING (key)"
check_eq "$(q coord -c "$ledger_diff")" "0/401" "right after the load, every key equals its ledger (counter_values)"
bad=$(q coord -c "WITH l AS MATERIALIZED (SELECT key, sum(delta) AS s FROM ledger GROUP BY key)
                  SELECT count(*) FROM l WHERE counter_value('hits', l.key) <> l.s")
check_eq "$bad" 0 "and through counter_value"
for n in w1 w2; do
  got=$(q "$n" -c "SET citus.override_table_visibility = off" -c "SELECT pg_stat_force_next_flush()" -c "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname LIKE 'counter\_pending\_%'" | tail -1)
  [ "$got" -gt 0 ] || fail "no add reached worker $n"
  say "ok: worker $n received $got pending rows into its shards"
done
check_eq "$(shell_inserts)" "$shell_before" "no row written into the coordinator's shell counter_pending"
for n in w1 w2; do  # a worker node's own counter_pending is a shell table as well
  check_eq "$(q "$n" -c "SELECT pg_stat_force_next_flush()" -c "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'counter_pending'::regclass" | tail -1)" \
    0 "no row written into worker $n's shell counter_pending by the adds sent to that node"
done

for _ in $(seq 1 100); do
  [ "$(q coord -c "SELECT pending_rows FROM counter_stats WHERE name = 'hits'")" = 0 ] && break
  sleep 0.3
done
check_eq "$(q coord -c "SELECT pending_rows FROM counter_stats WHERE name = 'hits'")" 0 \
  "the workers' compaction drained every shard, without counter_compact()"
for n in w1 w2; do
  got=$(q "$n" -c "SET citus.override_table_visibility = off" -c "SELECT pg_stat_force_next_flush()" -c "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables WHERE relname LIKE 'counter\_totals\_%'" | tail -1)
  [ "$got" -gt 0 ] || fail "worker $n folded nothing into its totals shards"
  say "ok: worker $n folded into its own totals shards ($got rows written)"
done
check_eq "$(q coord -c "$ledger_diff")" "0/401" "after compaction, every key equals its ledger"
check_eq "$(q coord -c "SELECT keys FROM counter_stats WHERE name = 'hits'")" 401 "counter_stats counts the keys of the whole cluster"
top_diff="WITH l AS MATERIALIZED (SELECT key, sum(delta) AS s FROM ledger GROUP BY key ORDER BY s DESC, key LIMIT 5)
          SELECT (SELECT string_agg(key || '=' || s, ',' ORDER BY s DESC, key) FROM l)
                 IS NOT DISTINCT FROM (SELECT string_agg(key || '=' || value, ',' ORDER BY ord) FROM counter_top('hits', 5) WITH ORDINALITY t(key, value, ord))"
check_eq "$(q coord -c "$top_diff")" t "counter_top over the cluster equals the ledger's top 5 (coordinator)"
check_eq "$(q w1 -c "$top_diff")" t "and on a worker node"
check_eq "$(state coord "SELECT counter_create('views', bucket => '1 minute')")" 0A000 "a bucketed counter on Citus is refused"
check_eq "$(state coord "SELECT counter_create('views', mode => 'buffered')")" 0A000 "a buffered counter on Citus is refused"
check_eq "$(state coord "SELECT counter_window('hits', 'hot', '1 minute')")" 22023 "counter_window of a plain counter"
check_eq "$(q w2 -c "SELECT keys || '/' || pending_rows FROM counter_stats WHERE name = 'hits'")" 401/0 "and so it does on a worker node"

# ---- the rest of the API -----------------------------------------------------------------
check_eq "$(state coord "SELECT counter_add('nope', 'k')")" 42704 "unknown counter"
check_eq "$(state coord "SELECT counter_add('hits', NULL)")" 22004 "NULL key"
check_eq "$(state coord "SELECT counter_add('hits', repeat('x', 2001))")" 22023 "key too long"
check_eq "$(state coord "SELECT counter_value('nope', 'k')")" 42704 "counter_value of an unknown counter"
check_eq "$(state coord "SELECT counter_create('hits')")" 42710 "counter_create of an existing name"
check_eq "$(state coord "BEGIN READ ONLY; SELECT counter_add('hits', 'k'); COMMIT")" 25006 "counter_add in a read-only transaction"
q coord -c "SELECT counter_set('hits', 'hot', 7)" -c "SELECT counter_add('hits', 'hot', 3)" >/dev/null
check_eq "$(q coord -c "SELECT counter_value('hits', 'hot')")" 10 "counter_set, then an add"
q coord -c "SELECT counter_add('hits', 'c' || g, 1) FROM generate_series(1, 300) g" >/dev/null
for n in "${NODES[@]}"; do
  q "$n" -c "ALTER SYSTEM SET distributed_counter.worker_enabled = off" -c "SELECT pg_reload_conf()" >/dev/null
done
sleep 0.5
q coord -c "SELECT counter_add('hits', 'c' || g, 1) FROM generate_series(1, 300) g" >/dev/null
moved=$(q coord -c "SELECT counter_compact()")
[ "$moved" -ge 300 ] || fail "counter_compact() on the coordinator folded $moved rows, expected at least the 300 added while the workers were paused"
say "ok: with every node's worker paused, counter_compact() on the coordinator folded $moved rows on the workers"
check_eq "$(q coord -c "SELECT pending_rows FROM counter_stats WHERE name = 'hits'")" 0 "nothing pending after counter_compact()"
check_eq "$(q coord -c "SELECT sum(value) FROM counter_values('hits', ARRAY(SELECT 'c' || g FROM generate_series(1, 300) g))")" \
  600 "counter_compact() kept every add"
q coord -c "SELECT counter_add('likes', 'k' || g, 1) FROM generate_series(1, 50) g" -c "SELECT counter_drop('likes')" >/dev/null
check_eq "$(state coord "SELECT counter_value('likes', 'k1')")" 42704 "counter_drop"
q coord -c "SELECT counter_create('likes')" -c "SELECT counter_compact()" >/dev/null
check_eq "$(q coord -c "SELECT sum(value) FROM counter_values('likes', ARRAY(SELECT 'k' || g FROM generate_series(1, 200) g))")" \
  0 "a re-created counter starts from zero (the dropped counter's pending rows were discarded)"
for n in "${NODES[@]}"; do
  q "$n" -c "ALTER SYSTEM RESET distributed_counter.worker_enabled" -c "SELECT pg_reload_conf()" >/dev/null
done

# ---- faults ----------------------------------------------------------------------------------
# One psql per add transaction, so every outcome is known: ok.N lists the ids whose COMMIT
# returned, fail.N the others. Keys k0..k199 spread over both workers.
client() { # counter, client number
  local f=$1 c=$2 i=0 k
  while [ ! -e "$WORK/stop" ]; do
    i=$((i + 1)); k="k$(( (c * 7919 + i * 31) % 200 ))"
    if q coord -c "BEGIN" -c "SELECT counter_add('$f', '$k', 1)" -c "INSERT INTO ledger VALUES ('$k', '$c-$i', 1)" \
         -c "COMMIT" >/dev/null 2>&1; then
      echo "$c-$i" >>"$WORK/ok"
    else
      echo "$c-$i" >>"$WORK/fail"
    fi
  done
}
wait_up() { for _ in $(seq 1 100); do q "$1" -c "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.2; done; fail "$1 did not come back"; }
fault_round() { # counter, name, command to break, command to repair
  local f=$1 name=$2 brk=$3 fix=$4 ok0 fail0 okd faild
  q coord -c "SELECT counter_create('$f', 8)" -c "TRUNCATE ledger" >/dev/null
  rm -f "$WORK/stop"; : >"$WORK/ok"; : >"$WORK/fail"
  for c in 1 2 3 4 5 6; do client "$f" "$c" & done
  sleep 3
  eval "$brk"
  ok0=$(wc -l <"$WORK/ok"); fail0=$(wc -l <"$WORK/fail")
  sleep 3
  okd=$(( $(wc -l <"$WORK/ok") - ok0 )); faild=$(( $(wc -l <"$WORK/fail") - fail0 ))
  eval "$fix"
  sleep 3
  touch "$WORK/stop"; wait
  wait_up coord
  # every id whose COMMIT returned is in the ledger, and every key equals its ledger
  sort -u "$WORK/ok" >"$WORK/ok.sorted"
  q coord -c "SELECT id FROM ledger" | sort -u >"$WORK/ledger.sorted"
  local lost; lost=$(comm -23 "$WORK/ok.sorted" "$WORK/ledger.sorted" | wc -l)
  local diff; diff=$(q coord -c "${ledger_diff//\'hits\'/\'$f\'}")
  printf '  %-34s adds ok %5d, failed %4d (during the fault: ok %4d, failed %4d), in ledger %5d, lost %d, keys off %s\n' \
    "$name" "$(wc -l <"$WORK/ok")" "$(wc -l <"$WORK/fail")" "$okd" "$faild" "$(wc -l <"$WORK/ledger.sorted")" "$lost" "${diff%%/*}"
  [ "$lost" = 0 ] || fail "$name: $lost adds returned true but are not counted"
  [ "${diff%%/*}" = 0 ] || fail "$name: $diff keys differ from the ledger"
  echo "$okd $faild"
}
say "fault rounds: 6 clients, one psql per add (ok = its COMMIT returned)"
r=$(fault_round f1 "worker w1 stopped (fast) for 3 s" "pg_cluster_ctl dc_citus_w1 stop -m fast" "pg_cluster_ctl dc_citus_w1 start")
echo "${r%$'\n'*}"; set -- ${r##*$'\n'}
[ "$1" -gt 0 ] && [ "$2" -gt 0 ] || fail "with w1 down, adds to w2's keys must work ($1) and adds to w1's keys must fail ($2)"
r=$(fault_round f2 "coordinator restarted" "pg_cluster_ctl dc_citus_coord restart -m fast" ":")
echo "${r%$'\n'*}"
r=$(fault_round f3 "worker w2 stopped -m immediate, 3 s" "pg_cluster_ctl dc_citus_w2 stop -m immediate" "pg_cluster_ctl dc_citus_w2 start")
echo "${r%$'\n'*}"; set -- ${r##*$'\n'}
[ "$1" -gt 0 ] && [ "$2" -gt 0 ] || fail "with w2 down, adds to w1's keys must work ($1) and adds to w2's keys must fail ($2)"
say "all Citus counter checks passed"
