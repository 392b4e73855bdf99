#!/usr/bin/env bash
# Sharded counters under write contention, against baselines measured in the same run on
# the same cluster (its own cluster dc_bench_counters, port 5494, release build, default synchronous_commit, the
# compaction worker running with its default settings):
#   32 clients on ONE hot key: counter_add vs single-row `UPDATE n = n + 1` vs a plain
#   append-only INSERT; the same over 1,000 keys, uniform and Zipf (s = 1.1).
#   While counter_add runs, counter_stats is sampled every second (pending rows,
#   oldest_pending_age) and the pending table's size is reported.
#   counter_value latency (p50/p99, 16 shards) on an idle server and under the Zipf
#   write load, against a primary-key SELECT of one row under the same conditions.
# Connections: TCP to localhost without SSL (PGBENCH_SSLMODE=disable), as the reference
# figures in README.md were measured: its `SELECT 1` at 69,745 tps is what this machine does
# over TCP without SSL (about 70k), against about 48k with the Debian cluster's default
# SSL and 96k over the Unix socket. The run prints its own SELECT 1 rate as a check.
# Usage: benches/counters_pgbench.sh   (~10 min incl. the release build; SECONDS_PER_RUN=8,
#        ROUNDS=5, CLIENTS=32, PGBENCH_MODE=prepared|simple, PGBENCH_SSLMODE=disable|require;
#        SKIP_INSTALL=1 to reuse an installed release build)
cd "$(dirname "$0")/.."
source benches/lib.sh
# A cluster of its own (other benchmarks restart and reconfigure dc_bench).
BENCH_PORT=${COUNTERS_BENCH_PORT:-5494}
bench_own_cluster dc_bench_counters "max_wal_size = '4GB'" || exit 1
T=${SECONDS_PER_RUN:-8}
ROUNDS=${ROUNDS:-5}
SSLMODE=${PGBENCH_SSLMODE:-disable}
# pgbench protocol: prepared (what drivers with server-side prepared statements use) or
# simple (every statement parsed and planned again). Applies to every workload.
MODE=${PGBENCH_MODE:-prepared}
C=${CLIENTS:-32}
J=${THREADS:-2}
KEYS=1000
OUT=$(mktemp -d /tmp/counters_pgbench.XXXXXX)
chmod 777 "$OUT"
trap 'jobs -p | xargs -r kill 2>/dev/null || true; rm -rf "$OUT"' EXIT

bench_fresh_db
bq() { bpsql -d "$BENCH_DB" -At -c "$1"; }
bpsql -d "$BENCH_DB" <<SQL >/dev/null
CREATE EXTENSION distributed_counter;
CREATE TABLE one_row (id int PRIMARY KEY, n int8 NOT NULL);
INSERT INTO one_row VALUES (1, 0);
CREATE TABLE key_rows (id int PRIMARY KEY, n int8 NOT NULL);
INSERT INTO key_rows SELECT i, 0 FROM generate_series(1, $KEYS) i;
CREATE TABLE appended (key text NOT NULL, delta int8 NOT NULL, at timestamptz NOT NULL DEFAULT now());
SELECT counter_create('hot', 16), counter_create('uniform', 16), counter_create('zipf', 16);
SQL
bench_wait_worker
bench_log "settings: $(bq "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('distributed_counter.compact_interval', 'distributed_counter.compact_batch', 'synchronous_commit', 'fsync')")"

