#!/usr/bin/env bash
# Sizing figures for sharded counters (README "Sizing"), measured on a cluster of its own
# (dc_bench_sizing, port 5492, release build, the compaction worker paused so that the
# figures are one process's):
#   - bytes per key of counter_totals (heap + primary key) and per pending row, for
#     KEYS distinct keys of about 12 bytes;
#   - compaction throughput: pending rows folded per second by counter_compact(), for
#     new keys and for keys that already have a total;
#   - counter_stats latency with KEYS keys (median of 5), against the count of keys by
#     scanning the totals and pending tables that it replaced (measured in the same run).
# Usage: benches/counters_sizing.sh   (KEYS=1000000; SKIP_INSTALL=1 to reuse an installed
#        release build)
cd "$(dirname "$0")/.."
source benches/lib.sh
BENCH_PORT=${SIZING_BENCH_PORT:-5492}
bench_own_cluster dc_bench_sizing "distributed_counter.worker_enabled = off" "max_wal_size = '4GB'" || exit 1
KEYS=${KEYS:-1000000}
bench_fresh_db
bq() { bpsql -d "$BENCH_DB" -At -c "$1"; }
bq "CREATE EXTENSION distributed_counter" >/dev/null
bq "SELECT counter_create('sizing', 16)" >/dev/null
ms() { # SQL: wall ms of one run
  local t0 t1; t0=$(date +%s%N); bq "$1" >/dev/null; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 ))
}

bench_log "adding $KEYS distinct keys"
bq "SELECT count(*) FROM (SELECT counter_add('sizing', 'user:' || lpad(g::text, 7, '0')) FROM generate_series(1, $KEYS) g) s" >/dev/null
bq "VACUUM ANALYZE counter_pending" >/dev/null
pending_bytes=$(bq "SELECT pg_total_relation_size('counter_pending')")
c1=$(ms "SELECT counter_compact()")
bq "VACUUM ANALYZE counter_totals" >/dev/null
totals_bytes=$(bq "SELECT pg_total_relation_size('counter_totals')")
bench_log "adding $KEYS more rows to keys that have a total"
bq "SELECT count(*) FROM (SELECT counter_add('sizing', 'user:' || lpad(g::text, 7, '0')) FROM generate_series(1, $KEYS) g) s" >/dev/null
c2=$(ms "SELECT counter_compact()")
bq "VACUUM ANALYZE counter_pending, counter_totals" >/dev/null
# some rows pending, as on a live server
bq "SELECT count(*) FROM (SELECT counter_add('sizing', 'user:' || lpad((g * 7)::text, 7, '0')) FROM generate_series(1, 10000) g) s" >/dev/null
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
stats=$(for _ in 1 2 3 4 5; do ms "SELECT keys FROM counter_stats WHERE name = 'sizing'"; done | median)
scan=$(for _ in 1 2 3 4 5; do ms "SELECT count(*) FROM (SELECT t.key FROM counter_totals t WHERE t.counter_id = 1
                                     UNION SELECT p.key FROM counter_pending p WHERE p.counter_id = 1) k"; done | median)
keys=$(bq "SELECT keys FROM counter_stats WHERE name = 'sizing'")

echo
echo "== counters sizing: $KEYS keys of 12 bytes, release build, $(nproc) cores =="
printf '%-58s %12s\n' "counter_totals, bytes per key (heap + indexes)" "$((totals_bytes / KEYS))"
printf '%-58s %12s\n' "counter_pending, bytes per pending row (heap + index)" "$((pending_bytes / KEYS))"
printf '%-58s %12.0f\n' "compaction, rows/s, new keys (one counter_compact())" "$(echo "$KEYS * 1000 / $c1" | bc -l)"
printf '%-58s %12.0f\n' "compaction, rows/s, keys with a total" "$(echo "$KEYS * 1000 / $c2" | bc -l)"
printf '%-58s %12s\n' "counter_stats keys (10,000 rows pending)" "$keys"
printf '%-58s %12s\n' "counter_stats, ms (median of 5)" "$stats"
printf '%-58s %12s\n' "counting the keys by scanning, ms (what it replaced)" "$scan"
