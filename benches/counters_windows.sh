#!/usr/bin/env bash
# Bucketed counters (README "Time windows and leaderboards"), on a cluster of its own
# (dc_bench_windows, port 5493, release build, the compaction worker on):
#   1. storage over time under constant load past the retention: a counter with 1 second
#      buckets and 20 s retention (the only counter at that point), 4 clients adding for
#      LOAD_SECONDS s to 5,000 keys; the bytes of the counter tables every 3 s
#      (bench-out/counters_windows_storage.csv and .png): flat once the retention and
#      the first vacuum of the deleted buckets are reached;
#   2. the cost of a windowed counter_add (bucket 1 minute, retention 1 hour) against a
#      plain one: 8 pgbench clients over 100,000 keys, ROUNDS alternating runs of each,
#      the ratio of their median tps (target: windowed at most 1.1x the cost);
#   3. counter_top(n => 10) over KEYS keys (a plain counter, and a bucketed one with 1
#      minute buckets), latency of one client, idle and under write load (4 clients
#      adding to random keys), p50 and p99 (target: p99 under 20 ms idle).
# PARTS="storage add top" picks parts.
# Usage: benches/counters_windows.sh   (KEYS=1000000 ROUNDS=5 LOAD_SECONDS=180; SKIP_INSTALL=1
#        to reuse an installed release build)
cd "$(dirname "$0")/.."
source benches/lib.sh
BENCH_PORT=${WINDOWS_BENCH_PORT:-5493}
bench_own_cluster dc_bench_windows "distributed_counter.compact_interval = 200" "max_wal_size = '4GB'" || exit 1
KEYS=${KEYS:-1000000}
ROUNDS=${ROUNDS:-5}
SECONDS_LOAD=${LOAD_SECONDS:-180}
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
chmod 777 "$OUT"
bench_fresh_db
bq() { bpsql -d "$BENCH_DB" -At -c "$1"; }
bq "CREATE EXTENSION distributed_counter" >/dev/null
bq "SELECT counter_create('plain'), counter_create('win', bucket => '1 minute', retention => '1 hour')" >/dev/null
tmp=$(mktemp -d)
chmod 777 "$tmp"  # pgbench (as postgres) writes its latency logs here
PARTS=${PARTS:-add top storage}
part() { [[ " $PARTS " == *" $1 "* ]]; }
echo "== counters with time buckets: release build, $(nproc) cores, $(date -u +%Y-%m-%d) ==" > "$tmp/summary"
trap 'rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT

