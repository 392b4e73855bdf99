#!/usr/bin/env bash
# Citus on this one machine: a coordinator and two workers (scripts/lib/citus.sh, release
# build), so the figures are costs per node, not a speed-up (all three servers share the
# same 2 cores). Baselines are measured in the same run:
#   1. A rollup of ROWS rows (default 10M): day, hll_add_agg / cms_add_agg / topk_add_agg
#      GROUP BY day, over a distributed table against the same rows in a plain table on
#      the coordinator; the bytes that crossed loopback during each query (from
#      /proc/net/dev), against the size of the rows a row-gathering plan would ship.
#   2. counter_add on distributed counters, with the clients on the coordinator and with
#      them on the worker nodes (Citus keeps its metadata on every node), against
#      counter_add on a single node without Citus (the C fast path); 8 pgbench clients
#      over 100,000 keys: throughput, the machine's CPU time per add (both cores, every
#      process), and where that CPU goes: each node's backends, its compaction worker,
#      its other processes, and pgbench.
# Usage: benches/citus.sh   (ROWS=10000000 SECONDS_PER_RUN=12 SKIP_INSTALL=1 to reuse an
#        installed release build). Needs ../shared (Citus is built from it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/lib/pg.sh
say() { printf '\033[1;35m[bench]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[bench] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
ROWS=${ROWS:-10000000}
T=${SECONDS_PER_RUN:-12}
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
HZ=$(getconf CLK_TCK)
# Every process's CPU time by role, "pid node role ticks": each server's client backends
# (and the connections Citus opens between the nodes), its compaction worker, the rest
# (checkpointer, walwriter, Citus's maintenance daemon, ...), and pgbench. A process
# that exits within the window loses its ticks from the split (none should: pgbench and
# Citus keep their connections open).
cpu_snapshot() { # NODE=CLUSTER...  (shell builtins only: it must be quick under load)
  local spec node pm pid cmd kind f
  for spec in "$@"; do
    node=${spec%%=*}
    read -r pm <"$(pg_cluster_dir "${spec#*=}")/data/postmaster.pid"
    for pid in "$pm" $(pgrep -P "$pm"); do
      { IFS= read -r -d '' cmd <"/proc/$pid/cmdline" && read -r -a f <"/proc/$pid/stat"; } 2>/dev/null || continue
      case $cmd in
        *"distributed_counter compactor"*) kind=compaction ;;
        *"127.0.0.1("*|*"[local]"*) kind=backends ;;
        *) kind=other ;;
      esac
      echo "$pid $node $kind $((f[13] + f[14]))"
    done
  done
  for pid in $(pgrep -x pgbench); do
    read -r -a f <"/proc/$pid/stat" 2>/dev/null && echo "$pid client pgbench $((f[13] + f[14]))"
  done
}
# cpu_run LABEL NODE=CLUSTER... -- PORT...: 8 pgbench clients spread over the ports for T
# seconds. Prints "adds/s|machine CPU ms per add" (both cores, every process, over the
# middle T-4 s, when every connection is open) and leaves the split by role in
# $WORK/split.LABEL: "node role ms/add".
cpu_run() {
  local label=$1; shift
  local specs=() pids=() port m0 m1 i=0
  while [ "$1" != -- ]; do specs+=("$1"); shift; done; shift
  for port in "$@"; do
    pgbench -h 127.0.0.1 -p "$port" -U postgres -n -T "$T" -c $((8 / $#)) -j 1 -M prepared -f "$WORK/add.sql" postgres \
      >"$WORK/pgb.$label.$i" 2>&1 &
    pids+=($!); i=$((i + 1))
  done
  sleep 2; local w0; w0=$(date +%s%N)
  m0=$(machine_ticks); cpu_snapshot "${specs[@]}" >"$WORK/cpu0.$label"
  sleep $((T - 4))
  m1=$(machine_ticks); cpu_snapshot "${specs[@]}" >"$WORK/cpu1.$label"
  local w1; w1=$(date +%s%N)
  wait "${pids[@]}"
  local tps; tps=$(cat "$WORK"/pgb."$label".* | grep -o 'tps = [0-9.]*' | awk '{ s += $3 } END { print s }')
  [ -n "$tps" ] || { tail "$WORK"/pgb."$label".*; fail "pgbench failed"; }
  local adds; adds=$(echo "$tps * ($w1 - $w0) / 1000000000" | bc -l)
  awk -v adds="$adds" -v hz="$HZ" '
    NR == FNR { t0[$1] = $4; next }
    { d[$2 " " $3] += $4 - ($1 in t0 ? t0[$1] : 0) }
    END { for (r in d) printf "%s %.4f\n", r, d[r] * 1000 / hz / adds }' \
    "$WORK/cpu0.$label" "$WORK/cpu1.$label" | sort -k3 -gr >"$WORK/split.$label"
  echo "$tps|$(echo "($m1 - $m0) * 1000 / $HZ / $adds" | bc -l)"
}
say "counter_add: 8 clients over 100,000 keys, $T s each"
q coord -c "SELECT counter_create('c', 16)" -c "SELECT counter_distribute()" >/dev/null
pg_cluster_up dc_bench_single 5575 "jit = off" "shared_buffers = '1GB'" 9>&-
runuser -u postgres -- psql -X -q -h 127.0.0.1 -p 5575 -d postgres -c "DROP EXTENSION IF EXISTS distributed_counter CASCADE" \
  -c "CREATE EXTENSION distributed_counter" -c "SELECT counter_create('c', 16)" >/dev/null
nodes=(coordinator=dc_citus_coord worker1=dc_citus_w1 worker2=dc_citus_w2)
single=$(cpu_run single single=dc_bench_single -- 5575)
via_coord=$(cpu_run via_coord "${nodes[@]}" -- "${PORT[coord]}")
via_workers=$(cpu_run via_workers "${nodes[@]}" -- "${PORT[w1]}" "${PORT[w2]}")
row() { local tps cpu; IFS='|' read -r tps cpu <<<"$2"; printf '%-52s %8.0f %12.3f\n' "$1" "$tps" "$cpu"; }
ratio() {
  local t1 c1 t0 c0; IFS='|' read -r t1 c1 <<<"$2"; IFS='|' read -r t0 c0 <<<"$single"
  printf '%-52s %7.2fx %11.2fx\n' "$1" "$(echo "$t1 / $t0" | bc -l)" "$(echo "$c1 / $c0" | bc -l)"
}
printf '\n%-52s %8s %12s\n' "counter_add, 8 clients, 100,000 keys" "adds/s" "CPU ms/add"
row "single node, no Citus (C fast path)" "$single"
row "Citus, clients on the coordinator" "$via_coord"
row "Citus, clients on the two worker nodes" "$via_workers"
ratio "Citus through the coordinator / single node" "$via_coord"
ratio "Citus through the workers / single node" "$via_workers"
for label in single via_coord via_workers; do
  printf '\nwhere the CPU goes (%s), ms per add:\n' "$label"
  awk '$3 >= 0.0005 { printf "  %-12s %-11s %8.4f\n", $1, $2, $3 }' "$WORK/split.$label"
done
