#!/usr/bin/env bash
# Buffered (write-behind) counters under write contention, against baselines measured in
# the same run on the same cluster (its own cluster dc_bench_buffered, port 5495, release
# build, synchronous_commit on, the worker serving the benchmark database with
# distributed_counter.flush_interval = 100 ms, its default, set explicitly):
#   CLIENTS (32) clients, ROUNDS (5) interleaved rounds of SECONDS_PER_RUN (8) s each, medians:
#     buffered counter_add on ONE hot key         (counter_create(..., mode => 'buffered'))
#     single-row UPDATE n = n + 1                  (a counter row)
#     durable counter_add on ONE hot key           (the default mode: a pending row per add)
#     SELECT 1                                     (the round trip itself)
#     buffered counter_add over 1,000 keys, uniform and Zipf (s = 1.1)
#   Targets: buffered / UPDATE >= 20x, buffered / SELECT 1 >= 0.6x.
#   Every buffered run is checked exact: the counter grows by exactly the transactions
#   pgbench completed (reads include the unflushed deltas).
#   While the buffered runs go, counter_stats is sampled every second (unflushed,
#   last_flush_age).
#   Flush cost: 20 counter_flush() calls, 0.1 s apart, timed in one session (\timing),
#   under the buffered hot-key load and under the buffered Zipf load.
#   counter_value latency (p50/p99, 4 clients) of the buffered hot key, idle and under the
#   buffered Zipf load, against a primary-key SELECT of one row under the same conditions.
# Connections: TCP to localhost without SSL, -M prepared (as benches/rate_limit.sh).
# Writes docs/benchmarks/counters_buffered.txt.
# Usage: benches/counters_buffered.sh   (~8 min incl. the release build; SECONDS_PER_RUN=8,
#        ROUNDS=5, CLIENTS=32, PGBENCH_MODE=prepared|simple; SKIP_INSTALL=1 to reuse an
#        installed release build)
cd "$(dirname "$0")/.."
source benches/lib.sh
# A cluster of its own (other benchmarks restart and reconfigure dc_bench).
BENCH_PORT=${BUFFERED_BENCH_PORT:-5495}
bench_own_cluster dc_bench_buffered "distributed_counter.flush_interval = 100" "max_wal_size = '4GB'" || exit 1
T=${SECONDS_PER_RUN:-8}
ROUNDS=${ROUNDS:-5}
SSLMODE=${PGBENCH_SSLMODE:-disable}
MODE=${PGBENCH_MODE:-prepared}
C=${CLIENTS:-32}
J=${THREADS:-2}
KEYS=1000
OUT_TXT=docs/benchmarks/counters_buffered.txt
OUT=$(mktemp -d /tmp/counters_buffered.XXXXXX)
chmod 777 "$OUT"  # pgbench (as postgres) writes its latency logs here
trap 'jobs -p | xargs -r kill 2>/dev/null || true; rm -rf "$OUT"' EXIT

bench_fresh_db
bq() { bpsql -d "$BENCH_DB" -At -c "$1"; }
bpsql -d "$BENCH_DB" <<SQL >/dev/null
CREATE EXTENSION distributed_counter;
CREATE TABLE one_row (id int PRIMARY KEY, n int8 NOT NULL);
INSERT INTO one_row VALUES (1, 0);
SELECT counter_create('bhot', mode => 'buffered'), counter_create('buniform', mode => 'buffered'),
       counter_create('bzipf', mode => 'buffered'), counter_create('dhot');
SQL
bench_wait_worker
SETTINGS=$(bq "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('distributed_counter.flush_interval', 'distributed_counter.buffer_keys', 'distributed_counter.compact_interval', 'synchronous_commit', 'fsync')")
bench_log "settings: $SETTINGS"
modes=$(bq "SELECT string_agg(name || '=' || mode, ' ' ORDER BY name) FROM counter_stats")
bench_log "counters: $modes"
[ "$modes" == "bhot=buffered buniform=buffered bzipf=buffered dhot=durable" ] || { bench_log "unexpected counter modes: $modes"; exit 1; }

w() { printf '%s\n' "${@:2}" > "$OUT/$1.sql"; chmod 644 "$OUT/$1.sql"; }
w buffered "SELECT counter_add('bhot', 'k1');"
w update "UPDATE one_row SET n = n + 1 WHERE id = 1;"
w durable "SELECT counter_add('dhot', 'k1');"
w select1 "SELECT 1;"
w uniform "\\set k random(1, $KEYS)" "SELECT counter_add('buniform', 'k' || :k);"
w zipf "\\set k random_zipfian(1, $KEYS, 1.1)" "SELECT counter_add('bzipf', 'k' || :k);"
w read_counter "SELECT counter_value('bhot', 'k1');"
w read_row "SELECT n FROM one_row WHERE id = 1;"
declare -A COUNTER=([buffered]=bhot [durable]=dhot [uniform]=buniform [zipf]=bzipf)
total() { # counter: the sum over its keys (the hot counters have one key, k1)
  bq "SELECT sum(value) FROM counter_values('$1', ARRAY(SELECT 'k' || i FROM generate_series(1, $KEYS) i))"
}

