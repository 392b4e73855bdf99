#!/usr/bin/env bash
# rate_limit() against what users run today, measured in the same run on the same cluster
# (its own cluster dc_bench_ratelimit, port 5493, release build, synchronous_commit on):
#   32 clients on ONE hot key, -M prepared, ROUNDS interleaved runs of each, medians:
#     rate_limit('hot', 1000, '1 second')       (most calls refused: the common case of a
#                                                hot key under a limit)
#     the same with a limit never reached        (every call allowed, the state moves)
#     single-row UPDATE n = n + 1                (a counter row)
#     a PL/pgSQL token bucket on a table row     (SELECT ... FOR UPDATE, then UPDATE)
#     SELECT 1                                   (the round trip itself)
#   and rate_limit over 100,000 keys (uniform), against SELECT 1.
#   Then a rate-limited stream: one client asking at a changing pace (below, at, then
#   three times the configured rate) for 12 s; every decision logged with its time,
#   plotted as allowed and refused per second against the configured rate
#   (bench-out/rate_limit_stream.png, and .csv).
# Usage: benches/rate_limit.sh   (SECONDS_PER_RUN=8 ROUNDS=3; SKIP_INSTALL=1 to reuse an
#        installed release build)
cd "$(dirname "$0")/.."
source benches/lib.sh
BENCH_PORT=${RATE_LIMIT_BENCH_PORT:-5493}
bench_own_cluster dc_bench_ratelimit "distributed_counter.rate_limit_keys = 200000" || exit 1
T=${SECONDS_PER_RUN:-8}
ROUNDS=${ROUNDS:-3}
C=32
OUT=$(mktemp -d /tmp/rate_limit_bench.XXXXXX)
chmod 777 "$OUT"
trap 'rm -rf "$OUT"' EXIT
mkdir -p bench-out

bench_fresh_db
bpsql -d "$BENCH_DB" <<'SQL' >/dev/null
CREATE EXTENSION distributed_counter;
CREATE TABLE one_row (id int PRIMARY KEY, n int8 NOT NULL);
INSERT INTO one_row VALUES (1, 0);
-- What users write today: a bucket row per key, locked, refilled and spent in PL/pgSQL.
CREATE TABLE buckets (key text PRIMARY KEY, tokens float8 NOT NULL, at timestamptz NOT NULL);
CREATE FUNCTION plpgsql_take(k text, rate float8, per interval, burst float8) RETURNS bool
LANGUAGE plpgsql AS $$
DECLARE
    b buckets;
    now timestamptz := clock_timestamp();
    t float8;
BEGIN
    SELECT * INTO b FROM buckets WHERE key = k FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO buckets VALUES (k, burst - 1, now) ON CONFLICT (key) DO NOTHING;
        RETURN true;
    END IF;
    t := least(burst, b.tokens + extract(epoch FROM now - b.at) * rate / extract(epoch FROM per));
    UPDATE buckets SET tokens = CASE WHEN t >= 1 THEN t - 1 ELSE t END, at = now WHERE key = k;
    RETURN t >= 1;
END $$;
SQL
w() { printf '%s\n' "$2" >"$OUT/$1.sql"; chmod 644 "$OUT/$1.sql"; }
w rate_limit "SELECT allowed FROM rate_limit('hot', 1000, '1 second');"
w rate_limit_allowed "SELECT allowed FROM rate_limit('hot-open', 1000000, '1 second');"
w update "UPDATE one_row SET n = n + 1 WHERE id = 1;"
w plpgsql "SELECT plpgsql_take('hot', 1000, '1 second', 1000);"
w select1 "SELECT 1;"
w rate_limit_keys $'\\set k random(1, 100000)\nSELECT allowed FROM rate_limit(\'user:\' || :k, 10, \'1 second\');'

kinds=(rate_limit rate_limit_allowed update plpgsql select1 rate_limit_keys)
declare -A ALL TPS
for round in $(seq 1 "$ROUNDS"); do
  for kind in "${kinds[@]}"; do
    bpsql -d "$BENCH_DB" -c "CHECKPOINT" >/dev/null
    tps=$(bench_pgbench "$OUT/$kind.sql" "$C" "$T")
    ALL[$kind]="${ALL[$kind]:-} $tps"
    bench_log "round $round $kind: $tps tps"
  done