# Workload scripts. $1 = key choice.
write_scripts() { # name keyexpr
  local name=$1 pick=$2
  printf '%s\n' "$pick" "UPDATE $( [ "$name" == hot ] && echo "one_row SET n = n + 1 WHERE id = 1" || echo "key_rows SET n = n + 1 WHERE id = :k");" > "$OUT/$name-update.sql"
  printf '%s\n' "$pick" "INSERT INTO appended (key, delta) VALUES ('k' || :k, 1);" > "$OUT/$name-insert.sql"
  printf '%s\n' "$pick" "SELECT counter_add('$name', 'k' || :k);" > "$OUT/$name-counter.sql"
}
write_scripts hot '\set k 1'
write_scripts uniform "\\set k random(1, $KEYS)"
write_scripts zipf "\\set k random_zipfian(1, $KEYS, 1.1)"
chmod 644 "$OUT"/*.sql

# sample counter_stats for counter $1 every second while pid $2 lives
sample_stats() {
  local name=$1 pid=$2
  while kill -0 "$pid" 2>/dev/null; do
    bq "SELECT pending_rows, coalesce(extract(epoch FROM oldest_pending_age), 0) FROM counter_stats WHERE name = '$name'" \
      >> "$OUT/samples-$name" 2>/dev/null || true
    sleep 1
  done
}

# calibration against the reference run (SELECT 1, simple protocol: 69,745 tps)
printf '%s\n' "SELECT 1;" > "$OUT/select1.sql"
chmod 644 "$OUT/select1.sql"
SELECT1=$(MODE=simple bench_pgbench "$OUT/select1.sql" "$C" 5)
bench_log "SELECT 1: $SELECT1 tps (sslmode=$SSLMODE)"


# Each workload: ROUNDS rounds of UPDATE, INSERT, counter_add back to back, so a slow
# phase of the shared machine hits all three alike; the median of each is reported.
declare -A TPS ALL
for workload in hot uniform zipf; do
  : > "$OUT/samples-$workload"
  for round in $(seq 1 "$ROUNDS"); do
    for kind in update insert counter; do
      bq "CHECKPOINT" >/dev/null
      if [ "$kind" == counter ]; then
        bench_pgbench "$OUT/$workload-$kind.sql" "$C" "$T" > "$OUT/tps" &
        bp=$!
        sample_stats "$workload" "$bp" &
        wait $bp
        tps=$(cat "$OUT/tps")
      else
        tps=$(bench_pgbench "$OUT/$workload-$kind.sql" "$C" "$T")
      fi
      ALL[$workload-$kind]="${ALL[$workload-$kind]:-} $tps"
      bench_log "$workload round $round $kind: $tps tps"
    done
  done
  for kind in update insert counter; do
    TPS[$workload-$kind]=$(echo "${ALL[$workload-$kind]}" | bench_median)
  done
  # exactness spot check: every add of this run is counted
  added=$(bq "SELECT sum(value) FROM counter_values('$workload', ARRAY(SELECT 'k' || i FROM generate_series(1, $KEYS) i))")
  bench_log "$workload: counters hold $added adds; pending table $(bq "SELECT pg_size_pretty(pg_total_relation_size('counter_pending'))")"
done

# read latency: idle, then under the Zipf write load; baseline a PK read of one row
printf '%s\n' "\\set k random_zipfian(1, $KEYS, 1.1)" "SELECT counter_value('zipf', 'k' || :k);" > "$OUT/read-counter.sql"
printf '%s\n' "\\set k random_zipfian(1, $KEYS, 1.1)" "SELECT n FROM key_rows WHERE id = :k;" > "$OUT/read-row.sql"
chmod 644 "$OUT"/*.sql
latency() { # file label -> "p50 p99" in ms from a pgbench latency log
  rm -f "$OUT"/lat.*
  (cd "$OUT" && bench_pgbench "$1" 4 "$((T / 2))" -l --log-prefix="$OUT/lat" >/dev/null)
  cat "$OUT"/lat.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}'
}
pending_rows=$(bq "SELECT sum(pending_rows) FROM counter_stats")
# "idle": the worker has drained the pending rows and the table has been vacuumed (what
# autovacuum does within a minute), so reads do not wade through the last run's dead rows
for _ in $(seq 1 60); do
  [ "$(bq "SELECT sum(pending_rows) FROM counter_stats")" == 0 ] && break
  sleep 1
done
bq "VACUUM ANALYZE counter_pending" >/dev/null
bench_log "read latency, idle"
read -r c50 c99 <<< "$(latency "$OUT/read-counter.sql")"
read -r r50 r99 <<< "$(latency "$OUT/read-row.sql")"
# under load: default compact_interval, then 200 ms (fewer pending rows per hot key)
under_load() { # interval_ms -> "counter_p50 counter_p99 pk_p50 pk_p99"
  bq "ALTER SYSTEM SET distributed_counter.compact_interval = $1" >/dev/null
  bq "SELECT pg_reload_conf()" >/dev/null
  bench_pgbench "$OUT/zipf-counter.sql" "$C" "$((T * 2 + 4))" > "$OUT/bg.tps" &
  local bg=$!
  sleep 2
  echo "$(latency "$OUT/read-counter.sql") $(latency "$OUT/read-row.sql")"
  wait $bg
}
bench_log "read latency, under the Zipf counter_add load ($C clients), compact_interval 1000 ms"
read -r lc50 lc99 lr50 lr99 <<< "$(under_load 1000)"
bench_log "read latency, under the Zipf counter_add load ($C clients), compact_interval 200 ms"
read -r fc50 fc99 fr50 fr99 <<< "$(under_load 200)"
bq "ALTER SYSTEM RESET distributed_counter.compact_interval" >/dev/null
bq "SELECT pg_reload_conf()" >/dev/null

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "== counters_pgbench: $C clients, -M $MODE, median of $ROUNDS interleaved ${T}s runs, $(nproc) cores, release build =="
printf '%-10s %12s %12s %12s %16s %16s\n' workload "UPDATE tps" "INSERT tps" "counter_add" "add/UPDATE" "add/INSERT"
for w in hot uniform zipf; do
  printf '%-10s %12s %12s %12s %15sx %15sx\n' "$w" "${TPS[$w-update]}" "${TPS[$w-insert]}" "${TPS[$w-counter]}" \
    "$(ratio "${TPS[$w-counter]}" "${TPS[$w-update]}")" "$(ratio "${TPS[$w-counter]}" "${TPS[$w-insert]}")"
done
per_round() { # workload -> counter_add/UPDATE ratio of each round
  paste -d' ' <(echo "${ALL[$1-counter]}" | tr ' ' '\n' | grep -v '^$') \
              <(echo "${ALL[$1-update]}" | tr ' ' '\n' | grep -v '^$') |
    awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $2}'
}
echo "counter_add/UPDATE per round: hot $(per_round hot); uniform $(per_round uniform); zipf $(per_round zipf)"
echo "SELECT 1 (simple protocol, same connections): $SELECT1 tps (reference run on this machine type: 69,745)"
echo
echo "worker under load (counter_stats sampled every 1 s; default compact_interval/batch):"
for w in hot uniform zipf; do
  printf '  %-8s max pending_rows %8s   max oldest_pending_age %6.2f s\n' "$w" \
    "$(cut -d'|' -f1 "$OUT/samples-$w" | sort -n | tail -1)" \
    "$(cut -d'|' -f2 "$OUT/samples-$w" | sort -g | tail -1)"
done
echo "  pending rows left after the last run: $pending_rows; counter_pending size now $(bq "SELECT pg_size_pretty(pg_total_relation_size('counter_pending'))")"
echo
echo "read latency, 4 clients, Zipf keys (ms):"
printf '  %-34s p50 %7s  p99 %7s\n' "counter_value (16 shards), idle" "$c50" "$c99" \
  "PK row SELECT, idle" "$r50" "$r99" \
  "counter_value, under $C-client adds" "$lc50" "$lc99" \
  "PK row SELECT, under $C-client adds" "$lr50" "$lr99" \
  "counter_value, same, interval 200 ms" "$fc50" "$fc99" \
  "PK row SELECT, same, interval 200 ms" "$fr50" "$fr99"
echo "  counter_value / PK SELECT p99: idle $(ratio "$c99" "$r99")x, under load $(ratio "$lc99" "$lr99")x (interval 200 ms: $(ratio "$fc99" "$fr99")x)"
