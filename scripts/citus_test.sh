#!/usr/bin/env bash
# Citus: the extension on a real Citus 13 cluster of three PostgreSQL 15 servers on
# loopback (coordinator 5570, workers 5571 and 5572, made afresh on every run). Citus is
# built from ../shared/vendor (override with DC_SHARED_DIR); where that is absent, this
# prints one line and skips.
#
# Aggregates: every aggregate over every type of sql/typed_aggregates.sql runs on a
# distributed table, and for each the test checks
#   - EXPLAIN VERBOSE: GROUP BY another column is partially aggregated on the workers
#     (worker_partial_agg in the worker query, coord_combine_agg on the coordinator);
#     GROUP BY the distribution column is pushed down whole;
#   - the answers equal those on a local copy of the table: approx_count_distinct
#     exactly, cms byte for byte (the union of count-min sketches is exact), and topk
#     by its guarantees against exact counts (the merged summary differs from the
#     sequential one, both must hold them);
# with NULLs and an all-NULL group, a table with mostly empty shards, weighted cms and
# topk with k, the rollup pattern (INSERT ... SELECT ... GROUP BY into a co-located
# distributed rollup table, then the union aggregates over it), and again with parallel
# plans on the workers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pg.sh
say() { printf '\033[1;34m[citus]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[citus] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
. scripts/lib/citus.sh
trap citus_stop_all EXIT
citus_cluster_up

# The types with typed overloads, and a value of each made from g (every 40th row NULL).
TYPES=(bool int2 int4 int8 oid numeric float4 float8 char name text varchar bpchar bytea uuid
       date time timetz timestamp timestamptz interval inet cidr macaddr macaddr8 jsonb)
declare -A EXPR=(
  [bool]="g % 3 = 0" [int2]="(g % 900)::int2" [int4]="(g % 4000)::int4" [int8]="(g::int8 * 7919) % 100003"
  [oid]="(g % 3000)::oid" [numeric]="round((g % 2000) / 7.0, 3)" [float4]="((g % 1500) / 3.0)::float4"
  [float8]="(g % 2500) / 9.0" [char]="chr(65 + g % 26)::\"char\"" [name]="('n' || g % 1700)::name"
  [text]="'page-' || (g::int8 * g % 3001)" [varchar]="('v' || g % 1200)::varchar(10)" [bpchar]="('b' || g % 1300)::char(8)"
  [bytea]="decode(md5((g % 2100)::text), 'hex')" [uuid]="md5((g % 2200)::text)::uuid"
  [date]="DATE '2026-01-01' + g % 365" [time]="TIME '00:00' + (g % 1440) * INTERVAL '1 minute'"
  [timetz]="(TIME '00:00' + (g % 1000) * INTERVAL '1 minute')::timetz"
  [timestamp]="TIMESTAMP '2026-01-01' + (g % 3000) * INTERVAL '1 hour'"
  [timestamptz]="TIMESTAMPTZ '2026-01-01 00:00+00' + (g % 3100) * INTERVAL '1 hour'"
  [interval]="(g % 700) * INTERVAL '1 minute'" [inet]="('10.' || g % 7 || '.' || g % 200 || '.' || g % 13)::inet"
  [cidr]="('10.' || g % 250 || '.0.0/16')::cidr" [macaddr]="('08:00:2b:01:' || lpad(to_hex(g % 200), 2, '0') || ':03')::macaddr"
  [macaddr8]="('08:00:2b:01:02:03:' || lpad(to_hex(g % 220), 2, '0') || ':05')::macaddr8"
  [jsonb]="jsonb_build_object('k', g % 900)"
)
cols="" vals=""
for t in "${TYPES[@]}"; do
  sqlt=$t; [ "$t" = char ] && sqlt='"char"'
  cols+=", c_$t $sqlt"
  vals+=", CASE WHEN g % 40 = 0 THEN NULL ELSE ${EXPR[$t]} END"
done
# ev: 60,000 rows over 40 tenants (the distribution column) and 7 days, plus day 99
# whose values are all NULL. sparse: 3 rows, so most of its 32 shards are empty.
q coord <<SQL
CREATE TABLE ev (tenant int8, day int4, w int8$cols);
INSERT INTO ev SELECT g % 40, g % 7, 1 + g % 5$vals FROM generate_series(1, 60000) g;
INSERT INTO ev (tenant, day, w) SELECT g, 99, 1 FROM generate_series(1, 30) g;
CREATE TABLE ev_local AS SELECT * FROM ev;
CREATE TABLE sparse AS SELECT * FROM ev WHERE day = 1 AND tenant IN (1, 2) LIMIT 3;
CREATE TABLE sparse_local AS SELECT * FROM sparse;
SELECT create_distributed_table('ev', 'tenant');
SELECT create_distributed_table('sparse', 'tenant', colocate_with => 'ev');
SQL
say "ev: $(q coord -c "SELECT count(*) FROM ev") rows in $(q coord -c "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'ev'::regclass") shards on $(q coord -c "SELECT count(DISTINCT nodeport) FROM pg_dist_shard_placement JOIN pg_dist_shard USING (shardid) WHERE logicalrelid = 'ev'::regclass") workers; sparse: 3 rows"

# The six aggregate forms over column $1 of a table with weight w.
aggs() {
  echo "approx_count_distinct($1) AS acd, cms_add_agg($1) AS c1, cms_add_agg($1, 0.01, 0.01) AS c2,
        cms_add_agg($1, w, 0.02, 0.05) AS c3, topk_add_agg($1) AS t1, topk_add_agg($1, 5) AS t2"
}
# topk_text TYPE COL: SQL for the text a topk counts a value of TYPE under (docs/SQL.md,
# "Hashing": numeric without trailing fractional zeros, char(n) without its padding).
topk_text() {
  case $1 in
    numeric) echo "trim_scale($2)::text" ;;
    bpchar) echo "rtrim($2)" ;;
    *) echo "format('%s', $2)" ;;
  esac
}
# compare TABLE GROUPCOL LABEL: every type, distributed against local; prints a line per type.
compare() {
  local tbl=$1 grp=$2 label=$3 t col plan partial bad
  for t in "${TYPES[@]}"; do
    col="c_$t"
    plan=$(q coord -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT $grp, $(aggs "$col") FROM $tbl GROUP BY $grp")
    if [ "$grp" = tenant ]; then
      # pushed down whole: the worker query aggregates, the coordinator combines nothing
      grep -q "approx_count_distinct($col)" <<<"$plan" && ! grep -q coord_combine_agg <<<"$plan" \
        || { echo "$plan" | head -30; fail "$label $t: GROUP BY the distribution column is not pushed down"; }
      partial=pushdown
    else
      [ "$(grep -o "worker_partial_agg(" <<<"$plan" | wc -l)" -ge 6 ] && grep -q "coord_combine_agg" <<<"$plan" \
        || { echo "$plan" | head -30; fail "$label $t: not partially aggregated on the workers"; }
      partial=partial
    fi
    bad=$(q coord <<SQL
CREATE TEMP TABLE r_dist AS SELECT $grp AS grp, $(aggs "$col") FROM $tbl GROUP BY $grp;
CREATE TEMP TABLE r_local AS SELECT $grp AS grp, $(aggs "$col") FROM ${tbl}_local GROUP BY $grp;
CREATE TEMP TABLE exact AS SELECT $grp AS grp, $(topk_text "$t" "$col") AS item, count(*) AS n FROM ${tbl}_local WHERE $col IS NOT NULL GROUP BY 1, 2;
CREATE TEMP TABLE totals AS SELECT $grp AS grp, count($col) AS n FROM ${tbl}_local GROUP BY 1;
-- topk guarantees: total exact; count - error <= true <= count for each listed item; every
-- item with a true count above total / k listed
CREATE TEMP TABLE topk_bad AS
SELECT r.src, r.grp, r.which FROM (
  SELECT 'dist' src, grp, 't1' which, t1 t, 10 k FROM r_dist UNION ALL SELECT 'dist', grp, 't2', t2, 5 FROM r_dist
  UNION ALL SELECT 'local', grp, 't1', t1, 10 FROM r_local UNION ALL SELECT 'local', grp, 't2', t2, 5 FROM r_local) r
JOIN totals tt USING (grp)
WHERE coalesce(topk_total(r.t), 0) <> tt.n
   OR EXISTS (SELECT 1 FROM topk_list(r.t) l LEFT JOIN exact e ON e.grp = r.grp AND e.item = l.value
              WHERE coalesce(e.n, 0) NOT BETWEEN l.count - l.error AND l.count)
   OR EXISTS (SELECT 1 FROM exact e WHERE e.grp = r.grp AND e.n > tt.n / r.k
              AND e.item NOT IN (SELECT value FROM topk_list(r.t)));
SELECT (SELECT count(*) FROM r_dist FULL JOIN r_local USING (grp)
        WHERE r_dist.acd IS DISTINCT FROM r_local.acd
           OR r_dist.c1::bytea IS DISTINCT FROM r_local.c1::bytea
           OR r_dist.c2::bytea IS DISTINCT FROM r_local.c2::bytea
           OR r_dist.c3::bytea IS DISTINCT FROM r_local.c3::bytea)
     + (SELECT count(*) FROM topk_bad);
SQL
)
    [ "$bad" = 0 ] || fail "$label $t: $bad groups differ from the local table (or break topk's guarantees)"
    printf '  ok   %-11s %-9s %-8s answers equal the local table\n' "$t" "$label" "$partial"
  done
}

say "GROUP BY another column (day): partial aggregation on the workers"
compare ev day by-day
say "GROUP BY the distribution column (tenant): pushed down"
compare ev tenant by-tenant
say "mostly empty shards"
compare sparse day sparse

say "the rollup pattern: INSERT ... SELECT into a co-located distributed rollup, then union"
q coord <<'SQL'
CREATE TABLE rollup (tenant int8, day int4, h hll, c cms, t topk);
SELECT create_distributed_table('rollup', 'tenant', colocate_with => 'ev');
CREATE TABLE rollup_local (LIKE rollup);
INSERT INTO rollup SELECT tenant, day, hll_add_agg(hll_hash_any(c_text)), cms_add_agg(c_int8, w, 0.01, 0.01),
  topk_add_agg(c_text, 20) FROM ev GROUP BY tenant, day;
INSERT INTO rollup_local SELECT tenant, day, hll_add_agg(hll_hash_any(c_text)), cms_add_agg(c_int8, w, 0.01, 0.01),
  topk_add_agg(c_text, 20) FROM ev_local GROUP BY tenant, day;
SQL
plan=$(q coord -c "EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO rollup SELECT tenant, day, hll_add_agg(hll_hash_any(c_text)), NULL, NULL FROM ev GROUP BY tenant, day")
grep -q "hll_add_agg" <<<"$plan" && ! grep -qi "pull to coordinator\|coord_combine_agg" <<<"$plan" \
  || { echo "$plan" | head -20; fail "the rollup INSERT ... SELECT is not pushed down to the workers"; }
plan=$(q coord -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT day, hll_union_agg(h), cms_union_agg(c), topk_union_agg(t) FROM rollup GROUP BY day")
[ "$(grep -o "worker_partial_agg(" <<<"$plan" | wc -l)" -ge 3 ] || { echo "$plan" | head -30; fail "union aggregates over the rollup are not partial on the workers"; }
bad=$(q coord <<'SQL'
WITH d AS (SELECT day, hll_union_agg(h) h, cms_union_agg(c) c, topk_union_agg(t) t FROM rollup GROUP BY day),
     l AS (SELECT day, hll_union_agg(h) h, cms_union_agg(c) c, topk_union_agg(t) t FROM rollup_local GROUP BY day)
SELECT count(*) FROM d FULL JOIN l USING (day)
WHERE (# d.h) IS DISTINCT FROM (# l.h) OR d.c::bytea IS DISTINCT FROM l.c::bytea
   OR topk_total(d.t) IS DISTINCT FROM topk_total(l.t)
   OR EXISTS (SELECT 1 FROM topk_list(d.t) x WHERE
        (SELECT count(*) FROM ev_local e WHERE e.day = d.day AND e.c_text = x.value) NOT BETWEEN x.count - x.error AND x.count)
SQL
)
[ "$bad" = 0 ] || fail "rollup: $bad days differ from the local rollup"
say "ok: rollup pushed down whole; hll_union_agg/cms_union_agg/topk_union_agg partial on the workers; answers equal the local rollup"

say "aggregates over concrete types: hll_add_agg, hll_union_agg, gcounter_merge_agg, pncounter_merge_agg"
q coord >/dev/null <<'SQL'
CREATE TABLE crdt (tenant int8, day int4, g gcounter, p pncounter);
INSERT INTO crdt SELECT g % 40, g % 7,
       gcounter_increment(NULL, g % 97, 'node-' || g % 5),
       CASE WHEN g % 11 = 0 THEN NULL ELSE pncounter_decrement(pncounter_increment(NULL, g % 13, 'n' || g % 3), g % 5, 'm' || g % 4) END
FROM generate_series(1, 20000) g;
CREATE TABLE crdt_local AS SELECT * FROM crdt;
SELECT create_distributed_table('crdt', 'tenant', colocate_with => 'ev');
SQL
# (hll by its estimate: a merged sketch may be dense where the sequential one is sparse)
for spec in "ev|# hll_add_agg(hll_hash_any(c_int8))|# hll_union_agg(hll_empty() || hll_hash_any(c_text))" \
            "crdt|gcounter_merge_agg(g)|pncounter_merge_agg(p)"; do
  IFS='|' read -r tbl a1 a2 <<<"$spec"
  plan=$(q coord -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT day, $a1, $a2 FROM $tbl GROUP BY day")
  [ "$(grep -o "worker_partial_agg(" <<<"$plan" | wc -l)" -ge 2 ] || { echo "$plan" | head -30; fail "$a1, $a2: not partial on the workers"; }
  bad=$(q coord -c "SELECT count(*) FROM (SELECT day, $a1 AS x, $a2 AS y FROM $tbl GROUP BY day) d
                    FULL JOIN (SELECT day, $a1 AS x, $a2 AS y FROM ${tbl}_local GROUP BY day) l USING (day)
                    WHERE d.x::text IS DISTINCT FROM l.x::text OR d.y::text IS DISTINCT FROM l.y::text")
  [ "$bad" = 0 ] || fail "$a1, $a2: $bad days differ from the local table"
  printf '  ok   %-60s partial  answers equal the local table\n' "$a1, $a2"
done

say "parallel plans on the workers"
# Parallel plans made cheap (force_parallel_mode puts a Gather over Citus's own
# worker_partial_agg, whose partial states are cstring, which a Gather cannot carry: that
# fails in Citus for every custom aggregate, as EXPLAIN ANALYZE of such a query does).
# GROUP BY the distribution column then runs our aggregates in parallel workers on each
# node (Partial and Finalize, with our combine functions). GROUP BY day runs under
# worker_partial_agg, which has no combine function, so it is not parallel on a node.
for n in w1 w2; do
  q "$n" -c "ALTER SYSTEM SET parallel_setup_cost = 0" -c "ALTER SYSTEM SET parallel_tuple_cost = 0" \
    -c "ALTER SYSTEM SET min_parallel_table_scan_size = 0" -c "ALTER SYSTEM SET max_parallel_workers_per_gather = 2" \
    -c "SELECT pg_reload_conf()" >/dev/null
done
sleep 0.5
plan=$(q coord -c "SET citus.explain_all_tasks = on" -c "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT tenant, $(aggs c_int8) FROM ev GROUP BY tenant")
grep -q "Workers Launched: [1-9]" <<<"$plan" && grep -q "Partial HashAggregate\|Partial GroupAggregate" <<<"$plan" \
  || { echo "$plan" | head -60; fail "GROUP BY tenant: no partial aggregation in parallel workers on the worker nodes"; }
say "ok: $(grep -c "Workers Launched: [1-9]" <<<"$plan") of 32 shard plans ran partial aggregates in parallel workers"
compare ev tenant parallel
compare ev day parallel
for n in w1 w2; do
  q "$n" -c "ALTER SYSTEM RESET ALL" -c "SELECT pg_reload_conf()" >/dev/null
done

say "a type without built-in overloads (an enum): cast to text, or typed_aggregates() on every node"
# A searched CASE: Citus 13.2.2's deparser turns a simple CASE's WHEN values into NULLs in
# the shard UPDATE, and crashes the coordinator on an array subscript there.
MOOD="(CASE WHEN (tenant + day) % 3 = 0 THEN 'sad' WHEN (tenant + day) % 3 = 1 THEN 'ok' ELSE 'happy' END)::mood"
q coord -c "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')" -c "ALTER TABLE ev ADD COLUMN c_mood mood" \
  -c "ALTER TABLE ev_local ADD COLUMN c_mood mood" \
  -c "UPDATE ev SET c_mood = $MOOD" -c "UPDATE ev_local SET c_mood = $MOOD" >/dev/null
enum_q="SELECT day, approx_count_distinct(c_mood::text), cms_count(cms_add_agg(c_mood::text), 'ok'::text) FROM %s GROUP BY day ORDER BY day"
# shellcheck disable=SC2059
got=$(q coord -c "$(printf "$enum_q" ev)" | tr '\n' ' ')
# shellcheck disable=SC2059
want=$(q coord -c "$(printf "$enum_q" ev_local)" | tr '\n' ' ')
[ "$got" = "$want" ] || fail "aggregates over enum::text on Citus gave '$got', locally '$want'"
say "ok: aggregates over c_mood::text equal the local answers"
ran=$(q coord -c "SELECT typed_aggregates('mood')" \
  -c "SELECT count(*) FILTER (WHERE success) || '/' || count(*) FROM run_command_on_all_nodes(\$\$SELECT typed_aggregates('mood')\$\$)" | tail -1)
[ "$ran" = 3/3 ] || fail "typed_aggregates('mood') on all nodes: $ran succeeded"
say "ok: typed_aggregates('mood') on the coordinator, then on all nodes ($ran succeeded)"
TYPES=(mood)
compare ev day enum
say "all Citus aggregate checks passed (26 built-in types and an enum x 6 aggregates; GROUP BY day, tenant, sparse shards, parallel workers; hll and CRDT merges; rollup)"
