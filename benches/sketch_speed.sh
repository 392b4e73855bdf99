#!/usr/bin/env bash
# cms / topk aggregate speed against sum() over the same column, same cluster, same run.
# 10M-row table (id = 1..N, v ~ Zipf 1.1 over 10^6 values), parallel off, jit off, release
# build, cluster dc_bench_sk on port 5496. Prints median times, ratios, and the peak-RSS
# growth of a backend running topk over all rows (the expanded-object state is bounded).
# Targets (README.md, "Accuracy and speed"): cms_add_agg(id) <= 1.25x sum(id); topk_add_agg(v, 10) <= 2x sum(v).
# Usage: benches/sketch_speed.sh   (SKIP_INSTALL=1 to reuse the installed build,
#        SKIP_LOAD=1 to reuse the tables, ROWS=..., RUNS=...)
cd "$(dirname "$0")/.."
export BENCH_PORT=${BENCH_PORT:-5496} BENCH_DB=${BENCH_DB:-dc_bench_sk}
source benches/lib.sh
exec 9>/tmp/distributed_counter.pg.lock
flock 9
if [ -z "${SKIP_INSTALL:-}" ]; then
  bench_log "installing the release build (fat LTO: a few minutes)"
  cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/tmp/dc-bench-sk-install.log 2>&1 9>&- \
    || { tail -30 /tmp/dc-bench-sk-install.log; exit 1; }
fi
./scripts/cluster.sh dc_bench_sk "$BENCH_PORT" "jit = off" "max_parallel_workers_per_gather = 0" \
  "shared_buffers = '2GB'" "work_mem = '256MB'" "distributed_counter.database = '$BENCH_DB'" 9>&-
ROWS=${ROWS:-10000000}
SKETCHES=${SKETCHES:-10000}
RUNS=${RUNS:-5}
if [ -z "${SKIP_LOAD:-}" ]; then
  bench_fresh_db
  bench_log "loading $ROWS rows and $SKETCHES stored cms sketches"
  bpsql -d "$BENCH_DB" <<SQL
CREATE EXTENSION distributed_counter;
SELECT setseed(0.11);
CREATE TABLE bench AS
SELECT g::int8 AS id, floor(pow(1 - random() * (1 - pow(1e6, -0.1)), -10))::int8 AS v
FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE bench;
-- $SKETCHES stored sketches (eps 0.01, delta 0.01: 10.9 KB each) of 1000 values each
CREATE TABLE sketches AS
SELECT id % $SKETCHES AS k, cms_add_agg(v, 0.01, 0.01) AS s FROM bench WHERE id <= $SKETCHES * 1000 GROUP BY 1;
VACUUM ANALYZE sketches;
SQL
fi
bpsql -d "$BENCH_DB" -At \
  -c "SELECT 'rows ' || count(*) || ', distinct v ' || count(DISTINCT v) FROM bench" \
  -c "SELECT 'stored cms sketches ' || count(*) || ', avg bytes ' || avg(pg_column_size(s))::int || ', table MB ' || pg_total_relation_size('sketches') / 1048576 FROM sketches"
# warm the caches
bpsql -d "$BENCH_DB" -At -c "SELECT sum(id), sum(v) FROM bench" -c "SELECT count(*) FROM sketches" >/dev/null
# Interleaved rounds in one session (every query once per round, median per query), so
# background load on a shared machine hits baseline and sketches alike.
results=$(bpsql -d "$BENCH_DB" -At <<SQL
CREATE TEMP TABLE q (label text, sql text, ord int);
INSERT INTO q VALUES
  ('sum_id', 'SELECT sum(id) FROM bench', 1),
  ('cms_add_agg_id', 'SELECT cms_add_agg(id) FROM bench', 2),
  ('sum_v', 'SELECT sum(v) FROM bench', 3),
  ('cms_add_agg_v', 'SELECT cms_add_agg(v) FROM bench', 4),
  ('topk_add_agg_v_10', 'SELECT topk_add_agg(v, 10) FROM bench', 5),
  ('topk_add_agg_v_100', 'SELECT topk_add_agg(v, 100) FROM bench', 6),
  ('topk_add_agg_id_10', 'SELECT topk_add_agg(id, 10) FROM bench', 7),
  ('count_sketches', 'SELECT count(*) FROM sketches', 8),
  ('cms_union_agg', 'SELECT cms_union_agg(s) FROM sketches', 9);
CREATE TEMP TABLE t (label text, ms float8);
DO \$\$
DECLARE r record; t0 timestamptz; dummy text;
BEGIN
  FOR round IN 1..$RUNS LOOP
    FOR r IN SELECT * FROM q ORDER BY ord LOOP
      t0 := clock_timestamp();
      EXECUTE r.sql INTO dummy;
      INSERT INTO t VALUES (r.label, extract(epoch FROM clock_timestamp() - t0) * 1000);
    END LOOP;
  END LOOP;
END \$\$;
SELECT q.label || ' ' || percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM t JOIN q USING (label) GROUP BY q.label, q.ord ORDER BY q.ord;
SQL
)
# peak RSS of one backend before and after topk over every row (every id is new: the
# worst case, an eviction per row)
mem=$(bpsql -d "$BENCH_DB" -At <<'SQL'
CREATE FUNCTION pg_temp.hwm() RETURNS int8 LANGUAGE sql
  AS $$ SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmHWM:\s+(\d+)'))[1]::int8 $$;
SELECT sum(id) FROM bench \gset
SELECT pg_temp.hwm() AS before \gset
SELECT topk_total(topk_add_agg(id, 10)) FROM bench \gset
SELECT topk_total(topk_add_agg(v, 10)) FROM bench \gset
SELECT 'backend peak RSS: ' || :before / 1024 || ' MB after sum(id), ' || pg_temp.hwm() / 1024 || ' MB after topk_add_agg over all rows (id and v): growth ' || (pg_temp.hwm() - :before) / 1024 || ' MB';
SQL
)
mkdir -p bench-out
echo "$results" > bench-out/sketch_speed.txt
echo "$results" | awk -v sketches="$SKETCHES" -v mem="$mem" -v runs="$RUNS" '
  { t[$1] = $2; order[++n] = $1 }
  END {
    printf "median ms over %s interleaved rounds (parallel off, jit off)\n", runs
    for (i = 1; i <= n; i++) printf "  %-22s %10.1f\n", order[i], t[order[i]]
    printf "ratios\n"
    printf "  cms_add_agg(id) / sum(id)        %.2fx  (target <= 1.25x)\n", t["cms_add_agg_id"] / t["sum_id"]
    printf "  cms_add_agg(v) / sum(v)          %.2fx\n", t["cms_add_agg_v"] / t["sum_v"]
    printf "  topk_add_agg(v, 10) / sum(v)     %.2fx  (target <= 2x)\n", t["topk_add_agg_v_10"] / t["sum_v"]
    printf "  topk_add_agg(v, 100) / sum(v)    %.2fx\n", t["topk_add_agg_v_100"] / t["sum_v"]
    printf "  topk_add_agg(id, 10) / sum(id)   %.2fx  (all distinct: an eviction per row)\n", t["topk_add_agg_id_10"] / t["sum_id"]
    printf "  cms_union_agg over %d sketches: %.1f ms = %.1f us per 10.9 KB sketch (count(*) over them %.1f ms)\n",
      sketches, t["cms_union_agg"], 1000 * t["cms_union_agg"] / sketches, t["count_sketches"]
    print mem
  }' | tee bench-out/sketch_speed_report.txt
