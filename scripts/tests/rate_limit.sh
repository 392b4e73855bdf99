#!/usr/bin/env bash
# rate_limit() on a real server (its own cluster, distributed_counter.rate_limit_keys =
# 200), the parts a single backend cannot show:
#   - the bound under concurrency: 32 pgbench clients on one key for 6 s; the allowed
#     calls may not exceed burst + rate·t/per over the span t of their decisions, and
#     must reach at least 95 % of it;
#   - keys and databases isolated: many keys each get exactly their own burst; the same
#     key in another database is another bucket;
#   - capacity: with every slot holding a bucket that is still refilling a new key fails
#     with 53400 and the stored keys keep their state; once buckets are full again their
#     slots are reused, and only theirs;
#   - a restart, and a backend crash (kill -9, then the postmaster's reinitialisation of
#     shared memory), start every bucket full (documented).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/pg.sh
PORT=5521
CLUSTER=dc_ratelimit
say() { printf '\033[1;34m[rate_limit]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[rate_limit] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
check_eq() { [ "$1" == "$2" ] || fail "$3: got '$1', want '$2'"; say "ok: $3 ($1)"; }
WORK=$(mktemp -d /tmp/rate_limit.XXXXXX); chmod 755 "$WORK"
pg_cluster_up "$CLUSTER" "$PORT" "distributed_counter.rate_limit_keys = 200" "max_connections = 100"
trap 'pg_cluster_stop "$CLUSTER"; rm -rf "$WORK"' EXIT
q() { PGOPTIONS="-c client_min_messages=warning" runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -d "${DB:-postgres}" "$@"; }
state() { # SQL: the SQLSTATE it fails with, or OK
  local out
  if out=$(q -v VERBOSITY=sqlstate -c "$1" 2>&1); then echo OK; else grep -o 'ERROR:  [0-9A-Z]\{5\}' <<<"$out" | head -1 | cut -c9-; fi
}
q -c "DROP DATABASE IF EXISTS rl_other" -c "DROP EXTENSION IF EXISTS distributed_counter CASCADE" \
  -c "CREATE EXTENSION distributed_counter" -c "CREATE DATABASE rl_other"
DB=rl_other q -c "CREATE EXTENSION distributed_counter"

# ---- the bound, 32 clients on one key ------------------------------------------------------
# Each call logs, when allowed, a clock reading taken before it (t0: its key depends on
# it, so it is evaluated first) and one after it (t1). The decisions of the allowed calls
# all lie in [min(t0), max(t1)], so that span bounds the interval the contract speaks of.
RATE=2000 BURST=100
q -c "DROP TABLE IF EXISTS rl_log" -c "CREATE UNLOGGED TABLE rl_log (t0 timestamptz, t1 timestamptz)"
cat >"$WORK/hot.sql" <<EOF
INSERT INTO rl_log SELECT s.t0, clock_timestamp()
FROM (SELECT clock_timestamp() AS t0 OFFSET 0) s,
     LATERAL rate_limit('hot' || left(s.t0::text, 0), $RATE, '1 second', $BURST) r
WHERE r.allowed;
EOF
say "pgbench: 32 clients on one key for 6 s, rate $RATE per second, burst $BURST"
runuser -u postgres -- pgbench -h localhost -p "$PORT" -n -T 6 -c 32 -j 2 -f "$WORK/hot.sql" postgres >"$WORK/pgb" 2>&1 \
  || { tail "$WORK/pgb"; fail "pgbench failed"; }
calls=$(grep -o 'number of transactions actually processed: [0-9]*' "$WORK/pgb" | grep -o '[0-9]*$')
read -r allowed span bound <<<"$(q -F ' ' -c "SELECT count(*), extract(epoch FROM max(t1) - min(t0)),
                                               $BURST + $RATE * extract(epoch FROM max(t1) - min(t0)) FROM rl_log")"
ratio=$(echo "$allowed / $bound" | bc -l)
printf '[rate_limit] calls %s, allowed %s over %.3f s; bound burst + rate·t/per = %.1f; allowed/bound = %.4f\n' \
  "$calls" "$allowed" "$span" "$bound" "$ratio"
[ "$calls" -gt $((2 * allowed)) ] || fail "the load did not saturate the key ($calls calls for $allowed allowed)"
awk -v a="$allowed" -v b="$bound" 'BEGIN { exit !(a <= b) }' || fail "allowed $allowed exceeds the bound $bound"
awk -v r="$ratio" 'BEGIN { exit !(r >= 0.95) }' || fail "allowed is only $ratio of the bound"
say "ok: allowed <= bound and >= 95 % of it"
# And within every shorter window: the calls whose t1 falls in [t1_i, t1_i + w] were
# decided within [their min(t0), t1_i + w], so that span bounds them (a burst more than
# the bucket allows, anywhere in the run, shows here even when the whole run is within).
for w in 0.05 0.5; do
  worst=$(q -c "SELECT max(n - ($BURST + $RATE * extract(epoch FROM t1 + '$w s'::interval - lo)))
                FROM (SELECT t1, count(*) OVER w AS n, min(t0) OVER w AS lo FROM rl_log
                      WINDOW w AS (ORDER BY t1 RANGE BETWEEN CURRENT ROW AND '$w s' FOLLOWING)) s")
  awk -v x="$worst" 'BEGIN { exit !(x <= 0) }' || fail "a $w s window allowed $worst more than its bound"
  say "ok: every $w s window within its bound (the closest came to $worst of it)"
done

# ---- isolation -----------------------------------------------------------------------------
per_key=$(q -c "SELECT string_agg(DISTINCT n::text, ',') FROM (
                  SELECT k, count(*) FILTER (WHERE r.allowed) AS n
                  FROM generate_series(1, 150) k, generate_series(1, 9) i,
                       LATERAL rate_limit('iso:' || k || left(i::text, 0), 5, '1 second') r
                  GROUP BY k) s")
check_eq "$per_key" 5 "150 keys, 9 calls each, burst 5: every key allowed exactly 5"
q -c "SELECT pg_sleep(1.1)" >/dev/null   # their buckets are full again
q -c "SELECT * FROM rate_limit('shared-name', 1, '1 hour')" >/dev/null
check_eq "$(q -c "SELECT allowed FROM rate_limit('shared-name', 1, '1 hour')")" f "a key's bucket, drained"
check_eq "$(DB=rl_other q -c "SELECT allowed FROM rate_limit('shared-name', 1, '1 hour')")" t \
  "the same key in another database is another bucket"

# ---- capacity and eviction -----------------------------------------------------------------
# 200 slots: 'shared-name' in each database holds two (refilling for an hour). Fill 98
# with hour-long buckets and 100 with one-second buckets.
q -c "SELECT count(*) FROM generate_series(1, 98) k, LATERAL rate_limit('long:' || k, 1, '1 hour') r WHERE r.allowed" | grep -qx 98
q -c "SELECT count(*) FROM generate_series(1, 100) k, LATERAL rate_limit('short:' || k, 1, '1 second') r WHERE r.allowed" | grep -qx 100
check_eq "$(state "SELECT * FROM rate_limit('newcomer', 1, '1 hour')")" 53400 "every slot refilling: a new key fails"
check_eq "$(state "SELECT * FROM rate_limit('long:7', 1, '1 hour')")" OK "a stored key still gets its answer"
check_eq "$(q -c "SELECT allowed FROM rate_limit('long:7', 1, '1 hour')")" f "and keeps its state (drained)"
hint=$(q -c "SELECT * FROM rate_limit('newcomer', 1, '1 hour')" 2>&1 || true)
grep -q "distributed_counter.rate_limit_keys" <<<"$hint" || fail "the 53400 error does not name the setting: $hint"
q -c "SELECT pg_sleep(1.1)" >/dev/null   # the 100 short buckets are full again
got=$(q -c "SELECT count(*) FROM generate_series(1, 100) k, LATERAL rate_limit('new:' || k, 1, '1 hour') r WHERE r.allowed")
check_eq "$got" 100 "after the short buckets refilled, 100 new keys take their slots"
check_eq "$(state "SELECT * FROM rate_limit('new:101', 1, '1 hour')")" 53400 "and not one more: the hour-long buckets were not evicted"
check_eq "$(q -c "SELECT count(*) FILTER (WHERE r.allowed) FROM generate_series(1, 98) k, LATERAL rate_limit('long:' || k, 1, '1 hour') r")" \
  0 "every hour-long bucket kept its state"
check_eq "$(DB=rl_other q -c "SELECT allowed FROM rate_limit('shared-name', 1, '1 hour')")" f \
  "the other database's key kept its state too"

# ---- restart, and a backend crash ------------------------------------------------------------
pg_cluster_ctl "$CLUSTER" restart
check_eq "$(q -c "SELECT allowed || ',' || remaining FROM rate_limit('long:7', 1, '1 hour', 3)")" true,2 \
  "after a restart every bucket starts full"
check_eq "$(state "SELECT * FROM rate_limit('newcomer', 1, '1 hour')")" OK "and every slot is free"
q -c "SELECT * FROM rate_limit('crash', 1, '1 hour')" >/dev/null
check_eq "$(q -c "SELECT allowed FROM rate_limit('crash', 1, '1 hour')")" f "a key drained before a crash"
# kill -9 of a backend: the postmaster ends every session and reinitialises shared memory
log_offset=$(stat -c %s "$(pg_cluster_log "$CLUSTER")")
q -c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
sleeper=$!
sleep 1
pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'")
[ -n "$pid" ] || fail "no sleeping backend to kill"
kill -9 "$pid"
wait "$sleeper" || true
for _ in $(seq 1 60); do q -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
tail -c +$((log_offset + 1)) "$(pg_cluster_log "$CLUSTER")" | grep -q "terminated by signal 9" \
  || fail "the server log shows no backend killed"
check_eq "$(q -c "SELECT allowed FROM rate_limit('crash', 1, '1 hour')")" t \
  "after a backend crash and the reinitialisation of shared memory, the bucket starts full"
say "all rate_limit checks passed"
