# Shared helpers for benchmark scripts (sourced). Benchmarks print ratios against a
# baseline measured in the same run on the same cluster: absolute times on shared
# machines mean little.
set -euo pipefail
BENCH_PORT=${BENCH_PORT:-5497}
BENCH_DB=${BENCH_DB:-dc_bench}
export PATH="$HOME/.cargo/bin:$PATH"

bench_log() { printf '\033[1;35m[bench]\033[0m %s\n' "$*" >&2; }

# bench_own_cluster NAME [postgresql.conf lines...]: take the install lock (held until
# the script exits), install the release build unless SKIP_INSTALL is set, and (re)start
# cluster NAME on $BENCH_PORT with the settings every pgbench benchmark shares (JIT off,
# 1 GB shared_buffers, synchronous_commit on, the worker serving $BENCH_DB) and the
# caller's lines.
bench_own_cluster() {
  local name=$1; shift
  exec 9>/tmp/distributed_counter.pg.lock
  flock 9
  if [ -z "${SKIP_INSTALL:-}" ]; then
    bench_log "installing the release build (fat LTO: a few minutes)"
    cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >"/tmp/$name-install.log" 2>&1 \
      || { tail -30 "/tmp/$name-install.log"; return 1; }
  fi
  ./scripts/cluster.sh "$name" "$BENCH_PORT" "jit = off" "shared_buffers = '1GB'" \
    "distributed_counter.database = '$BENCH_DB'" "synchronous_commit = on" "$@" 9>&-
}

# Install the release build and (re)start the benchmark cluster. Call while holding
# /tmp/distributed_counter.pg.lock (a debug install by a concurrent `cargo pgrx test`
# would otherwise replace the library mid-run).
bench_install_and_start() {
  if [ -z "${SKIP_INSTALL:-}" ]; then
  bench_log "installing the release build (fat LTO: a few minutes)"
  cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/tmp/dc-bench-install.log 2>&1 \
    || { tail -30 /tmp/dc-bench-install.log; return 1; }
  fi
  ./scripts/cluster.sh dc_bench "$BENCH_PORT" "jit = off" "max_parallel_workers_per_gather = 0" \
    "shared_buffers = '6GB'" "work_mem = '256MB'" "distributed_counter.database = '$BENCH_DB'" \
    "synchronous_commit = on" "max_wal_size = '4GB'"
}

bpsql() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h localhost -p "$BENCH_PORT" "$@"; }

bench_fresh_db() {
  bpsql -d postgres -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB"
}

# time_query LABEL SQL [runs]: median wall time in ms of running SQL `runs` times
# (default 5) in one session, printed as "LABEL ms".
time_query() {
  local label=$1 sql=$2 runs=${3:-5}
  local out
  out=$(bpsql -d "$BENCH_DB" -At <<SQL
CREATE TEMP TABLE _t (ms float8);
DO \$\$
DECLARE t0 timestamptz; dummy text;
BEGIN
  FOR i IN 1..$runs LOOP
    t0 := clock_timestamp();
    EXECUTE \$q\$ $sql \$q\$ INTO dummy;
    INSERT INTO _t VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP;
END \$\$;
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM _t;
SQL
)
  printf '%s %s\n' "$label" "$out"
}

# time_interleaved RUNS LABEL1 SQL1 LABEL2 SQL2 ...: runs every query once per round,
# RUNS rounds, in one session (so slow drifts of a shared machine hit all queries
# alike), and prints "LABEL median_ms" per query.
time_interleaved() {
  local runs=$1; shift
  local labels=() queries=()
  while [ $# -gt 0 ]; do labels+=("$1"); queries+=("$2"); shift 2; done
  local arr="ARRAY["
  for i in "${!queries[@]}"; do
    [ "$i" -gt 0 ] && arr+=","
    arr+="\$q$i\$ ${queries[$i]} \$q$i\$"
  done
  arr+="]"
  local out
  out=$(bpsql -d "$BENCH_DB" -At <<SQL
CREATE TEMP TABLE _t (q int, ms float8);
DO \$\$
DECLARE t0 timestamptz; dummy text; qs text[] := $arr;
BEGIN
  FOR r IN 1..$runs LOOP
    FOR i IN 1..array_length(qs, 1) LOOP
      t0 := clock_timestamp();
      EXECUTE qs[i] INTO dummy;
      INSERT INTO _t VALUES (i, extract(epoch FROM clock_timestamp() - t0) * 1000);
    END LOOP;
  END LOOP;
END \$\$;
SELECT q, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM _t GROUP BY q ORDER BY q;
SQL
)
  while IFS='|' read -r q ms; do
    printf '%s %s\n' "${labels[$((q - 1))]}" "$ms"
  done <<< "$out"
}

# bench_pgbench FILE CLIENTS SECONDS [pgbench args...]: one pgbench run against $BENCH_DB
# on $BENCH_PORT; prints its tps. Protocol $MODE (default prepared), $J threads (default
# 2), over TCP to localhost with PGSSLMODE=$SSLMODE (default disable); its log goes to a
# temporary file in $OUT (default /tmp) and is printed if pgbench fails.
bench_pgbench() {
  local file=$1 clients=$2 secs=$3 log; shift 3
  log=$(mktemp "${OUT:-/tmp}/pgbench.XXXXXX")
  runuser -u postgres -- env PGSSLMODE="${SSLMODE:-disable}" /usr/lib/postgresql/15/bin/pgbench -h localhost -p "$BENCH_PORT" -n \
    -M "${MODE:-prepared}" -c "$clients" -j "${J:-2}" -T "$secs" -f "$file" "$@" "$BENCH_DB" > "$log" 2>&1 \
    || { cat "$log" >&2; return 1; }
  sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log" | head -1
}

# bench_median: the median of the numbers on stdin (separated by spaces or newlines).
# The worker serves $BENCH_DB, which bench_fresh_db just re-created: wait until it is
# connected to it again (up to 30 s).
bench_wait_worker() {
  local _
  for _ in $(seq 1 60); do
    [ "$(bpsql -d "$BENCH_DB" -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor' AND datname = '$BENCH_DB'")" == 1 ] && return 0
    sleep 0.5
  done
  bench_log "the worker did not connect to $BENCH_DB"
}
bench_median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
