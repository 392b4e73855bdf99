#!/usr/bin/env bash
# Bucketed counters on a live preloaded server, against a ledger of (at, key, delta):
# counter_value, counter_window, counter_series and counter_top with explicit `at`
# values across bucket and retention boundaries, first with the worker paused (every add
# still pending), then after it folded them and enforced the retention; rolled-back adds;
# buckets that stay on UTC boundaries under other time zones and across a DST change.
# The expected values come from the ledger with date_trunc in UTC, not from the
# extension's own bucket arithmetic.
# Cluster dc_buckets (port 5562), made afresh on every run; PG_MAJOR picks the version.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/pg.sh
CLUSTER=dc_buckets
PORT=5562
say() { printf '\033[1;34m[buckets]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[buckets] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }
trap 'pg_cluster_stop $CLUSTER' EXIT
pg_cluster_stop "$CLUSTER"
rm -rf "$(pg_cluster_dir "$CLUSTER")"
pg_cluster_up "$CLUSTER" "$PORT" "distributed_counter.compact_interval = 100"
q() { (cd / && runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -d postgres "$@"); }
zero() { # $1: what, $2: a query counting mismatches
  local n; n=$(q -c "$2")
  [ "$n" = 0 ] || fail "$1: $n mismatches"
}

q <<'SQL' >/dev/null
CREATE EXTENSION distributed_counter;
ALTER SYSTEM SET distributed_counter.worker_enabled = off;
SELECT pg_reload_conf();
SELECT counter_create('m', bucket => '1 minute', retention => '10 minutes');
SELECT counter_create('d', 4, bucket => '1 day');
SELECT counter_create('p');
CREATE TABLE ledger (c text, at timestamptz, key text, delta int8);
-- The expected bucket of each add: its UTC minute or day, by date_trunc.
CREATE FUNCTION ub(c text, at timestamptz) RETURNS timestamp LANGUAGE sql IMMUTABLE
AS $$ SELECT date_trunc(CASE c WHEN 'd' THEN 'day' ELSE 'minute' END, at AT TIME ZONE 'UTC') $$;
SQL
sleep 0.5

# 6,000 adds per counter at random times from 30 minutes ago to 2 minutes ahead (a third
# of them older than m's retention), 40 keys plus three that tie, negative deltas too;
# and rolled-back adds, which must count nothing.
q <<'SQL' >/dev/null
SELECT setseed(0.7);
CREATE TEMP TABLE adds AS
SELECT c, now() - interval '30 minutes' + random() * interval '32 minutes' AS at,
       'k' || (random() * 40)::int AS key, (random() * 13)::int8 - 3 AS delta
FROM unnest(ARRAY['m', 'd', 'p']) c, generate_series(1, 6000);
INSERT INTO adds SELECT c, now() - interval '1 minute', t, 500 FROM unnest(ARRAY['m', 'd', 'p']) c, unnest(ARRAY['tie_b', 'tie_a', 'tie_c']) t;
-- a key only added long ago: m's retention removes it entirely
INSERT INTO adds VALUES ('m', now() - interval '25 minutes', 'old', 7);
INSERT INTO ledger SELECT c, at, key, delta FROM adds WHERE counter_add(c, key, delta, NULL, at);
BEGIN;
SELECT counter_add(c, 'k1', 1000, NULL, now()) FROM unnest(ARRAY['m', 'd', 'p']) c;
ROLLBACK;
SQL
pending=$(q -c "SELECT count(*) FROM counter_pending")
[ "$pending" -ge 18000 ] || fail "expected the adds pending with the worker paused, found $pending"

check() { # $1: a label; every read against the ledger
  local label=$1
  # counter_value: the retained buckets (m: the last 10 minutes, as of the statement's
  # transaction; d, p: everything)
  zero "$label: counter_value" "
    WITH l AS (SELECT c, key, sum(delta) FILTER (WHERE c <> 'm' OR ub(c, at) >= ub(c, now() - interval '10 minutes')) AS s
               FROM ledger GROUP BY c, key)
    SELECT count(*) FROM l WHERE counter_value(l.c, l.key) <> COALESCE(l.s, 0)"
  # counter_window: widths of 1, 3 and 7 buckets ending at several times
  zero "$label: counter_window" "
    WITH w AS (SELECT c, key, width, ending
               FROM (SELECT DISTINCT c, key FROM ledger WHERE c <> 'p') k,
                    unnest(ARRAY[1, 3, 7]) n,
                    LATERAL (SELECT n * CASE c WHEN 'd' THEN interval '1 day' ELSE interval '1 minute' END AS width) wd,
                    unnest(ARRAY[now(), now() - interval '4 minutes 30 seconds', now() - interval '12 minutes',
                                 now() + interval '1 minute']) ending)
    SELECT count(*) FROM w
    WHERE counter_window(w.c, w.key, w.width, w.ending) <> COALESCE((
        SELECT sum(l.delta) FROM ledger l
        WHERE l.c = w.c AND l.key = w.key
          AND ub(l.c, l.at) > ub(w.c, w.ending) - w.width AND ub(l.c, l.at) <= ub(w.c, w.ending)
          AND (w.c <> 'm' OR ub(l.c, l.at) >= ub(w.c, now() - interval '10 minutes'))), 0)"
  # counter_series: every minute of the last 15 (zeros included, the expired ones 0)
  zero "$label: counter_series" "
    WITH s AS (SELECT k.key, x.bucket_start, x.value
               FROM (SELECT DISTINCT key FROM ledger WHERE c = 'm') k,
                    counter_series('m', k.key, now() - interval '15 minutes', now() + interval '2 minutes') x)
    SELECT (SELECT count(*) FROM s
            WHERE s.value <> COALESCE((SELECT sum(l.delta) FROM ledger l
                                       WHERE l.c = 'm' AND l.key = s.key
                                         AND ub('m', l.at) = s.bucket_start AT TIME ZONE 'UTC'
                                         AND ub('m', l.at) >= ub('m', now() - interval '10 minutes')), 0))
         + (SELECT abs(count(*) - 18 * (SELECT count(DISTINCT key) FROM ledger WHERE c = 'm')) FROM s)
         + (SELECT count(*) FROM s WHERE s.bucket_start <> date_trunc('minute', s.bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
  # counter_top: the n largest (ties by key) against GROUP BY on the ledger
  for c in m d p; do
    for n in 1 5 12; do
      # (both in one statement: one time, so no bucket boundary passes between them)
      local got want
      IFS='|' read -r got want < <(q -c "SELECT
          (SELECT string_agg(key || '=' || value, ',' ORDER BY ord) FROM counter_top('$c', $n) WITH ORDINALITY t(key, value, ord)),
          (SELECT string_agg(key || '=' || s, ',' ORDER BY s DESC, key) FROM (
             SELECT key, sum(delta) AS s FROM ledger
             WHERE c = '$c' AND ('$c' <> 'm' OR ub(c, at) >= ub(c, now() - interval '10 minutes'))
             GROUP BY key ORDER BY s DESC, key LIMIT $n) x)")
      [ -n "$got" ] && [ "$got" = "$want" ] || fail "$label: counter_top('$c', $n) = $got, the ledger says $want"
    done
    [ "$c" = p ] && continue
    IFS='|' read -r got want < <(q -c "SELECT
        (SELECT string_agg(key || '=' || value, ',' ORDER BY ord) FROM counter_top('$c', 6, CASE '$c' WHEN 'd' THEN interval '2 days' ELSE interval '5 minutes' END) WITH ORDINALITY t(key, value, ord)),
        (SELECT string_agg(key || '=' || s, ',' ORDER BY s DESC, key) FROM (
           SELECT key, sum(delta) AS s FROM ledger
           WHERE c = '$c' AND ub(c, at) <= ub(c, now())
             AND ub(c, at) > ub(c, now()) - CASE '$c' WHEN 'd' THEN interval '2 days' ELSE interval '5 minutes' END
           GROUP BY key ORDER BY s DESC, key LIMIT 6) x)")
    [ -n "$got" ] && [ "$got" = "$want" ] || fail "$label: counter_top('$c', 6, width) = $got, the ledger says $want"
  done
}

# the checks below compare non-trivial sums: every kind of bucket is in the ledger
zero "ledger coverage" "SELECT 3 - count(*) FROM (VALUES
  ((SELECT count(*) FROM ledger WHERE c = 'm' AND at < now() - interval '11 minutes') > 1000),
  ((SELECT count(*) FROM ledger WHERE c = 'm' AND at > now() - interval '4 minutes') > 500),
  ((SELECT count(*) FROM ledger WHERE c = 'm' AND at > now()) > 100)) v(ok) WHERE ok"
check "pending"
say "ok: value, window, series and top exact against the ledger with all $pending adds pending"

q -c "ALTER SYSTEM SET distributed_counter.worker_enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 150); do
  [ "$(q -c "SELECT count(*) FROM counter_pending")" = 0 ] && break
  sleep 0.2
done
[ "$(q -c "SELECT count(*) FROM counter_pending")" = 0 ] || fail "the worker did not fold the pending rows"
# Retention: the worker deletes m's buckets older than the retention plus one bucket
for _ in $(seq 1 50); do
  [ "$(q -c "SELECT count(*) FROM counter_buckets b JOIN counter_registry r ON r.id = b.counter_id
             WHERE r.name = 'm' AND b.bucket < _counter_bucket(now() - interval '10 minutes 5 seconds', 60000000)")" = 0 ] && break
  sleep 0.2
done
old=$(q -c "SELECT count(*) FROM counter_buckets b JOIN counter_registry r ON r.id = b.counter_id
            WHERE r.name = 'm' AND b.bucket < _counter_bucket(now() - interval '10 minutes 5 seconds', 60000000)")
[ "$old" = 0 ] || fail "$old buckets of m older than the retention (and 5 s) are still stored"
kept=$(q -c "SELECT count(*) FROM counter_buckets b JOIN counter_registry r ON r.id = b.counter_id WHERE r.name = 'd'")
[ "$kept" -gt 0 ] || fail "d (no retention) lost its buckets"
[ "$(q -c "SELECT count(*) FROM counter_totals t JOIN counter_registry r ON r.id = t.counter_id WHERE r.name = 'm' AND t.key = 'old'")" = 0 ] \
  || fail "the key whose buckets all expired kept its total row"
zero "totals = sum of buckets" "SELECT count(*) FROM counter_totals t JOIN counter_registry r ON r.id = t.counter_id
  WHERE r.bucket_us > 0 AND t.value <> (SELECT COALESCE(sum(b.value), 0) FROM counter_buckets b WHERE b.counter_id = t.counter_id AND b.key = t.key)"
zero "registry key counts" "SELECT count(*) FROM counter_registry r WHERE r.keys <> (SELECT count(*) FROM counter_totals t WHERE t.counter_id = r.id)"
check "compacted"
say "ok: after compaction and retention (m's buckets past 10 minutes gone, 'old' gone, d kept $kept): exact again"

# UTC boundaries: a day counter's buckets start at 00:00 UTC whatever the session's
# TimeZone, across the 2026-03-08 DST change in New York and in a half-hour zone.
q <<'SQL' >/dev/null
SELECT counter_create('tz', bucket => '1 day');
SELECT counter_add('tz', 'x', 1, NULL, '2026-03-08 23:59:59.999999+00');
SELECT counter_add('tz', 'x', 10, NULL, '2026-03-09 00:00:00+00');
SELECT counter_add('tz', 'x', 100, NULL, '2026-03-09 06:59:00+00');
SELECT counter_add('tz', 'x', 1000, NULL, '2026-03-09 07:01:00+00');
SQL
for tz in UTC America/New_York Asia/Kolkata Pacific/Chatham; do
  got=$(q -c "SET TimeZone = '$tz'" -c "SELECT string_agg(to_char(bucket_start AT TIME ZONE 'UTC', 'MM-DD HH24:MI') || '=' || value, ',')
                FROM counter_series('tz', 'x', '2026-03-07 12:00+00', '2026-03-10 12:00+00')" \
              -c "SELECT counter_window('tz', 'x', '1 day', '2026-03-09 23:00+00')")
  want=$'03-07 00:00=0,03-08 00:00=1,03-09 00:00=1110,03-10 00:00=0\n1110'
  [ "$got" = "$want" ] || fail "TimeZone $tz: got $got"
done
q -c "SELECT counter_compact('tz')" >/dev/null
got=$(q -c "SET TimeZone = 'America/New_York'" -c "SELECT counter_window('tz', 'x', '2 days', '2026-03-09 01:00-05')")
[ "$got" = 1111 ] || fail "after compaction, New York: the two-day window is $got, not 1111"
say "ok: day buckets start at 00:00 UTC under UTC, America/New_York (across its DST change), Asia/Kolkata and Pacific/Chatham"
