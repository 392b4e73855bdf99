#!/usr/bin/env bash
# hll format 2 against postgresql-hll, same cluster, same run:
#   1. stored size (pg_column_size of values stored in a table) for every n in 1..300
#      and a log grid up to 10^7, at p = 10, 12, 14, both with their default settings;
#   2. hll_union_agg over 20,000 stored p = 12 sketches per fill level (300, 3,000,
#      20,000 and 1,000,000 values each; default storage on both), median of $RUNS
#      interleaved rounds, as a speed ratio;
#   3. the format-1 form of the same sketches (what 0.2.0 stored) for reference.
# Writes docs/benchmarks/hll_format.txt and docs/benchmarks/hll_format_sizes.csv.
# Usage: benches/hll_format.sh   (~10-15 minutes incl. the release build)
cd "$(dirname "$0")/.."
source benches/lib.sh
exec 9>/tmp/distributed_counter.pg.lock
flock 9
bench_install_and_start 9>&-
RUNS=${RUNS:-5}
OUT_TXT=docs/benchmarks/hll_format.txt
OUT_CSV=docs/benchmarks/hll_format_sizes.csv
bench_fresh_db
bpsql -d "$BENCH_DB" <<'SQL'
CREATE SCHEMA dc; CREATE EXTENSION distributed_counter SCHEMA dc;
CREATE SCHEMA phll; CREATE EXTENSION hll SCHEMA phll;
SQL

bench_log "sizes: every n in 1..300, then a log grid to 10^7, p = 10/12/14"
# Each sketch grows by the values since the previous grid point (a union of stored
# values), so each precision costs 10^7 adds per implementation, not the sum of all n.
bpsql -d "$BENCH_DB" <<'SQL'
CREATE TABLE sizes (p int, n int8, ours int, theirs int, form text);
CREATE TABLE cell_ours (h dc.hll);
CREATE TABLE cell_theirs (h phll.hll);
DO $$
DECLARE
  grid int8[] := ARRAY(SELECT g FROM generate_series(1, 300) g
                       UNION SELECT DISTINCT round(10 ^ (x / 20.0))::int8
                             FROM generate_series(50, 140) x ORDER BY 1);
  p int; n int8; prev int8; a dc.hll; b phll.hll; sa int; sb int;
BEGIN
  FOREACH p IN ARRAY ARRAY[10, 12, 14] LOOP
    a := dc.hll_empty(p); b := phll.hll_empty(p); prev := 0;
    FOREACH n IN ARRAY grid LOOP
      SELECT dc.hll_union(a, dc.hll_add_agg(dc.hll_hash_bigint(g), p)),
             phll.hll_union(b, phll.hll_add_agg(phll.hll_hash_bigint(g), p))
        INTO a, b FROM generate_series(prev + 1, n) g;
      prev := n;
      -- measured as stored: a table row, TOAST and compression as the column decides
      TRUNCATE cell_ours, cell_theirs;
      INSERT INTO cell_ours VALUES (a);
      INSERT INTO cell_theirs VALUES (b);
      SELECT pg_column_size(h) INTO sa FROM cell_ours;
      SELECT pg_column_size(h) INTO sb FROM cell_theirs;
      INSERT INTO sizes VALUES (p, n, sa, sb, split_part(dc.hll_print(a), ', ', 3));
    END LOOP;
  END LOOP;
END $$;
SQL

bench_log "union: 20,000 stored p = 12 sketches per fill level"
# Distinct base sketches, each stored many times (each row its own copy): building
# 20,000 different sketches of 10^6 values would take an hour.
bpsql -d "$BENCH_DB" <<'SQL'
DO $$
DECLARE fill int8; base int; copies int;
BEGIN
  FOREACH fill IN ARRAY ARRAY[300, 3000, 20000, 1000000] LOOP
    base := CASE WHEN fill >= 1000000 THEN 20 WHEN fill >= 20000 THEN 200 ELSE 2000 END;
    copies := 20000 / base;
    EXECUTE format($q$
      CREATE TABLE ours_%1$s AS WITH b AS MATERIALIZED (
        SELECT b, (SELECT dc.hll_add_agg(dc.hll_hash_bigint(b::int8 * 10000000 + j), 12)
                   FROM generate_series(1, %1$s) j) AS h FROM generate_series(1, %2$s) b)
      SELECT b * 100000 + c AS k, h FROM b, generate_series(1, %3$s) c;
      CREATE TABLE theirs_%1$s AS WITH b AS MATERIALIZED (
        SELECT b, (SELECT phll.hll_add_agg(phll.hll_hash_bigint(b::int8 * 10000000 + j), 12)
                   FROM generate_series(1, %1$s) j) AS h FROM generate_series(1, %2$s) b)
      SELECT b * 100000 + c AS k, h FROM b, generate_series(1, %3$s) c;
      -- the same sketches in format 1 (raw registers or tokens), as 0.2.0 stored them
      CREATE TABLE v1_%1$s (k int8, h dc.hll);
      $q$, fill, base, copies);
  END LOOP;