# sample counter_stats of counter $1 every second while pid $2 lives
sample_stats() {
  local name=$1 pid=$2
  while kill -0 "$pid" 2>/dev/null; do
    bq "SELECT coalesce(unflushed, 0), coalesce(extract(epoch FROM last_flush_age), 0) FROM counter_stats WHERE name = '$name'" \
      >> "$OUT/samples-$name" 2>/dev/null || true
    sleep 1
  done
}

# One run: tps; for a counter, also checks that it grew by exactly the transactions
# pgbench completed (its own log directory, so the log is the only one there).
run() { # kind
  local kind=$1 dir c before after done_tx tps
  dir=$(mktemp -d "$OUT/run.XXXXXX")
  c=${COUNTER[$kind]:-}
  [ -z "$c" ] || before=$(total "$c")
  if [ -n "$c" ]; then
    OUT=$dir bench_pgbench "$OUT/$kind.sql" "$C" "$T" > "$dir/tps" &
    local bp=$!
    sample_stats "$c" "$bp" >/dev/null &  # (not holding the caller's $(...) open)
    wait $bp || exit 1
    tps=$(cat "$dir/tps")
    after=$(total "$c")
    done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$dir"/pgbench.* | head -1)
    if [ "$((after - before))" != "$done_tx" ]; then
      echo "$kind: counter '$c' grew by $((after - before)), pgbench completed $done_tx transactions" >> "$OUT/inexact"
      bench_log "INEXACT: $kind: counter '$c' grew by $((after - before)), pgbench completed $done_tx"
    fi
  else
    tps=$(OUT=$dir bench_pgbench "$OUT/$kind.sql" "$C" "$T") || exit 1
  fi
  rm -rf "$dir"
  echo "$tps"
}

# ROUNDS rounds of every workload back to back, so a slow phase of the shared machine hits
# them alike; the median of each is reported.
kinds=(buffered update durable select1 uniform zipf)
declare -A ALL TPS
: > "$OUT/inexact"
for kind in "${kinds[@]}"; do : > "$OUT/samples-${COUNTER[$kind]:-none}"; done
for round in $(seq 1 "$ROUNDS"); do
  for kind in "${kinds[@]}"; do
    bq "CHECKPOINT" >/dev/null
    tps=$(run "$kind")
    ALL[$kind]="${ALL[$kind]:-} $tps"
    bench_log "round $round $kind: $tps tps"
  done
done
for kind in "${kinds[@]}"; do TPS[$kind]=$(echo "${ALL[$kind]}" | bench_median); done

# ---- flush cost: 20 counter_flush() calls, 0.1 s apart, under load ------------------------
flush_cost() { # kind -> "median_ms max_ms median_rows"
  local kind=$1 bg i
  bench_pgbench "$OUT/$kind.sql" "$C" "$T" > "$OUT/bg.tps" &
  bg=$!
  sleep 2
  {
    echo '\timing on'
    for i in $(seq 1 20); do echo 'SELECT counter_flush();'; echo '\! sleep 0.1'; done
  } | bpsql -d "$BENCH_DB" -At > "$OUT/flush.out"
  wait $bg
  # psql -At with \timing: the result row (rows written), then "Time: 1.234 ms"
  echo "$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$OUT/flush.out" | bench_median)" \
       "$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$OUT/flush.out" | sort -g | tail -1)" \
       "$(grep -E '^[0-9]+$' "$OUT/flush.out" | bench_median)"
}
bench_log "flush cost: 20 counter_flush() calls under the buffered hot-key load"
read -r fh50 fhmax fhrows <<< "$(flush_cost buffered)"
bench_log "flush cost: 20 counter_flush() calls under the buffered Zipf load"
read -r fz50 fzmax fzrows <<< "$(flush_cost zipf)"

