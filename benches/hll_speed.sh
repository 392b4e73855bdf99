#!/usr/bin/env bash
# hll aggregate speed against sum(id) and postgresql-hll, same cluster, same run.
# 10M-row bigint table, parallel off, jit off. Prints median times and ratios.
# Usage: benches/hll_speed.sh   (takes ~5-10 minutes incl. the release build)
cd "$(dirname "$0")/.."
source benches/lib.sh
exec 9>/tmp/distributed_counter.pg.lock
flock 9
bench_install_and_start 9>&-
ROWS=${ROWS:-10000000}
SKETCHES=${SKETCHES:-100000}
if [ -z "${SKIP_LOAD:-}" ]; then
bench_fresh_db
bench_log "loading $ROWS rows and $SKETCHES stored p=12 sketches per implementation"
bpsql -d "$BENCH_DB" <<SQL
CREATE SCHEMA dc; CREATE EXTENSION distributed_counter SCHEMA dc;
CREATE SCHEMA phll; CREATE EXTENSION hll SCHEMA phll;
CREATE TABLE ids AS SELECT g::int8 AS id FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE ids;
-- dense p = 12 sketches of 3000 distinct values each (both implementations dense)
CREATE TABLE ours AS SELECT k, (SELECT dc.hll_add_agg(dc.hll_hash_bigint(k * 3000 + j), 12)
  FROM generate_series(1, 3000) j) AS h FROM generate_series(1, $SKETCHES) k;
CREATE TABLE theirs AS SELECT k, (SELECT phll.hll_add_agg(phll.hll_hash_bigint(k * 3000 + j), 12)
  FROM generate_series(1, 3000) j) AS h FROM generate_series(1, $SKETCHES) k;
-- the same sketches with lz4 TOAST compression and with no compression (STORAGE plain,
-- fine up to p = 12): per-column user settings, applied to both implementations.
-- The casts re-create each value so it is compressed afresh under the column setting.
CREATE TABLE ours_lz4 (k int8, h dc.hll COMPRESSION lz4);
INSERT INTO ours_lz4 SELECT k, h::bytea::dc.hll FROM ours;
CREATE TABLE theirs_lz4 (k int8, h phll.hll COMPRESSION lz4);
INSERT INTO theirs_lz4 SELECT k, phll.hll_union(h, phll.hll_empty(12)) FROM theirs;
CREATE TABLE ours_plain (k int8, h dc.hll);
ALTER TABLE ours_plain ALTER h SET STORAGE plain;
INSERT INTO ours_plain SELECT k, h::bytea::dc.hll FROM ours;
CREATE TABLE theirs_plain (k int8, h phll.hll);
ALTER TABLE theirs_plain ALTER h SET STORAGE plain;
INSERT INTO theirs_plain SELECT k, phll.hll_union(h, phll.hll_empty(12)) FROM theirs;
VACUUM ANALYZE ours_plain; VACUUM ANALYZE theirs_plain;
VACUUM ANALYZE ours; VACUUM ANALYZE theirs; VACUUM ANALYZE ours_lz4; VACUUM ANALYZE theirs_lz4;
SQL
fi
# Well-filled sketches (20k distinct values each, n/m ~ 5, the usual state of a daily
# sketch): 1k different sketches, each stored 100 times (every row its own copy), so
# 100k rows. Their registers no longer compress, so both stay uncompressed/inline or
# TOASTed as PostgreSQL decides by default.
bpsql -d "$BENCH_DB" <<SQL
CREATE TABLE IF NOT EXISTS ours_full AS
  WITH base AS MATERIALIZED (SELECT b, (SELECT dc.hll_add_agg(dc.hll_hash_bigint(b * 20000 + j), 12)
                FROM generate_series(1, 20000) j) AS h FROM generate_series(1, $SKETCHES / 100) b)
  SELECT b * 100 + c AS k, h FROM base, generate_series(1, 100) c;
CREATE TABLE IF NOT EXISTS theirs_full AS
  WITH base AS MATERIALIZED (SELECT b, (SELECT phll.hll_add_agg(phll.hll_hash_bigint(b * 20000 + j), 12)
                FROM generate_series(1, 20000) j) AS h FROM generate_series(1, $SKETCHES / 100) b)
  SELECT b * 100 + c AS k, h FROM base, generate_series(1, 100) c;
