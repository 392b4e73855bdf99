#!/usr/bin/env bash
# pncounter_merge_agg over 100k stored counters of 8 nodes each, next to sum() over the
# same number of rows (an int8 column of the same table) in the same run and cluster.
# Prints per-query median times and the ratio merge_agg / sum. Also gcounter_merge_agg.
#
# Needs the RELEASE build installed and a cluster of its own; run everything under the
# shared lock, e.g.:
#   flock /tmp/distributed_counter.pg.lock bash -c 'cargo pgrx install --release \
#       --pg-config /usr/lib/postgresql/15/bin/pg_config && benches/crdt_merge_agg.sh'
# Env: BENCH_PORT (default 5531), BENCH_ROWS (default 100000), BENCH_REPS (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${BENCH_PORT:-5531}
ROWS=${BENCH_ROWS:-100000}
REPS=${BENCH_REPS:-15}
./scripts/cluster.sh dc_bench "$PORT" "jit = off" "max_parallel_workers_per_gather = 0"
psql_() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -d postgres "$@"; }

psql_ <<SQL
DROP EXTENSION IF EXISTS distributed_counter CASCADE;
CREATE EXTENSION distributed_counter;
DROP TABLE IF EXISTS crdt_bench;
-- 8 nodes per counter, both parts populated, values vary per row.
CREATE TABLE crdt_bench AS
SELECT i AS id, i::int8 AS v,
       (SELECT pncounter_merge_agg(pncounter_decrement(pncounter_increment(NULL, (i * 7 + n * 13) % 100000 + 1, 'region-' || n),
                                                       (i + n) % 1000, 'region-' || n))
          FROM generate_series(0, 7) n) AS p,
       (SELECT gcounter_merge_agg(gcounter_increment(NULL, (i * 7 + n * 13) % 100000 + 1, 'region-' || n))
          FROM generate_series(0, 7) n) AS g
FROM generate_series(1, $ROWS) i;
VACUUM ANALYZE crdt_bench;
SQL
echo "rows: $ROWS, nodes per counter: 8, avg pncounter bytes: $(psql_ -Atc "SELECT avg(pg_column_size(p))::int FROM crdt_bench")"

# Median of REPS timings (ms) of one query, measured server-side with EXPLAIN ANALYZE
# (TIMING OFF: no per-node clock overhead), after one warm-up.
median_ms() {
  local q=$1
  psql_ -Atc "$q" >/dev/null
  for ((r = 0; r < REPS; r++)); do
    psql_ -Atc "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) $q" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])'
  done | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# Interleave the baseline and the aggregates so drift hits all alike.
sum_ms=$(median_ms "SELECT sum(v) FROM crdt_bench")
pn_ms=$(median_ms "SELECT pncounter_merge_agg(p) FROM crdt_bench")
g_ms=$(median_ms "SELECT gcounter_merge_agg(g) FROM crdt_bench")
sum2_ms=$(median_ms "SELECT sum(v) FROM crdt_bench")
base=$(python3 -c "print(min($sum_ms, $sum2_ms))")
python3 - "$base" "$pn_ms" "$g_ms" "$ROWS" <<'PY'
import sys
base, pn, g, rows = map(float, sys.argv[1:])
print(f"sum(v)                   {base:8.2f} ms  ({base * 1e6 / rows:6.1f} ns/row)  1.00x")
print(f"pncounter_merge_agg(p)   {pn:8.2f} ms  ({pn * 1e6 / rows:6.1f} ns/row)  {pn / base:.2f}x sum")
print(f"gcounter_merge_agg(g)    {g:8.2f} ms  ({g * 1e6 / rows:6.1f} ns/row)  {g / base:.2f}x sum")
PY
psql_ -c "DROP TABLE crdt_bench"