# ---- counter_value latency: idle, then under the buffered Zipf load -------------------------
latency() { # file -> "p50 p99" in ms from a pgbench latency log
  rm -f "$OUT"/lat.*
  (cd "$OUT" && bench_pgbench "$1" 4 "$((T / 2))" -l --log-prefix="$OUT/lat" >/dev/null)
  cat "$OUT"/lat.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}'
}
bench_log "read latency, idle"
read -r c50 c99 <<< "$(latency "$OUT/read_counter.sql")"
read -r r50 r99 <<< "$(latency "$OUT/read_row.sql")"
bench_log "read latency, under the buffered Zipf counter_add load ($C clients)"
bench_pgbench "$OUT/zipf.sql" "$C" "$((T * 2 + 4))" > "$OUT/bg.tps" &
bg=$!
sleep 2
read -r lc50 lc99 <<< "$(latency "$OUT/read_counter.sql")"
read -r lr50 lr99 <<< "$(latency "$OUT/read_row.sql")"
wait $bg
load_tps=$(cat "$OUT/bg.tps")
bq "SELECT counter_flush()" >/dev/null

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
per_round() { # kind baseline -> the kind/baseline ratio of each round
  paste -d' ' <(echo "${ALL[$1]}" | tr ' ' '\n' | grep -v '^$') <(echo "${ALL[$2]}" | tr ' ' '\n' | grep -v '^$') |
    awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $2}'
}
max_col() { # counter column -> the largest sample
  if [ -s "$OUT/samples-$1" ]; then cut -d'|' -f"$2" "$OUT/samples-$1" | sort -g | tail -1; else echo "-"; fi
}
mkdir -p docs/benchmarks
{
  echo "== counters_buffered: $C clients, -M $MODE, median of $ROUNDS interleaved ${T}s runs, $(nproc) cores, release build, $(date -u +%Y-%m-%d) =="
  echo "settings: $SETTINGS"
  printf '%-52s %10s %14s %12s\n' "one hot key" "tps" "x UPDATE" "x SELECT 1"
  for kind in buffered durable update select1; do
    case $kind in
      buffered) label="counter_add, buffered" ;;
      durable) label="counter_add, durable (a pending row per add)" ;;
      update) label="single-row UPDATE n = n + 1" ;;
      select1) label="SELECT 1" ;;
    esac
    printf '%-52s %10.0f %13.2fx %11.2fx\n' "$label" "${TPS[$kind]}" "$(ratio "${TPS[$kind]}" "${TPS[update]}")" "$(ratio "${TPS[$kind]}" "${TPS[select1]}")"
  done
  printf '%-52s %10.0f %14s %11.2fx\n' "counter_add, buffered, $KEYS keys uniform" "${TPS[uniform]}" "" "$(ratio "${TPS[uniform]}" "${TPS[select1]}")"
  printf '%-52s %10.0f %14s %11.2fx\n' "counter_add, buffered, $KEYS keys Zipf (s = 1.1)" "${TPS[zipf]}" "" "$(ratio "${TPS[zipf]}" "${TPS[select1]}")"
  echo "buffered / UPDATE:   $(ratio "${TPS[buffered]}" "${TPS[update]}")x (target >= 20x); per round $(per_round buffered update)"
  echo "buffered / SELECT 1: $(ratio "${TPS[buffered]}" "${TPS[select1]}")x (target >= 0.6x); per round $(per_round buffered select1)"
  echo "durable / UPDATE:    $(ratio "${TPS[durable]}" "${TPS[update]}")x; buffered / durable: $(ratio "${TPS[buffered]}" "${TPS[durable]}")x"
  if [ -s "$OUT/inexact" ]; then
    echo "EXACTNESS: FAILED in $(wc -l < "$OUT/inexact") runs:"; sed 's/^/  /' "$OUT/inexact"
  else
    echo "exactness: every counter run grew by exactly the transactions pgbench completed ($ROUNDS runs each of buffered hot, uniform, Zipf, durable hot)"
  fi
  echo
  echo "write-behind under load (counter_stats sampled every 1 s; flush_interval 100 ms):"
  for c in bhot buniform bzipf; do
    printf '  %-9s max unflushed %8s   max last_flush_age %8s s\n' "$c" "$(max_col "$c" 1)" "$(max_col "$c" 2)"
  done
  echo
  echo "flush cost: 20 counter_flush() calls 0.1 s apart, one session, under $C-client buffered adds (ms):"
  printf '  %-32s median %8s  max %8s  median rows written %6s\n' "hot key" "$fh50" "$fhmax" "$fhrows" \
    "$KEYS keys, Zipf" "$fz50" "$fzmax" "$fzrows"
  echo
  echo "read latency, 4 clients (ms):"
  printf '  %-52s p50 %7s  p99 %7s\n' "counter_value (buffered hot key), idle" "$c50" "$c99" \
    "PK row SELECT, idle" "$r50" "$r99" \
    "counter_value (buffered hot key), under Zipf adds" "$lc50" "$lc99" \
    "PK row SELECT, under Zipf adds" "$lr50" "$lr99"
  echo "  (the Zipf load: $C clients, buffered counter_add, $(printf '%.0f' "$load_tps") tps while the readers ran)"
  echo "  counter_value / PK SELECT p99: idle $(ratio "$c99" "$r99")x, under load $(ratio "$lc99" "$lr99")x"
} | tee "$OUT_TXT"
[ ! -s "$OUT/inexact" ]