# ---- 1. storage over time under constant load (first: the tables hold only this counter)
if part storage; then
bench_log "storage: 1 second buckets, 20 s retention, 4 clients for $SECONDS_LOAD s"
bq "SELECT counter_create('flat', bucket => '1 second', retention => '20 seconds')" >/dev/null
printf '\\set id random(1, 5000)\nSELECT counter_add(%s, %s || :id);\n' "'flat'" "'k'" > "$tmp/flat.sql"
chmod 644 "$tmp/flat.sql"
bench_pgbench "$tmp/flat.sql" 4 "$SECONDS_LOAD" > "$tmp/flat_tps" &
csv="$OUT/counters_windows_storage.csv"
echo "seconds,totals_bytes,buckets_bytes,pending_bytes,bucket_rows" > "$csv"
start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt "$SECONDS_LOAD" ]; do
  row=$(bq "SELECT pg_total_relation_size('counter_totals'), pg_total_relation_size('counter_buckets'),
                   pg_total_relation_size('counter_pending'),
                   (SELECT count(*) FROM counter_buckets b JOIN counter_registry r ON r.id = b.counter_id WHERE r.name = 'flat')" | tr '|' ',')
  echo "$(( $(date +%s) - start )),$row" >> "$csv"
  sleep 3
done
wait
flat_tps=$(cat "$tmp/flat_tps")
{
  echo "storage under $flat_tps adds/s for $SECONDS_LOAD s (1 s buckets, 20 s retention): $csv"
  awk -F, 'NR > 1 { t = $2 + $3 + $4; printf "  t=%3ss  tables %6.1f MB  bucket rows %7d\n", $1, t / 1048576, $5 }' "$csv"
} >> "$tmp/summary"
/usr/bin/python3 - "$csv" "$OUT/counters_windows_storage.png" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("(matplotlib missing: no plot)")
    sys.exit(0)
t = [int(r["seconds"]) for r in rows]
mb = lambda k: [int(r[k]) / 1048576 for r in rows]
fig, ax = plt.subplots(figsize=(9, 4.5))
ax.stackplot(t, mb("totals_bytes"), mb("buckets_bytes"), mb("pending_bytes"),
             labels=["counter_totals", "counter_buckets", "counter_pending"])
ax.axvline(20, color="k", ls="--", lw=1, label="retention (20 s)")
ax.set_xlabel("seconds of constant load")
ax.set_ylabel("MB (heap + indexes)")
ax.set_title("Storage of a counter with 1 s buckets and 20 s retention under constant load")
ax.legend(loc="upper left")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print("plot:", sys.argv[2])
PY
fi

# ---- 2. windowed add against plain -----------------------------------------------------
if part add; then
for c in plain win; do
  printf '\\set id random(1, 100000)\nSELECT counter_add(%s, %s || :id);\n' "'$c'" "'k'" > "$tmp/add_$c.sql"
done
chmod 644 "$tmp"/*.sql
bench_log "windowed against plain counter_add: $ROUNDS rounds of 10 s each, 8 clients"
plain_tps=(); win_tps=()
for r in $(seq 1 "$ROUNDS"); do
  plain_tps+=("$(bench_pgbench "$tmp/add_plain.sql" 8 10)")
  win_tps+=("$(bench_pgbench "$tmp/add_win.sql" 8 10)")
  bench_log "round $r: plain ${plain_tps[-1]} tps, windowed ${win_tps[-1]} tps"
done
plain_med=$(echo "${plain_tps[*]}" | bench_median)
win_med=$(echo "${win_tps[*]}" | bench_median)
{
  printf '%-62s %12s\n' "plain counter_add, median tps of $ROUNDS x 10 s (8 clients)" "$plain_med"
  printf '%-62s %12s\n' "windowed counter_add (1 minute buckets), median tps" "$win_med"
  printf '%-62s %11.3fx\n' "cost of a windowed add / a plain add (target <= 1.1)" "$(echo "$plain_med / $win_med" | bc -l)"
  echo "  per round, plain/windowed tps: $(for i in "${!plain_tps[@]}"; do printf '%.0f/%.0f ' "${plain_tps[$i]}" "${win_tps[$i]}"; done)"
} >> "$tmp/summary"
fi

# ---- 3. counter_top over KEYS keys ----------------------------------------------------------
if part top; then
bench_log "filling 'top' (plain) and 'topw' (1 minute buckets) with $KEYS keys"
bq "SELECT counter_create('top'), counter_create('topw', bucket => '1 minute', retention => '1 day')" >/dev/null
# values with many ties and a long tail: hash-spread over 0..9999
bq "SELECT count(*) FROM (SELECT counter_add('top', 'user:' || g, (hashint4(g) & 16383)::int8) FROM generate_series(1, $KEYS) g) s" >/dev/null
bq "SELECT count(*) FROM (SELECT counter_add('topw', 'user:' || g, (hashint4(g) & 16383)::int8, NULL,
                                             now() - (g % 30) * interval '1 minute') FROM generate_series(1, $KEYS) g) s" >/dev/null
bq "SELECT counter_compact()" >/dev/null
bq "VACUUM ANALYZE counter_totals, counter_buckets, counter_pending" >/dev/null
latency() { # $1 counter, $2 label: p50 and p99 ms of counter_top over 10 s, one client
  printf 'SELECT * FROM counter_top(%s, 10);\n' "'$1'" > "$tmp/top_$1.sql"
  chmod 644 "$tmp/top_$1.sql"
  rm -f "$tmp"/toplog*
  (cd "$tmp" && runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -h localhost -p "$BENCH_PORT" -n -M prepared \
     -c 1 -T 10 -l --log-prefix="$tmp/toplog" -f "$tmp/top_$1.sql" "$BENCH_DB" >/dev/null 2>&1)
  cat "$tmp"/toplog* | awk '{print $3 / 1000}' | sort -g \
    | awk -v label="$2" '{a[NR]=$1} END {printf "%s %.2f %.2f %d\n", label, a[int(NR*0.5)], a[int(NR*0.99)], NR}'
}
bench_log "counter_top latency, idle"
top_idle=$(latency top "plain")
topw_idle=$(latency topw "bucketed")
bench_log "counter_top latency under write load (4 clients adding to random keys of each counter)"
printf '\\set id random(1, %s)\nSELECT counter_add(%s, %s || :id, 1);\nSELECT counter_add(%s, %s || :id, 1);\n' \
  "$KEYS" "'top'" "'user:'" "'topw'" "'user:'" > "$tmp/load.sql"
chmod 644 "$tmp/load.sql"
bench_pgbench "$tmp/load.sql" 4 25 > "$tmp/load_tps" &
sleep 3
top_load=$(latency top "plain")
topw_load=$(latency topw "bucketed")
wait
load_tps=$(cat "$tmp/load_tps")
{
  echo "counter_top(n => 10) over $KEYS keys, one client, 10 s:      p50 ms    p99 ms   calls"
  for line in "$top_idle" "$topw_idle"; do
    set -- $line; printf '  idle, %-52s %8s %9s %7s\n' "$1" "$2" "$3" "$4"
  done
  for line in "$top_load" "$topw_load"; do
    set -- $line; printf '  under %s adds/s, %-40s %8s %9s %7s\n' "$(printf '%.0f' "$(echo "$load_tps * 2" | bc -l)")" "$1" "$2" "$3" "$4"
  done
} >> "$tmp/summary"
fi

echo
cat "$tmp/summary"
exit 0
