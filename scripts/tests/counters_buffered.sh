#!/usr/bin/env bash
# Buffered (write-behind) counters: counter_create(..., mode => 'buffered') keeps each add
# in the backend until commit, merges it into a shared-memory table at commit, and the
# worker flushes that table into the counter tables every
# distributed_counter.flush_interval ms; reads include the unflushed deltas. Checks:
#  (a) exact against a ledger row written in the same transaction, with rolled-back
#      transactions, savepoints rolled back and released, and an add undone by a
#      PL/pgSQL exception block: while the load runs no read is above the ledger (reads
#      below it or going backwards are reported as WARNINGs); after it counter_value,
#      counter_values and counter_top (and counter_window, counter_top(width) of a
#      bucketed buffered counter) equal the ledger in one statement, again while the
#      worker flushes, after it flushed, and after counter_flush();
#  (b) fast and smart shutdowns lose nothing (flush_interval 60 s: the deltas are still
#      unflushed when the shutdown starts);
#  (c) crash rounds: an immediate shutdown under load; per pgbench client, the adds it
#      had acknowledged against what the counter holds after the restart: never more
#      than acknowledged + 1 (the add in flight), never a negative count; the adds lost
#      are reported against rate x flush_interval (a WARNING above it, a failure above
#      5x + 100);
#  (d) kill -9 of the worker: the postmaster resets shared memory; exactly the unflushed
#      adds are lost, what was flushed and what was durable is intact;
#  (e) the shared table full (buffer_keys = 64): adds to 1,000 new keys take the durable
#      path, none fails, none is lost;
#  (f) in a database the worker does not serve, adds to a buffered counter are durable;
#  (g) PREPARE TRANSACTION after a buffered add is refused (0A000) and counts nothing;
#  (h) counter_set over unflushed adds sets the value they are part of.
# Cluster dc_test (port 5498, preloaded), databases cf_buffered and cf_buffered_other;
# loopback only; ~2-3 minutes. ROUNDS=10 crash rounds; CRASH_TABLE=path also writes the
# crash table there.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/pg.sh
PORT=${DC_TEST_PORT:-5498}
CLUSTER=dc_test
BIN=$PG_BIN
DB=cf_buffered
OTHER_DB=cf_buffered_other
ROUNDS=${ROUNDS:-10}
CLIENTS=8
pg_cluster_up "$CLUSTER" "$PORT"
WORK=$(mktemp -d /tmp/counters_buffered.XXXXXX); chmod 755 "$WORK"
psql_db() { PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -U postgres -d "$DB" "$@"; }
q() { psql_db -c "$1"; }
P() { "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -U postgres -d postgres -c "$1"; }
bench() { "$BIN/pgbench" -h localhost -p "$PORT" -U postgres -n "$@" "$DB"; }
say() { printf '\033[1;34m[buffered]\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33m[buffered] WARNING:\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[buffered] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
wait_ready() { for _ in $(seq 1 120); do q "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.5; done; fail "server did not come back"; }
worker_pid() { q "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor' AND datname = '$DB'" 2>/dev/null || echo 0; }
wait_worker() { # wait for a worker whose pid differs from $1 (0: any); echo its pid
  local p
  for _ in $(seq 1 120); do
    p=$(worker_pid)
    if [ "$p" != 0 ] && [ "$p" != "$1" ]; then echo "$p"; return 0; fi
    sleep 0.5
  done
  fail "the worker did not (re)start"
}
restart() { pg_cluster_ctl "$CLUSTER" restart; wait_ready; wait_worker 0 >/dev/null; }
setting() { q "SELECT setting FROM pg_settings WHERE name = '$1'"; }
set_flush_interval() { # ms, or DEFAULT: ALTER SYSTEM and a reload; the worker rereads it on SIGHUP
  if [ "$1" == DEFAULT ]; then q "ALTER SYSTEM RESET distributed_counter.flush_interval"
  else q "ALTER SYSTEM SET distributed_counter.flush_interval = $1"; fi
  q "SELECT pg_reload_conf()" >/dev/null
  sleep 1  # the worker takes the SIGHUP and ends the flush cycle it was in
  say "flush_interval now $(setting distributed_counter.flush_interval) ms"
}
unflushed() { q "SELECT coalesce(unflushed, 0) FROM counter_stats WHERE name = '$1'"; }
gt0() { awk -v x="$1" 'BEGIN { exit !(x > 0) }'; }
cleanup() {
  set +e
  jobs -p | xargs -r kill 2>/dev/null; wait 2>/dev/null
  "$BIN/psql" -X -q -h localhost -p "$PORT" -U postgres -d postgres -c "ALTER SYSTEM RESET distributed_counter.database" \
    -c "ALTER SYSTEM RESET distributed_counter.flush_interval" -c "ALTER SYSTEM RESET distributed_counter.buffer_keys" >/dev/null 2>&1
  pg_cluster_ctl "$CLUSTER" restart >/dev/null 2>&1 || pg_cluster_ctl "$CLUSTER" start >/dev/null 2>&1
  "$BIN/psql" -X -q -h localhost -p "$PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS $OTHER_DB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
P "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
P "DROP DATABASE IF EXISTS $OTHER_DB WITH (FORCE)" >/dev/null
P "CREATE DATABASE $DB" >/dev/null
# the worker serves this database (buffering happens only there), default flush settings
P "ALTER SYSTEM SET distributed_counter.database = '$DB'" >/dev/null
P "ALTER SYSTEM RESET distributed_counter.flush_interval" >/dev/null
P "ALTER SYSTEM RESET distributed_counter.buffer_keys" >/dev/null
q "CREATE EXTENSION distributed_counter" >/dev/null
restart
FLUSH_MS=$(setting distributed_counter.flush_interval)
say "PostgreSQL $PG_MAJOR, cluster $CLUSTER on port $PORT, database $DB; flush_interval $FLUSH_MS ms, buffer_keys $(setting distributed_counter.buffer_keys)"
q "CREATE TABLE ledger (id bigserial PRIMARY KEY, c text NOT NULL, key text NOT NULL)"
q "CREATE INDEX ON ledger (c, key)"

# exact COUNTER LEDGER_C LABEL [WIDTH]: in ONE statement (one snapshot, and nothing is
# running but the worker), every key k1..k20 of COUNTER against the ledger rows of
# LEDGER_C: counter_value, counter_values, counter_top (and with WIDTH, a bucketed
# counter: counter_window and counter_top(width) too). Prints the committed adds.
exact() {
  local c=$1 lc=$2 label=$3 width=${4:-} extra="0 AS w, 0 AS wt" got
  if [ -n "$width" ]; then
    extra="(SELECT count(*) FROM k LEFT JOIN l USING (key) WHERE counter_window('$c', k.key, '$width') <> coalesce(l.n, 0)) AS w,
           (SELECT count(*) FROM counter_top('$c', 1000, width => '$width') t FULL JOIN l USING (key) WHERE t.value IS DISTINCT FROM l.n) AS wt"
  fi
  got=$(q "WITH l AS (SELECT key, count(*) AS n FROM ledger WHERE c = '$lc' GROUP BY key),
                k AS (SELECT 'k' || i AS key FROM generate_series(1, 20) i)
           SELECT concat_ws(' ',
             (SELECT count(*) FROM k LEFT JOIN l USING (key) WHERE counter_value('$c', k.key) <> coalesce(l.n, 0)),
             (SELECT count(*) FROM counter_values('$c', ARRAY(SELECT key FROM k)) v LEFT JOIN l USING (key) WHERE v.value <> coalesce(l.n, 0)),
             (SELECT count(*) FROM counter_top('$c', 1000) t FULL JOIN l USING (key) WHERE t.value IS DISTINCT FROM l.n),
             x.w, x.wt, (SELECT coalesce(sum(n), 0) FROM l))
           FROM (SELECT $extra) x")
  read -r bad_v bad_vs bad_top bad_w bad_wt total <<< "$got"
  [ "$total" -gt 0 ] || fail "$label: empty ledger"
  [ "$bad_v" == 0 ] || fail "$label: counter_value of $bad_v keys of '$c' differs from the ledger"
  [ "$bad_vs" == 0 ] || fail "$label: counter_values of $bad_vs keys of '$c' differs from the ledger"
  [ "$bad_top" == 0 ] || fail "$label: counter_top('$c') differs from the ledger on $bad_top keys"
  [ "$bad_w" == 0 ] || fail "$label: counter_window('$c', key, '$width') of $bad_w keys differs from the ledger"
  [ "$bad_wt" == 0 ] || fail "$label: counter_top('$c', width => '$width') differs from the ledger on $bad_wt keys"
  echo "$total"
}
# add_script FILE COUNTER: one transaction, an add to one of 20 keys and its ledger row
add_script() {
  printf '%s\n' '\set k random(1, 20)' 'BEGIN;' "SELECT counter_add('$2', 'k' || :k, 1);" \
    "INSERT INTO ledger (c, key) VALUES ('$2', 'k' || :k);" 'COMMIT;' > "$1"
}

# ---- (a) ledger exactness on a live server, with rollbacks -------------------------------
q "SELECT counter_create('b', mode => 'buffered'), counter_create('bw', bucket => '1 minute', retention => '1 day', mode => 'buffered'), counter_create('d')" >/dev/null
modes=$(q "SELECT string_agg(name || '=' || mode, ' ' ORDER BY name) FROM counter_stats WHERE name IN ('b', 'bw', 'd')")
[ "$modes" == "b=buffered bw=buffered d=durable" ] || fail "counter_stats.mode: $modes"
say "ok: counter_stats.mode: $modes"
# committed: both counters and the ledger row (ledger 'b' is the truth for 'b' and 'bw')
cat > "$WORK/commit.sql" <<'SQL'
\set k random(1, 20)
BEGIN;
SELECT counter_add('b', 'k' || :k, 1);
SELECT counter_add('bw', 'k' || :k, 1);
INSERT INTO ledger (c, key) VALUES ('b', 'k' || :k);
COMMIT;
SQL
# rolled back: nothing counts
cat > "$WORK/rollback.sql" <<'SQL'
\set k random(1, 20)
BEGIN;
SELECT counter_add('b', 'k' || :k, 1);
SELECT counter_add('bw', 'k' || :k, 1);
INSERT INTO ledger (c, key) VALUES ('b', 'k' || :k);
ROLLBACK;
SQL
# savepoints: the add outside commits; the one rolled back to its savepoint does not; the
# one in a released savepoint does; the one in an exception block that caught its error
# does not (k1 there: variables are not substituted inside the DO body)
cat > "$WORK/savepoint.sql" <<'SQL'
\set k random(1, 20)
\set j random(1, 20)
BEGIN;
SELECT counter_add('b', 'k' || :k, 1);
SELECT counter_add('bw', 'k' || :k, 1);
INSERT INTO ledger (c, key) VALUES ('b', 'k' || :k);
SAVEPOINT s;
SELECT counter_add('b', 'k' || :j, 1);
SELECT counter_add('bw', 'k' || :j, 1);
INSERT INTO ledger (c, key) VALUES ('b', 'k' || :j);
ROLLBACK TO SAVEPOINT s;
SAVEPOINT r;
SELECT counter_add('b', 'k' || :j, 1);
SELECT counter_add('bw', 'k' || :j, 1);
INSERT INTO ledger (c, key) VALUES ('b', 'k' || :j);
RELEASE SAVEPOINT r;
DO $$ BEGIN PERFORM counter_add('b', 'k1', 1); PERFORM counter_add('bw', 'k1', 1); PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END $$;
COMMIT;
SQL
# While the load runs: ledger (t0), counter_value of every key (t1), ledger again (t2),
# three statements, three snapshots, in that order. An add read at t1 was committed, so
# it is in the ledger at t2 unless its transaction is between the merge and becoming
# visible: at most 2 adds per key per client. Reads above that are a double count
# (FAIL); reads below ledger(t0) by more than that, or a key going backwards, are
# reported (WARNING: a read racing a flush).
SLACK=$((2 * CLIENTS))
live_check() {
  psql_db <<'SQL'
CREATE TEMP TABLE l0 AS SELECT key, count(*) AS n FROM ledger WHERE c = 'b' GROUP BY key;
CREATE TEMP TABLE v AS SELECT 'k' || i AS key, counter_value('b', 'k' || i) AS value FROM generate_series(1, 20) i;
CREATE TEMP TABLE l2 AS SELECT key, count(*) AS n FROM ledger WHERE c = 'b' GROUP BY key;
SELECT v.key, coalesce(l0.n, 0), v.value, coalesce(l2.n, 0) FROM v LEFT JOIN l0 USING (key) LEFT JOIN l2 USING (key) ORDER BY v.key;
SQL
}
say "(a) $CLIENTS clients for 5 s: commits, rollbacks, savepoints; live reads against the ledger"
bench -c "$CLIENTS" -j 2 -T 5 -f "$WORK/commit.sql@6" -f "$WORK/rollback.sql@2" -f "$WORK/savepoint.sql@2" \
  > "$WORK/a.pgbench" 2>&1 & b=$!
declare -A PREV
checks=0; above=0; below=0; backwards=0
while kill -0 "$b" 2>/dev/null; do
  out=$(live_check) || { kill "$b" 2>/dev/null; fail "(a) a read failed under load"; }
  while IFS='|' read -r key l0 v l2; do
    if [ "$v" -gt $((l2 + SLACK)) ]; then
      above=$((above + 1)); say "(a) $key: counter_value $v, ledger $l2 a moment later (+$SLACK in flight)"
    fi
    [ "$v" -ge $((l0 - SLACK)) ] || { below=$((below + 1)); warn "(a) $key: counter_value $v below the ledger $l0 read before it (-$SLACK in flight)"; }
    [ "$v" -ge "${PREV[$key]:-0}" ] || { backwards=$((backwards + 1)); warn "(a) $key went backwards: ${PREV[$key]} -> $v"; }
    PREV[$key]=$v
  done <<< "$out"
  checks=$((checks + 1))
  sleep 0.2
done
wait "$b" || { cat "$WORK/a.pgbench"; fail "(a) pgbench failed"; }
[ "$above" == 0 ] || fail "(a) $above reads under load were above the ledger: a double count"
say "ok: (a) $checks live reads of 20 keys under load: none above the ledger ($below below it, $backwards backwards)"
say "    $(grep -E '^number of transactions actually processed' "$WORK/a.pgbench")"
# right after the load: several times in the first half second, so that one of them
# meets the worker's flush (reads must be exact while a flush commits)
for i in 1 2 3 4 5 6 7 8; do
  n=$(exact b b "(a) right after the load, read $i")
  exact bw b "(a) bucketed, right after the load, read $i" '1 hour' >/dev/null
  sleep 0.05
done
say "ok: (a) right after the load, 8 reads over the worker's flushes: counter_value, counter_values, counter_top exact ($n committed adds; 'bw': counter_window, counter_top(width) too)"
for _ in $(seq 1 100); do
  [ "$(q "SELECT coalesce(sum(unflushed), 0) FROM counter_stats WHERE name IN ('b', 'bw')")" == 0 ] && break
  sleep 0.1
done
[ "$(q "SELECT coalesce(sum(unflushed), 0) FROM counter_stats WHERE name IN ('b', 'bw')")" == 0 ] \
  || fail "(a) the worker did not flush within 10 s: $(q "SELECT string_agg(name || ' unflushed ' || unflushed, ', ') FROM counter_stats WHERE name IN ('b', 'bw')")"
exact b b "(a) after the worker's flush" >/dev/null
exact bw b "(a) bucketed, after the worker's flush" '1 hour' >/dev/null
age=$(q "SELECT last_flush_age FROM counter_stats WHERE name = 'b'")
[ -n "$age" ] || fail "(a) counter_stats.last_flush_age is NULL after the worker flushed"
rows=$(q "SELECT counter_flush()")
exact b b "(a) after counter_flush()" >/dev/null
exact bw b "(a) bucketed, after counter_flush()" '1 hour' >/dev/null
say "ok: (a) after the worker flushed (unflushed 0, last_flush_age $age) and after counter_flush() ($rows rows): still exact"

# ---- (b) fast and smart shutdowns lose nothing ------------------------------------------
say "(b) flush_interval 60 s: deltas stay unflushed until the shutdown"
set_flush_interval 60000
for mode in fast smart; do
  c=sd_$mode
  q "SELECT counter_create('$c', mode => 'buffered')" >/dev/null
  add_script "$WORK/$c.sql" "$c"
  bench -c 4 -j 2 -t 250 -f "$WORK/$c.sql" > "$WORK/$c.pgbench" 2>&1 || { cat "$WORK/$c.pgbench"; fail "(b) pgbench"; }
  n=$(exact "$c" "$c" "(b) before the $mode shutdown")
  un=$(unflushed "$c")
  gt0 "$un" || fail "(b) nothing unflushed before the $mode shutdown ($n adds): is flush_interval honoured, do adds buffer?"
  say "(b) $n adds committed, $un unflushed; pg_ctl stop -m $mode"
  pg_cluster_ctl "$CLUSTER" stop -m "$mode" || fail "(b) pg_ctl stop -m $mode failed"
  pg_cluster_ctl "$CLUSTER" start
  wait_ready
  exact "$c" "$c" "(b) after the $mode shutdown and a start" >/dev/null
  [ "$(unflushed "$c")" == 0 ] || fail "(b) unflushed $(unflushed "$c") after a restart"
  say "ok: (b) $mode shutdown: all $n adds ($un of them unflushed at the shutdown) are in '$c'"
  wait_worker 0 >/dev/null
done
set_flush_interval DEFAULT

# ---- (c) crash rounds: immediate shutdown under load ------------------------------------
FLUSH_MS=$(setting distributed_counter.flush_interval)
say "(c) $ROUNDS rounds: $CLIENTS clients adding (autocommit, logged per transaction), an immediate shutdown after 1-3 s"
q "SELECT counter_create('crash', mode => 'buffered')" >/dev/null
printf '%s\n' "SELECT counter_add('crash', 'c' || :client_id, 1);" > "$WORK/crash.sql"
values_crash() { q "SELECT string_agg(counter_value('crash', 'c' || i)::text, ' ' ORDER BY i) FROM generate_series(0, $((CLIENTS - 1))) i"; }
TABLE="$WORK/crash_table"
printf '%5s %8s %8s %6s %8s %7s %9s\n' round adds counted lost bound doubles "adds/s" > "$TABLE"
worst=0; worst_round=-
for round in $(seq 1 "$ROUNDS"); do
  wait_worker 0 >/dev/null
  before=$(values_crash)
  dir="$WORK/crash$round"; mkdir "$dir"
  (cd "$dir" && timeout 60 "$BIN/pgbench" -h localhost -p "$PORT" -U postgres -n -c "$CLIENTS" -j 2 -T 30 -l \
     --log-prefix="$dir/pgbench_log" -f "$WORK/crash.sql" "$DB" > "$dir/pgbench.out" 2>&1) & b=$!
  sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 1 + 2 * rand() }')"
  pg_cluster_ctl "$CLUSTER" stop -m immediate
  wait "$b" || true  # its clients abort when the server goes
  pg_cluster_ctl "$CLUSTER" start
  wait_ready
  after=$(values_crash)
  logs=("$dir"/pgbench_log.*)
  [ -e "${logs[0]}" ] || { cat "$dir/pgbench.out"; fail "(c) round $round: pgbench wrote no log"; }
  # per client: acked = logged transactions; counted = after - before. Adds/s over the
  # span of the logged transactions (start of the first to the end of the last).
  read -r acked counted lost bound doubles negative rate <<< "$(cat "${logs[@]}" | awk \
    -v before="$before" -v after="$after" -v clients="$CLIENTS" -v flush_ms="$FLUSH_MS" '
    $3 ~ /^[0-9]+$/ {
      n[$1]++; end = $5 + $6 / 1e6; start = end - $3 / 1e6
      if (!seen || start < t0) t0 = start
      if (!seen || end > t1) t1 = end
      seen = 1
    }
    END {
      split(before, b, " "); split(after, a, " ")
      for (c = 0; c < clients; c++) {
        ak = n[c] + 0; ct = a[c + 1] - b[c + 1]
        acked += ak; counted += ct
        if (ak > ct) lost += ak - ct
        if (ct > ak + 1) doubles += ct - ak - 1
        if (ct < 0) negative++
      }
      rate = (t1 > t0) ? acked / (t1 - t0) : 0
      printf "%d %d %d %.1f %d %d %.0f\n", acked, counted, lost, rate * flush_ms / 1000, doubles, negative, rate
    }')"
  printf '%5s %8s %8s %6s %8s %7s %9s\n' "$round" "$acked" "$counted" "$lost" "$bound" "$doubles" "$rate" | tee -a "$TABLE"
  [ "$acked" -gt 0 ] || { cat "$dir/pgbench.out"; fail "(c) round $round: no add was acknowledged"; }
  [ "$negative" == 0 ] || fail "(c) round $round: $negative keys went down across the crash (before: $before; after: $after)"
  [ "$doubles" == 0 ] || fail "(c) round $round: $doubles adds counted beyond the acknowledged + 1 in flight per client: counted twice"
  if awk -v l="$lost" -v b="$bound" 'BEGIN { exit !(l > 5 * b + 100) }'; then
    fail "(c) round $round: $lost acknowledged adds lost, more than 5 x the bound $bound + 100"
  fi
  if awk -v l="$lost" -v b="$bound" 'BEGIN { exit !(l > b) }'; then
    warn "(c) round $round: lost $lost > rate x flush_interval = $rate/s x $FLUSH_MS ms = $bound (the bound adds one flush's duration)"
  fi
  ratio=$(awk -v l="$lost" -v b="$bound" 'BEGIN { printf "%.2f", (b > 0 ? l / b : 0) }')
  if awk -v r="$ratio" -v w="$worst" 'BEGIN { exit !(r > w) }'; then worst=$ratio; worst_round=$round; fi
done
[ -z "${CRASH_TABLE:-}" ] || cp "$TABLE" "$CRASH_TABLE"
say "ok: (c) $ROUNDS crash rounds: nothing counted twice, no key went down; largest lost/bound $worst (round $worst_round; bound = adds/s x flush_interval $FLUSH_MS ms)"

# ---- (d) kill -9 of the worker ----------------------------------------------------------
say "(d) kill -9 of the worker with unflushed deltas (flush_interval 60 s)"
set_flush_interval 60000
q "SELECT counter_create('kw', mode => 'buffered'), counter_create('kd')" >/dev/null
adds() { # counter key n: n autocommit adds, one transaction each
  for _ in $(seq 1 "$3"); do echo "SELECT counter_add('$1', '$2', 1);"; done > "$WORK/adds.sql"
  psql_db -f "$WORK/adds.sql" >/dev/null
}
adds kw x 300
rows=$(q "SELECT counter_flush()")
v0=$(q "SELECT counter_value('kw', 'x')")
[ "$v0" == 300 ] || fail "(d) counter_value after counter_flush() is $v0, not 300"
[ "$(unflushed kw)" == 0 ] || fail "(d) unflushed $(unflushed kw) right after counter_flush()"
adds kw x 200
adds kd x 200
[ "$(q "SELECT counter_value('kw', 'x')")" == 500 ] || fail "(d) counter_value does not include the 200 unflushed adds: $(q "SELECT counter_value('kw', 'x')")"
un=$(unflushed kw)
gt0 "$un" || fail "(d) nothing unflushed after 200 adds with flush_interval 60 s"
w=$(wait_worker 0)
say "(d) 300 adds flushed by counter_flush() ($rows rows), 200 more unflushed ($un), 200 durable to 'kd'; kill -9 of the worker (pid $w)"
kill -9 "$w"
w2=$(wait_worker "$w")  # a new worker: the postmaster reset shared memory and restarted
wait_ready
got=$(q "SELECT counter_value('kw', 'x')")
gotd=$(q "SELECT counter_value('kd', 'x')")
[ "$got" == "$v0" ] || fail "(d) after the crash restart 'kw' is $got: want $v0, the flushed value (lost $((500 - got)) of the $un unflushed)"
[ "$gotd" == 200 ] || fail "(d) after the crash restart the durable 'kd' is $gotd, not 200"
[ "$(unflushed kw)" == 0 ] || fail "(d) unflushed $(unflushed kw) after the crash restart"
say "ok: (d) the postmaster reset shared memory (new worker pid $w2): 'kw' = $got, exactly the $un unflushed adds lost; durable 'kd' = $gotd intact"

# ---- (e) the shared table full: the durable path ----------------------------------------
say "(e) buffer_keys = 64, flush_interval 60 s: adds to 1,000 new keys"
q "ALTER SYSTEM SET distributed_counter.buffer_keys = 64"
restart
[ "$(setting distributed_counter.buffer_keys)" == 64 ] || fail "(e) buffer_keys is $(setting distributed_counter.buffer_keys) after the restart"
q "SELECT counter_create('bf', mode => 'buffered'), counter_create('bf1', mode => 'buffered')" >/dev/null
for i in $(seq 1 1000); do echo "SELECT counter_add('bf', 'k$i', 1);"; done > "$WORK/bf.sql"
psql_db -f "$WORK/bf.sql" >/dev/null 2>"$WORK/bf.err" || fail "(e) an autocommit add failed with the table full: $(head -3 "$WORK/bf.err")"
# the same in one transaction (merged at commit into a table already full)
q "SELECT count(counter_add('bf1', 'k' || i, 1)) FROM generate_series(1, 1000) i" >/dev/null 2>"$WORK/bf1.err" \
  || fail "(e) a transaction of 1,000 adds failed with the table full: $(head -3 "$WORK/bf1.err")"
check_bf() { # label: every key of bf and bf1 is 1, by counter_value, counter_values, counter_top
  local got
  got=$(q "SELECT concat_ws(' ',
             (SELECT count(*) FROM generate_series(1, 1000) i WHERE counter_value('bf', 'k' || i) <> 1),
             (SELECT count(*) FROM counter_values('bf1', ARRAY(SELECT 'k' || i FROM generate_series(1, 1000) i)) WHERE value <> 1),
             (SELECT count(*) FILTER (WHERE value = 1) FROM counter_top('bf', 2000)),
             (SELECT count(*) FILTER (WHERE value = 1) FROM counter_top('bf1', 2000)))")
  [ "$got" == "0 0 1000 1000" ] || fail "(e) $1: keys not 1 (counter_value bf, counter_values bf1) / keys at 1 in counter_top (bf, bf1): $got, want 0 0 1000 1000"
}
check_bf "with the table full"
read -r un_bf un_bf1 pend <<< "$(q "SELECT concat_ws(' ', (SELECT coalesce(unflushed, 0) FROM counter_stats WHERE name = 'bf'),
  (SELECT coalesce(unflushed, 0) FROM counter_stats WHERE name = 'bf1'), (SELECT sum(pending_rows) FROM counter_stats WHERE name IN ('bf', 'bf1')))")"
un_all=$(q "SELECT coalesce(sum(unflushed), 0) FROM counter_stats")
awk -v u="$un_all" 'BEGIN { exit !(u <= 128) }' || fail "(e) $un_all unflushed with buffer_keys = 64 (bf $un_bf, bf1 $un_bf1): the table holds more than it should"
[ "$un_all" -le 64 ] || warn "(e) $un_all unflushed with buffer_keys = 64 (under 2x: allowed)"
gt0 "$un_bf" || warn "(e) nothing of 'bf' was buffered: did its first adds go durable with the table empty?"
say "ok: (e) 2,000 adds to new keys with room for 64: no error, every key 1; unflushed bf $un_bf, bf1 $un_bf1 (all counters $un_all), $((2000 - un_all)) durable ($pend pending rows now)"
rows=$(q "SELECT counter_flush()")
check_bf "after counter_flush()"
[ "$(q "SELECT coalesce(sum(unflushed), 0) FROM counter_stats")" == 0 ] || fail "(e) unflushed left after counter_flush()"
say "ok: (e) counter_flush() wrote $rows rows; every key still 1, nothing unflushed"
q "ALTER SYSTEM RESET distributed_counter.buffer_keys"
q "ALTER SYSTEM RESET distributed_counter.flush_interval"
restart

# ---- (f) a database the worker does not serve: adds are durable -------------------------
P "CREATE DATABASE $OTHER_DB" >/dev/null
qo() { PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -U postgres -d "$OTHER_DB" -c "$1"; }
qo "CREATE EXTENSION distributed_counter" >/dev/null
qo "SELECT counter_create('o', mode => 'buffered')" >/dev/null
for _ in $(seq 1 100); do echo "SELECT counter_add('o', 'x', 1);"; done > "$WORK/o.sql"
PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -U postgres \
  -d "$OTHER_DB" -f "$WORK/o.sql" >/dev/null
got=$(qo "SELECT concat_ws(' ', counter_value('o', 'x'), (SELECT coalesce(unflushed, 0) || ' ' || pending_rows FROM counter_stats WHERE name = 'o'))")
[ "$got" == "100 0 100" ] || fail "(f) in $OTHER_DB (no worker): value, unflushed, pending_rows = $got, want 100 0 100 (every add a durable pending row)"
say "ok: (f) in $OTHER_DB, which the worker does not serve, 100 adds to a buffered counter are 100 durable pending rows, nothing unflushed"

# ---- (g) two-phase commit: PREPARE TRANSACTION after a buffered add is refused -----------
# (another session could COMMIT PREPARED it, and the add lives in this backend's memory)
before=$(q "SELECT counter_value('b', 'k1')")
got=$(psql_db -v VERBOSITY=sqlstate -c "BEGIN" -c "SELECT counter_add('b', 'k1', 1000)" \
  -c "PREPARE TRANSACTION 'dc_buffered_2pc'" 2>&1 || true)
grep -q "0A000" <<<"$got" || fail "(g) PREPARE TRANSACTION after a buffered add: want SQLSTATE 0A000, got: $got"
after=$(q "SELECT counter_value('b', 'k1')")
[ "$before" == "$after" ] || fail "(g) the refused PREPARE's add counted: $before -> $after"
# and the add after it in the same session is buffered and counted as usual
q "SELECT counter_add('b', 'k1', 1)" >/dev/null
[ "$(q "SELECT counter_value('b', 'k1')")" == "$((before + 1))" ] || fail "(g) the next add after the refused PREPARE did not count once"
say "ok: (g) PREPARE TRANSACTION after a buffered add is 0A000 and the add counts nothing; the session's next add counts once"

# ---- (h) counter_set on a buffered counter with unflushed adds ----------------------------
set_flush_interval 60000
q "SELECT counter_add('b', 'set1', 5)" >/dev/null
gt0 "$(q "SELECT coalesce(unflushed, 0) FROM counter_stats WHERE name = 'b'")" \
  || fail "(h) the add to 'set1' is not unflushed (was it buffered?)"
q "SELECT counter_set('b', 'set1', 100)" >/dev/null
[ "$(q "SELECT counter_value('b', 'set1')")" == 100 ] || fail "(h) counter_set over an unflushed add: $(q "SELECT counter_value('b', 'set1')"), want 100"
q "SELECT counter_add('b', 'set1', 1)" >/dev/null
rows=$(q "SELECT counter_flush()")
[ "$(q "SELECT counter_value('b', 'set1')")" == 101 ] || fail "(h) after an add and a flush: $(q "SELECT counter_value('b', 'set1')"), want 101"
# counter_flush() in an open transaction: its own later reads count the flushed adds once
# (its rows, not also the slot), and it cannot be prepared.
q "SELECT counter_add('b', 'set1', 7)" >/dev/null
got=$(psql_db -c "BEGIN" -c "SELECT counter_flush()" -c "SELECT counter_value('b', 'set1')" -c "COMMIT" | tail -1)
[ "$got" == 108 ] || fail "(h) counter_value after counter_flush() in the same transaction: $got, want 108"
q "SELECT counter_add('b', 'set1', 1)" >/dev/null
got=$(psql_db -v VERBOSITY=sqlstate -c "BEGIN" -c "SELECT counter_flush()" -c "PREPARE TRANSACTION 'dc_flush_2pc'" 2>&1 || true)
grep -q "0A000" <<<"$got" || fail "(h) PREPARE TRANSACTION after counter_flush(): want 0A000, got: $got"
[ "$(q "SELECT counter_value('b', 'set1')")" == 109 ] || fail "(h) after the refused PREPARE: $(q "SELECT counter_value('b', 'set1')"), want 109"
set_flush_interval DEFAULT
say "ok: (h) counter_set over an unflushed add sets the value; a later add and a flush ($rows entries) count on top once; counter_flush() in an open transaction counts once for its own reads, and is not prepared"
say "all buffered-counter checks passed"