VACUUM ANALYZE ours_full; VACUUM ANALYZE theirs_full;
SQL
bpsql -d "$BENCH_DB" -At -c "SELECT 'stored bytes per well-filled sketch: ours ' || avg(pg_column_size(h))::int || ', postgresql-hll ' || (SELECT avg(pg_column_size(h))::int FROM theirs_full) FROM ours_full"
bpsql -d "$BENCH_DB" -At -c "SELECT 'stored bytes per sketch: ours ' || avg(pg_column_size(h))::int FROM ours" \
  -c "SELECT 'stored bytes per sketch: postgresql-hll ' || avg(pg_column_size(h))::int FROM theirs" \
  -c "SELECT 'forms: ours ' || string_agg(DISTINCT split_part(dc.hll_print(h), ',', 3), ';') FROM ours" \
  -c "SELECT 'stored bytes per sketch (lz4): ours ' || avg(pg_column_size(h))::int || ', postgresql-hll ' || (SELECT avg(pg_column_size(h))::int FROM theirs_lz4) FROM ours_lz4" \
  -c "SELECT 'stored bytes per sketch (plain): ours ' || avg(pg_column_size(h))::int || ', postgresql-hll ' || (SELECT avg(pg_column_size(h))::int FROM theirs_plain) FROM ours_plain" \
  -c "SELECT 'table MB: ours ' || pg_total_relation_size('ours') / 1048576 || ', postgresql-hll ' || pg_total_relation_size('theirs') / 1048576"
# warm the caches (everything fits in shared_buffers)
bpsql -d "$BENCH_DB" -At -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
  -c "SELECT sum(pg_prewarm(c)) FROM unnest(ARRAY['ids', 'ours', 'theirs', 'ours_lz4', 'theirs_lz4', 'ours_plain', 'theirs_plain', 'ours_full', 'theirs_full']::regclass[]) c" >/dev/null
bpsql -d "$BENCH_DB" -At -c "SELECT sum(id) FROM ids" -c "SELECT count(*) FROM ours" -c "SELECT count(*) FROM theirs" \
  -c "SELECT count(*) FROM ours_lz4" -c "SELECT count(*) FROM theirs_lz4" \
  -c "SELECT count(*) FROM ours_plain" -c "SELECT count(*) FROM theirs_plain" >/dev/null
RUNS=${RUNS:-5}
results=$(
  time_interleaved "$RUNS" \
    count "SELECT count(*) FROM ids" \
    sum "SELECT sum(id) FROM ids" \
    approx_count_distinct "SELECT dc.approx_count_distinct(id) FROM ids" \
    hll_add_agg "SELECT dc.hll_add_agg(dc.hll_hash_bigint(id)) FROM ids" \
    phll_add_agg "SELECT phll.hll_add_agg(phll.hll_hash_bigint(id)) FROM ids"
  time_interleaved "$RUNS" \
    hll_union_agg "SELECT dc.hll_union_agg(h) FROM ours" \
    phll_union_agg "SELECT phll.hll_union_agg(h) FROM theirs" \
    hll_union_agg_lz4 "SELECT dc.hll_union_agg(h) FROM ours_lz4" \
    phll_union_agg_lz4 "SELECT phll.hll_union_agg(h) FROM theirs_lz4" \
    hll_union_agg_plain "SELECT dc.hll_union_agg(h) FROM ours_plain" \
    phll_union_agg_plain "SELECT phll.hll_union_agg(h) FROM theirs_plain" \
    hll_union_agg_full "SELECT dc.hll_union_agg(h) FROM ours_full" \
    phll_union_agg_full "SELECT phll.hll_union_agg(h) FROM theirs_full" \
    detoast_only "SELECT sum(get_byte(h::bytea, 100)) FROM ours"
)
mkdir -p bench-out
echo "$results" > bench-out/hll_speed.txt
python3 benches/hll_speed_report.py bench-out/hll_speed.txt "$SKETCHES"
