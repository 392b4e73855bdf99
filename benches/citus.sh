#!/usr/bin/env bash
# Citus on this one machine: a coordinator and two workers (scripts/lib/citus.sh, release
# build), so the figures are costs per node, not a speed-up (all three servers share the
# same 2 cores). Baselines are measured in the same run:
#   1. A rollup of ROWS rows (default 10M): day, hll_add_agg / cms_add_agg / topk_add_agg
#      GROUP BY day, over a distributed table against the same rows in a plain table on
#      the coordinator; the bytes that crossed loopback during each query (from
#      /proc/net/dev), against the size of the rows a row-gathering plan would ship.
#   2. counter_add through the coordinator (distributed counters) against counter_add on
#      a single node without Citus (the C fast path), 8 pgbench clients over 100,000
#      keys: throughput, and the machine's CPU time per add (both cores, every process).
# Usage: benches/citus.sh   (ROWS=10000000 SECONDS_PER_RUN=10 SKIP_INSTALL=1 to reuse an
#        installed release build). Needs ../shared (Citus is built from it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/lib/pg.sh
say() { printf '\033[1;35m[bench]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[bench] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
ROWS=${ROWS:-10000000}
T=${SECONDS_PER_RUN:-10}
exec 9>/tmp/distributed_counter.pg.lock
flock 9
if [ -z "${SKIP_INSTALL:-}" ]; then
  say "installing the release build (fat LTO: a few minutes)"
  cargo pgrx install --release --pg-config "$PG_CONFIG" >/tmp/dc-citus-bench-install.log 2>&1 \
    || { tail -30 /tmp/dc-citus-bench-install.log; exit 1; }
fi
. scripts/lib/citus.sh
WORK=$(mktemp -d /tmp/citus_bench.XXXXXX); chmod 755 "$WORK"
cleanup() { set +e; citus_stop_all; pg_cluster_stop dc_bench_single; rm -rf "$WORK"; }
trap cleanup EXIT
citus_cluster_up "jit = off" "shared_buffers = '1GB'" "max_parallel_workers_per_gather = 0" 9>&-

# bytes received on loopback (each byte sent between the servers is received once)
lo_bytes() { awk '$1 == "lo:" { printf "%.0f\n", $2 }' /proc/net/dev; }
# ms QUERY NODE: wall time of one run, in ms
ms() {
  local t0 t1; t0=$(date +%s%N)
  q "${2:-coord}" -c "$1" >/dev/null
  t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 ))
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# ---- 1. rollup ---------------------------------------------------------------------------
say "loading $ROWS rows (distributed by tenant, and a plain copy on the coordinator)"
q coord >/dev/null <<SQL
CREATE TABLE views (tenant int8, day int4, user_id int8, url text);
SELECT create_distributed_table('views', 'tenant');
INSERT INTO views SELECT g % 1000, g % 30, (g::int8 * 7919) % 2000003, '/page/' || ((g::int8 * 31) % 5000)
FROM generate_series(1, $ROWS) g;
CREATE TABLE views_local AS SELECT * FROM views;
VACUUM ANALYZE views_local;
SQL
q coord -c "VACUUM ANALYZE views" >/dev/null
row_bytes=$(q coord -c "SELECT sum(pg_column_size(user_id) + pg_column_size(url) + pg_column_size(day)) FROM views_local")
printf '\n%-44s %10s %10s %8s %14s\n' "GROUP BY day, over $ROWS rows" "local ms" "Citus ms" "ratio" "bytes shipped"
for agg in "hll_add_agg(hll_hash_bigint(user_id))" "approx_count_distinct(user_id)" "cms_add_agg(url)" "topk_add_agg(url, 10)"; do
  lq="SELECT day, $agg FROM views_local GROUP BY day"
  dq="SELECT day, $agg FROM views GROUP BY day"
  ms "$dq" >/dev/null; ms "$lq" >/dev/null   # warm
  l=$(for _ in 1 2 3; do ms "$lq"; done | median)
  b0=$(lo_bytes); d=$(ms "$dq"); b1=$(lo_bytes)
  d=$( (echo "$d"; for _ in 1 2; do ms "$dq"; done) | median)
  printf '%-44s %10d %10d %7.2fx %14d\n' "$agg" "$l" "$d" "$(echo "$d / $l" | bc -l)" "$((b1 - b0))"
done
printf '%-44s %10s %10s %8s %14d\n' "(the rows themselves: user_id, url, day)" "" "" "" "$row_bytes"

# ---- 2. counter_add ------------------------------------------------------------------------
cat >"$WORK/add.sql" <<'EOF'
\set k random(1, 100000)
SELECT counter_add('c', 'key' || :k);
EOF
machine_ticks() { awk '$1 == "cpu" { printf "%.0f\n", $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
cpu_run() { # label port: pgbench for T seconds; "tps|machine CPU ms per add"
  local label=$1 port=$2 m0 m1
  pgbench -h 127.0.0.1 -p "$port" -U postgres -n -T "$T" -c 8 -j 2 -M prepared -f "$WORK/add.sql" postgres \
    >"$WORK/pgb.$label" 2>&1 &
  local pg=$!
  sleep 1; m0=$(machine_ticks); sleep $((T - 2)); m1=$(machine_ticks)
  wait $pg
  local tps; tps=$(grep -o 'tps = [0-9.]*' "$WORK/pgb.$label" | head -1 | cut -d' ' -f3)
  # machine CPU (both cores, every process: servers, pgbench) per add, over the window
  echo "$tps|$(echo "($m1 - $m0) * 10 / ($tps * ($T - 2))" | bc -l)"
}
say "counter_add: 8 clients over 100,000 keys, $T s each"
q coord -c "SELECT counter_create('c', 16)" -c "SELECT counter_distribute()" >/dev/null
pg_cluster_up dc_bench_single 5575 "jit = off" "shared_buffers = '1GB'" 9>&-
runuser -u postgres -- psql -X -q -h 127.0.0.1 -p 5575 -d postgres -c "DROP EXTENSION IF EXISTS distributed_counter CASCADE" \
  -c "CREATE EXTENSION distributed_counter" -c "SELECT counter_create('c', 16)" >/dev/null
single=$(cpu_run single 5575)
citus=$(cpu_run citus "${PORT[coord]}")
printf '\n%-44s %8s %12s\n' "counter_add, 8 clients, 100,000 keys" "tps" "CPU ms/add"
IFS='|' read -r s_tps s_cpu <<<"$single"
IFS='|' read -r c_tps c_cpu <<<"$citus"
printf '%-44s %8.0f %12.3f\n' "single node, no Citus (C fast path)" "$s_tps" "$s_cpu"
printf '%-44s %8.0f %12.3f\n' "Citus: coordinator + 2 workers, one machine" "$c_tps" "$c_cpu"
printf '%-44s %7.2fx %11.2fx\n' "Citus / single node" "$(echo "$c_tps / $s_tps" | bc -l)" "$(echo "$c_cpu / $s_cpu" | bc -l)"