END $$;
SQL
# Format-1 copies: the aggregates' state form, reached through hll_union_trans (the
# state of a one-row hll_union_agg without its final function).
for fill in 300 3000 20000 1000000; do
  bpsql -d "$BENCH_DB" -c "INSERT INTO v1_$fill SELECT k, dc.hll_union_trans(NULL, h) FROM ours_$fill" \
    -c "VACUUM ANALYZE ours_$fill" -c "VACUUM ANALYZE theirs_$fill" -c "VACUUM ANALYZE v1_$fill"
done
bpsql -d "$BENCH_DB" -At -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
  -c "SELECT sum(pg_prewarm(c::regclass)) FROM unnest(ARRAY['ours_300','theirs_300','v1_300','ours_3000','theirs_3000','v1_3000','ours_20000','theirs_20000','v1_20000','ours_1000000','theirs_1000000','v1_1000000']) c" >/dev/null
args=()
for fill in 300 3000 20000 1000000; do
  args+=("ours_$fill" "SELECT dc.hll_cardinality(dc.hll_union_agg(h)) FROM ours_$fill"
         "theirs_$fill" "SELECT phll.hll_cardinality(phll.hll_union_agg(h)) FROM theirs_$fill"
         "v1_$fill" "SELECT dc.hll_cardinality(dc.hll_union_agg(h)) FROM v1_$fill"
         "floor_$fill" "SELECT count(h) FROM ours_$fill")
done
union_times=$(time_interleaved "$RUNS" "${args[@]}")

mkdir -p docs/benchmarks
bpsql -d "$BENCH_DB" -c "\\copy (SELECT p, n, ours, theirs, form FROM sizes ORDER BY p, n) TO '/tmp/hll_format_sizes.csv' CSV HEADER"
cp /tmp/hll_format_sizes.csv "$OUT_CSV"
{
  echo "# benches/hll_format.sh, $(date -u +%Y-%m-%d), PostgreSQL 15, release build"
  echo
  echo "## Stored bytes (pg_column_size), ours (format 2) against postgresql-hll"
  bpsql -d "$BENCH_DB" <<'SQL'
SELECT p, n, ours, theirs, round(ours::numeric / theirs, 3) AS ratio, form
FROM sizes
WHERE n IN (1, 2, 5, 10, 20, 50, 80, 100, 128, 129, 150, 200, 300, 500, 1000, 1995, 3162,
            5012, 10000, 19953, 31623, 100000, 316228, 1000000, 3162278, 10000000)
ORDER BY p, n;
SQL
  echo "## Largest ratio ours / postgresql-hll over every measured n (1..300 each, then the grid)"
  bpsql -d "$BENCH_DB" <<'SQL'
SELECT p, count(*) AS points, max(ours::numeric / theirs)::numeric(6,3) AS max_ratio,
       (array_agg(n ORDER BY ours::numeric / theirs DESC))[1] AS at_n,
       count(*) FILTER (WHERE ours > theirs) AS points_larger
FROM sizes GROUP BY p ORDER BY p;
SQL
  echo "## Stored bytes per fill level of the union tables (p = 12)"
  for fill in 300 3000 20000 1000000; do
    bpsql -d "$BENCH_DB" -At -c "SELECT '$fill values: ours ' || (SELECT avg(pg_column_size(h))::int FROM ours_$fill) || ', format 1 ' || (SELECT avg(pg_column_size(h))::int FROM v1_$fill) || ', postgresql-hll ' || (SELECT avg(pg_column_size(h))::int FROM theirs_$fill) || ', ours as ' || (SELECT string_agg(DISTINCT split_part(dc.hll_print(h), ', ', 3), '; ') FROM ours_$fill)"
  done
  echo
  echo "## hll_union_agg over 20,000 stored p = 12 sketches: median ms of $RUNS interleaved rounds"
  echo "$union_times"
  echo
  echo "$union_times" | awk '{t[$1] = $2} END {
    split("300 3000 20000 1000000", f, " ");
    for (i = 1; i <= 4; i++) {
      printf "fill %8d: ours %.1f ms, postgresql-hll %.1f ms: %.2fx faster; format 1 %.1f ms\n",
        f[i], t["ours_" f[i]], t["theirs_" f[i]], t["theirs_" f[i]] / t["ours_" f[i]], t["v1_" f[i]]
    }
    print "";
    print "Net of the scan itself (count(h) over the same rows: reading the tuples, no union):";
    for (i = 1; i <= 4; i++) {
      fl = t["floor_" f[i]];
      printf "fill %8d: scan %.1f ms; union work ours %.1f ms, postgresql-hll %.1f ms: %.2fx\n",
        f[i], fl, t["ours_" f[i]] - fl, t["theirs_" f[i]] - fl, (t["theirs_" f[i]] - fl) / (t["ours_" f[i]] - fl)
    }
  }'
} | tee "$OUT_TXT"