done
for kind in "${kinds[@]}"; do TPS[$kind]=$(echo "${ALL[$kind]}" | bench_median); done
ratio() { echo "${TPS[$1]} / ${TPS[$2]}" | bc -l; }

echo
echo "== rate_limit: $C clients, -M prepared, median of $ROUNDS interleaved ${T}s runs, $(nproc) cores, release build =="
printf '%-52s %10s %14s %12s\n' "one hot key" "tps" "x UPDATE" "x SELECT 1"
for kind in rate_limit rate_limit_allowed plpgsql update select1; do
  case $kind in
    rate_limit) label="rate_limit (1,000/s limit: most calls refused)" ;;
    rate_limit_allowed) label="rate_limit (limit never reached: all allowed)" ;;
    plpgsql) label="PL/pgSQL token bucket on a table row" ;;
    update) label="single-row UPDATE n = n + 1" ;;
    select1) label="SELECT 1" ;;
  esac
  printf '%-52s %10.0f %13.2fx %11.2fx\n' "$label" "${TPS[$kind]}" "$(ratio "$kind" update)" "$(ratio "$kind" select1)"
done
printf '%-52s %10.0f %14s %11.2fx\n' "rate_limit over 100,000 keys (uniform)" "${TPS[rate_limit_keys]}" "" "$(ratio rate_limit_keys select1)"
printf 'rate_limit / PL/pgSQL token bucket: %.1fx\n' "$(ratio rate_limit plpgsql)"

# ---- a rate-limited stream -------------------------------------------------------------------
# One client, paced by pgbench -R: 50/s for 4 s, 100/s (the limit) for 4 s, 300/s for 4 s;
# limit 100 per second, burst 20. Every decision is logged with its time.
bench_log "stream: limit 100/s, burst 20; demand 50/s, 100/s, then 300/s, 4 s each"
bpsql -d "$BENCH_DB" -c "CREATE UNLOGGED TABLE stream_log (at timestamptz, allowed bool)" >/dev/null
w stream "INSERT INTO stream_log SELECT clock_timestamp(), allowed FROM rate_limit('stream', 100, '1 second', 20);"
for pace in 50 100 300; do
  bench_pgbench "$OUT/stream.sql" 1 4 -R "$pace" >/dev/null
done
bpsql -d "$BENCH_DB" -At -F, -c "
  WITH t AS (SELECT min(at) AS t0 FROM stream_log)
  SELECT round(extract(epoch FROM at - t0)::numeric, 4), allowed::int FROM stream_log, t ORDER BY at" \
  >bench-out/rate_limit_stream.csv
/usr/bin/python3 - <<'PY'
import csv
rows = [(float(t), int(a)) for t, a in csv.reader(open("bench-out/rate_limit_stream.csv"))]
end = int(rows[-1][0]) + 1
allowed = [0] * end; refused = [0] * end
for t, a in rows:
    (allowed if a else refused)[int(t)] += 1
print("second  allowed  refused   (limit 100/s, burst 20)")
for s in range(end):
    print(f"{s:6d} {allowed[s]:8d} {refused[s]:8d}")
total_t = rows[-1][0] - rows[0][0]
print(f"allowed {sum(allowed)} in {total_t:.2f} s; bound burst + rate*t = {20 + 100 * total_t:.0f}")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = list(range(end))
    ax.bar(xs, allowed, color="tab:green", label="allowed")
    ax.bar(xs, refused, bottom=allowed, color="tab:red", alpha=.6, label="refused")
    ax.axhline(100, color="black", ls="--", label="configured rate (100/s)")
    ax.set_xlabel("second"); ax.set_ylabel("calls per second")
    ax.set_title("rate_limit: demand 50/s, 100/s, then 300/s; limit 100/s, burst 20")
    ax.legend(); ax.grid(True, alpha=.3)
    fig.tight_layout(); fig.savefig("bench-out/rate_limit_stream.png", dpi=110)
    print("plot: bench-out/rate_limit_stream.png")
except ImportError:
    print("(matplotlib missing: no plot)")
PY
