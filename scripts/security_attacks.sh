#!/usr/bin/env bash
# Privilege attacks: each one runs (or is set up) by a role without superuser rights and
# asserts that it gains nothing. README.md, "Security", describes the rules these test.
#
# Classes (the count of each is printed at the end):
#   worker      a database owner steers the compaction worker: search_path planting,
#               settings that would stall it, renaming the extension's schema
#   fastpath    row level security and grants on counter_add's C fast path and its
#               per-backend cache (SET ROLE, SECURITY DEFINER wrappers)
#   grants      a role without grants calls every counter function
#   planting    an operator or function planted on the search_path (a copy of every
#               pg_catalog operator, polymorphic ones instantiated) reaches no function
#               or trigger of the extension, whoever calls it
#   layout      owner-side table changes (rules, identity columns) the fast path must
#               honour as the SQL path's INSERT does
#   ratelimit   rate_limit() without a grant; one database's keys reached from another
#   windows     another tenant's bucketed counter through counter_window, counter_series
#               and counter_top, and counter_buckets read directly, under the documented
#               row level security
#   buffered    a buffered counter's unflushed adds (shared memory) read, added or
#               flushed past grants and counter_pending's row level security
#
# Runs against its own preloaded cluster (port 5530) whose worker serves database
# 'attackdb', owned by the unprivileged role mallory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pg.sh   # PG_MAJOR=15|18
PORT=5530
CLUSTER=dc_attack
pg_cluster_up "$CLUSTER" "$PORT" "distributed_counter.database = 'attackdb'" \
  "distributed_counter.compact_interval = 100"
trap 'pg_cluster_stop $CLUSTER' EXIT

CLEAN_SESSION="-c client_min_messages=warning -c role=none -c search_path=public -c enable_tidscan=on -c enable_indexscan=on -c statement_timeout=0 -c lock_timeout=0 -c default_transaction_read_only=off -c default_transaction_isolation=read\\ committed -c plpgsql.extra_errors=none"
declare -A count=()
failures=0
pass() { count[$1]=$((${count[$1]:-0} + 1)); printf '  ok   [%s] %s\n' "$1" "$2"; }
fail() { count[$1]=$((${count[$1]:-0} + 1)); failures=$((failures + 1)); printf '  FAIL [%s] %s\n' "$1" "$2"; }

# q [-U role] [-d db] SQL...: run as a role (superuser postgres by default), print rows.
q() {
  local user=postgres db=attackdb
  while [ $# -gt 0 ]; do
    case $1 in -U) user=$2; shift 2 ;; -d) db=$2; shift 2 ;; *) break ;; esac
  done
  # The test's own sessions ignore the database-level settings the attacks install.
  runuser -u postgres -- env PGOPTIONS="$CLEAN_SESSION" \
    psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$user" -d "$db" "$@"
}
# sqlstate [-U role] SQL: the SQLSTATE the statement fails with, or OK.
sqlstate() {
  local out
  if out=$(q "$@" -v VERBOSITY=sqlstate 2>&1); then echo OK; else
    grep -o 'ERROR:  [0-9A-Z]\{5\}' <<<"$out" | head -1 | cut -c9-
  fi
}
expect_state() { # class description expected-state [-U role] SQL
  local class=$1 what=$2 want=$3; shift 3
  local got; got=$(sqlstate "$@")
  if [ "$got" = "$want" ]; then pass "$class" "$what ($got)"; else fail "$class" "$what: expected $want, got $got"; fi
}
is_superuser() { q -d postgres -c "SELECT rolsuper FROM pg_roles WHERE rolname = '$1'"; }
wait_for() { # seconds SQL expected: poll until the query returns the value
  local deadline=$((SECONDS + $1)) got
  while :; do
    got=$(q -c "$2" 2>/dev/null || true)
    [ "$got" = "$3" ] && return 0
    [ $SECONDS -ge $deadline ] && { echo "    (waited $1 s for '$2' = '$3', last '$got')"; return 1; }
    sleep 0.2
  done
}
restart() { pg_cluster_ctl "$CLUSTER" restart -m fast; }

echo "security: PostgreSQL $PG_MAJOR, setting up cluster $CLUSTER, database attackdb owned by mallory"
q -d postgres -c "DROP DATABASE IF EXISTS attackdb WITH (FORCE)"
for r in mallory alice bob nogrants app; do
  q -d postgres -c "DROP ROLE IF EXISTS $r" 2>/dev/null || true
done
q -d postgres -c "CREATE ROLE mallory LOGIN CREATEROLE" -c "CREATE ROLE alice LOGIN" \
  -c "CREATE ROLE bob LOGIN" -c "CREATE ROLE nogrants LOGIN" \
  -c "CREATE DATABASE attackdb OWNER mallory"
# The default install: the extension in public, which the database owner owns (since
# PostgreSQL 15, through pg_database_owner) and may therefore rename.
q -c "CREATE EXTENSION distributed_counter"
restart
wait_for 30 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'" 1

# A marker that every planted object calls: a non-transactional hit count, and an
# attempt at the escalation itself (it succeeds only when run by a superuser).
q -U mallory -c "CREATE SCHEMA evil" -c "CREATE SEQUENCE evil.attack_hits" \
  -c "GRANT USAGE, UPDATE, SELECT ON SEQUENCE evil.attack_hits TO PUBLIC" -c "
  CREATE FUNCTION evil.hit() RETURNS void LANGUAGE plpgsql SECURITY INVOKER
  SET search_path = pg_catalog AS \$\$
  BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
      EXECUTE 'ALTER ROLE mallory SUPERUSER';
    END IF;
    PERFORM pg_catalog.nextval('evil.attack_hits');
  END \$\$" -c "GRANT USAGE ON SCHEMA evil TO PUBLIC" -c "GRANT EXECUTE ON FUNCTION evil.hit() TO PUBLIC"
hits() { q -c "SELECT last_value - 1 + is_called::int FROM evil.attack_hits"; }

# Plant a copy of every pg_catalog operator (exact types, so it beats pg_catalog's
# polymorphic ones and, earlier on the search_path, its exact ones), polymorphic
# arguments instantiated with common types, plus the functions the SQL calls by name.
plant_everything() {
  q -U mallory -v ON_ERROR_STOP=1 <<'SQL'
DO $plant$
DECLARE
  o record; l text; r text; res text; n int := 0; fname text;
  concrete text[] := ARRAY['int2','int4','int8','numeric','text','bool','oid','timestamptz',
                           'interval','json','jsonb','bytea','name','regtype','regclass'];
  lefts text[]; rights text[];
BEGIN
  FOR o IN SELECT op.oprname, op.oprleft, op.oprright, op.oprresult
             FROM pg_catalog.pg_operator op
            WHERE op.oprnamespace = 'pg_catalog'::regnamespace LOOP
    IF (SELECT typtype FROM pg_type WHERE oid = o.oprresult) = 'p' THEN CONTINUE; END IF;
    res := o.oprresult::regtype::text;
    lefts := CASE WHEN o.oprleft = 0 THEN ARRAY[NULL]
                  WHEN (SELECT typtype FROM pg_type WHERE oid = o.oprleft) = 'p' THEN concrete
                  ELSE ARRAY[o.oprleft::regtype::text] END;
    rights := CASE WHEN (SELECT typtype FROM pg_type WHERE oid = o.oprright) = 'p' THEN concrete
                   ELSE ARRAY[o.oprright::regtype::text] END;
    FOREACH l IN ARRAY lefts LOOP
      FOREACH r IN ARRAY rights LOOP
        n := n + 1;
        fname := 'evil.op_' || n;
        EXECUTE format('CREATE FUNCTION %s(%s) RETURNS %s LANGUAGE plpgsql AS %L',
          fname, concat_ws(', ', l, r), res,
          'BEGIN PERFORM evil.hit(); RETURN NULL; END');
        BEGIN
          EXECUTE format('CREATE OPERATOR evil.%s (%s RIGHTARG = %s, FUNCTION = %s)',
            o.oprname, CASE WHEN l IS NULL THEN '' ELSE format('LEFTARG = %s,', l) END, r, fname);
        EXCEPTION WHEN duplicate_function THEN NULL;  -- two pg_catalog ops, one instance
        END;
      END LOOP;
    END LOOP;
  END LOOP;
  RAISE NOTICE 'planted % operators', n;
END
$plant$;
-- Functions the extension's SQL calls by name, with the exact argument types.
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
CREATE FUNCTION evil.pg_backend_pid() RETURNS int4 LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN 0; END';
CREATE FUNCTION evil.pg_trigger_depth() RETURNS int4 LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN 0; END';
CREATE FUNCTION evil.octet_length(text) RETURNS int4 LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN 0; END';
CREATE FUNCTION evil.quote_literal(text) RETURNS text LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN $1; END';
CREATE FUNCTION evil.current_setting(text, bool) RETURNS text LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
CREATE FUNCTION evil.set_config(text, text, bool) RETURNS text LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
CREATE FUNCTION evil.format(text, VARIADIC "any") RETURNS text LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
CREATE FUNCTION evil.array_position(text[], text) RETURNS int4 LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
CREATE FUNCTION evil.to_regnamespace(text) RETURNS regnamespace LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
CREATE FUNCTION evil.json_each_text(json) RETURNS SETOF record LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); END';
CREATE FUNCTION evil.coalesce(text, text) RETURNS text LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
GRANT USAGE ON SCHEMA evil TO PUBLIC;
SQL
}

# ---- planting: every function and trigger, called by a superuser whose search_path
# puts the planted schema first (what ALTER DATABASE/ROLE ... SET search_path does).
echo "security: planting a copy of every pg_catalog operator in schema evil"
plant_everything 2>&1 | grep -o 'planted [0-9]* operators' || true
EVIL_PATH="SET search_path = evil, pg_catalog, public"
before=$(hits)
run_planted() { # description expected-state SQL...: as superuser under the planted path
  local what=$1 want=$2; shift 2
  local h0 h1 got; h0=$(hits)
  got=$(sqlstate -c "SET statement_timeout = '20s'" -c "$EVIL_PATH" "$@")
  h1=$(hits)
  if [ "$h1" != "$h0" ]; then fail planting "$what called $((h1 - h0)) planted objects"
  elif [ "$got" != "$want" ]; then fail planting "$what: expected $want, got $got"
  else pass planting "$what reached no planted object ($got)"; fi
}
run_planted "counter_create" OK -c "SELECT counter_create('planted', 4)"
run_planted "counter_add fast path" OK -c "SELECT counter_add('planted', 'k', 5)"
run_planted "counter_add SQL path (request_id)" OK -c "SELECT counter_add('planted', 'k', 5, 'r1')"
run_planted "counter_add SQL path (bad key)" 22004 -c "SELECT counter_add('planted', NULL, 5)"
run_planted "counter_add unknown counter" 42704 -c "SELECT counter_add('nope', 'k', 5)"
run_planted "counter_value" OK -c "SELECT counter_value('planted', 'k')"
run_planted "counter_values" OK -c "SELECT * FROM counter_values('planted', ARRAY['k','x'])"
run_planted "counter_set" OK -c "SELECT counter_set('planted', 'k', 100)"
run_planted "counter_compact_batch" OK -c "SELECT counter_compact_batch('planted', 10)"
run_planted "counter_compact" OK -c "SELECT counter_compact()"
run_planted "counter_purge_requests" OK -c "SELECT counter_purge_requests(10)"
run_planted "counter_stats" OK -c "SELECT * FROM counter_stats"
run_planted "counter_top, plain" OK -c "SELECT * FROM counter_top('planted', 3)"
run_planted "counter_drop" OK -c "SELECT counter_drop('planted')"
run_planted "counter_create with a bucket" OK -c "SELECT counter_create('planted_b', 4, '1 minute', '1 hour')"
# (times as literals: the test's own now() and - would be the planted ones)
run_planted "counter_add, bucketed (fast path)" OK -c "SELECT counter_add('planted_b', 'k', 5, NULL, '2026-01-01 00:00+00')"
run_planted "counter_add, bucketed, default time (fast path)" OK -c "SELECT counter_add('planted_b', 'k', 5)"
run_planted "counter_add, bucketed (SQL path)" OK -c "SELECT counter_add('planted_b', 'k', 5, 'r1', '2026-01-01 00:00+00')"
run_planted "counter_value, bucketed" OK -c "SELECT counter_value('planted_b', 'k')"
run_planted "counter_values, bucketed" OK -c "SELECT * FROM counter_values('planted_b', ARRAY['k'])"
run_planted "counter_window" OK -c "SELECT counter_window('planted_b', 'k', '5 minutes')"
run_planted "counter_series" OK -c "SELECT * FROM counter_series('planted_b', 'k', '2025-12-31 23:00+00', '2026-01-01 01:00+00')"
run_planted "counter_top" OK -c "SELECT * FROM counter_top('planted_b')" -c "SELECT * FROM counter_top('planted_b', 3, '10 minutes')"
run_planted "counter_compact with buckets and retention" OK -c "SELECT counter_compact()"
run_planted "counter_set, bucketed (refused)" 0A000 -c "SELECT counter_set('planted_b', 'k', 1)"
run_planted "counter_drop, bucketed" OK -c "SELECT counter_drop('planted_b')"
run_planted "gcounter_entries/pncounter_entries" OK \
  -c "SELECT * FROM gcounter_entries('{\"a\":1}'::gcounter)" \
  -c "SELECT * FROM pncounter_entries('{\"p\":{\"a\":1},\"n\":{\"b\":2}}'::pncounter)"
q -c "CREATE TABLE public.crdt_t (id int PRIMARY KEY, c gcounter, p pncounter)" \
  -c "CREATE TRIGGER m BEFORE UPDATE ON public.crdt_t FOR EACH ROW EXECUTE FUNCTION crdt_merge_trigger()" \
  -c "CREATE TRIGGER i BEFORE INSERT ON public.crdt_t FOR EACH ROW EXECUTE FUNCTION crdt_insert_merge_trigger()"
run_planted "crdt_insert_merge_trigger / crdt_merge_trigger" OK \
  -c "INSERT INTO public.crdt_t VALUES (1, '{\"a\":1}', '{\"p\":{\"a\":1},\"n\":{}}')" \
  -c "INSERT INTO public.crdt_t VALUES (1, '{\"a\":3}', '{\"p\":{\"a\":2},\"n\":{}}')" \
  -c "UPDATE public.crdt_t SET c = '{\"b\":1}'"
got=$(q -c "SELECT c::text FROM public.crdt_t WHERE id = 1")
[ "$got" = '{"a":3,"b":1}' ] && pass planting "CRDT triggers still merge ($got)" || fail planting "CRDT triggers gave $got"
[ "$(hits)" = "$before" ] || fail planting "planted objects were called $(( $(hits) - before )) times in all"

# The reported trigger attack with the default search_path: an exact-type
# public.||(text, int4) planted by a role with CREATE on public.
q -c "GRANT CREATE ON SCHEMA public TO alice"
q -U alice -c "CREATE FUNCTION public.cat(text, int4) RETURNS text LANGUAGE plpgsql AS
  'BEGIN PERFORM evil.hit(); RETURN NULL; END'" -c "CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = int4, FUNCTION = public.cat)"
h0=$(hits)
q -c "INSERT INTO public.crdt_t VALUES (2, '{\"a\":1}', NULL)" >/dev/null 2>&1 || true
[ "$(hits)" = "$h0" ] && [ "$(is_superuser mallory)" = f ] \
  && pass planting "public.||(text,int4) not called by crdt_insert_merge_trigger under the default search_path" \
  || fail planting "public.||(text,int4) was called by crdt_insert_merge_trigger"
q -U alice -c "DROP OPERATOR public.|| (text, int4)" -c "DROP FUNCTION public.cat(text, int4)"
q -c "REVOKE CREATE ON SCHEMA public FROM alice"

# ---- worker: a database owner's settings must not steer the superuser worker.
echo "security: the worker under the database owner's settings"
# (the DO block loads PL/pgSQL, so that its settings are known and user-settable)
q -U mallory -c "DO \$\$ BEGIN END \$\$" -c "ALTER DATABASE attackdb SET search_path = evil, pg_catalog, public" \
  -c "ALTER DATABASE attackdb SET statement_timeout = '1ms'" \
  -c "ALTER DATABASE attackdb SET lock_timeout = '1ms'" \
  -c "ALTER DATABASE attackdb SET default_transaction_read_only = on" \
  -c "ALTER DATABASE attackdb SET default_transaction_isolation = 'serializable'" \
  -c "ALTER DATABASE attackdb SET plpgsql.extra_errors = 'all'" \
  -c "ALTER DATABASE attackdb SET role = mallory" \
  -c "ALTER DATABASE attackdb SET enable_tidscan = off" -c "ALTER DATABASE attackdb SET enable_indexscan = off" \
  -c "ALTER DATABASE attackdb SET vacuum_cost_delay = 100"
LOG=$(pg_cluster_log "$CLUSTER")
log_mark=$(stat -c %s "$LOG")
restart
wait_for 30 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'" 1
h0=$(hits)
q -c "SELECT counter_create('w', 4)" -c "SELECT counter_add('w', 'k' || g % 7, 1) FROM generate_series(1, 2000) g" >/dev/null
if wait_for 30 "SELECT count(*) FROM counter_pending" 0; then
  pass worker "worker compacts under search_path/role/timeouts/read-only/serializable/extra_errors set by the database owner"
else fail worker "worker stalled by database-level settings"; fi
got=$(q -c "SELECT sum(value) FROM counter_totals t JOIN counter_registry r ON r.id = t.counter_id WHERE r.name = 'w'")
[ "$got" = 2000 ] && pass worker "compaction exact under those settings ($got)" || fail worker "compaction gave $got, expected 2000"
[ "$(hits)" = "$h0" ] && [ "$(is_superuser mallory)" = f ] \
  && pass worker "no planted operator or function ran in the worker" \
  || fail worker "the worker ran planted objects ($(( $(hits) - h0 )) hits, mallory superuser: $(is_superuser mallory))"
if tail -c +"$((log_mark + 1))" "$LOG" | grep "ignoring database and role settings" | grep -q "enable_tidscan"; then
  pass worker "the worker reverts planner and vacuum settings a database owner set"
else fail worker "the worker kept the database owner's planner settings"; fi
q -U mallory -c "ALTER DATABASE attackdb RESET ALL"
restart
wait_for 30 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'" 1

# Renaming the extension's schema: the database owner owns public (PostgreSQL 15+),
# renames it and puts a schema of its own, with look-alike objects, under the old name.
echo "security: renaming the extension's schema under the worker"
wait_for 30 "SELECT count(*) FROM counter_pending" 0 || true
# (before the rename: the worker may act, and log its WARNING, as soon as it commits)
log_mark=$(stat -c %s "$LOG")
h0=$(hits)
q -U mallory -v ON_ERROR_STOP=1 2>&1 <<'SQL' | grep -v NOTICE || true
BEGIN;
ALTER SCHEMA public RENAME TO public_moved;
CREATE SCHEMA public;
CREATE TABLE public.counter_pending (counter_id int4, shard int2, key text, delta int8, added_at timestamptz);
CREATE TABLE public.counter_registry (id int4, name text, shards int4, last_compaction timestamptz, compactions int8, rows_compacted int8);
CREATE TABLE public.counter_totals (counter_id int4, key text, value numeric);
CREATE FUNCTION public._counter_compaction_lock(bool) RETURNS bool LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN true; END';
CREATE FUNCTION public._counter_missing(text) RETURNS void LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); END';
CREATE FUNCTION public._counter_retention() RETURNS interval LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN ''1 day''; END';
CREATE FUNCTION public.trap() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN PERFORM evil.hit(); RETURN NULL; END';
CREATE TRIGGER trap BEFORE INSERT OR UPDATE OR DELETE ON public.counter_pending FOR EACH STATEMENT EXECUTE FUNCTION public.trap();
CREATE TRIGGER trap BEFORE INSERT OR UPDATE OR DELETE ON public.counter_registry FOR EACH STATEMENT EXECUTE FUNCTION public.trap();
CREATE TRIGGER trap BEFORE INSERT OR UPDATE OR DELETE ON public.counter_totals FOR EACH STATEMENT EXECUTE FUNCTION public.trap();
COMMIT;
SQL
q -c "SELECT public_moved.counter_add('w', 'r', 1)" >/dev/null  # work for the worker
sleep 3
got=$(q -c "SELECT count(*) FROM public_moved.counter_pending")
alive=$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'")
[ "$got" = 1 ] && [ "$alive" = 1 ] && pass worker "the worker pauses, alive, while the schema is renamed" \
  || fail worker "while renamed: $got pending rows, $alive workers"
[ "$(hits)" = "$h0" ] && [ "$(is_superuser mallory)" = f ] \
  && pass worker "renamed extension schema: the worker reached none of the look-alike objects" \
  || fail worker "renamed extension schema: the worker ran look-alike objects ($(( $(hits) - h0 )) hits, mallory superuser: $(is_superuser mallory))"
if tail -c +"$((log_mark + 1))" "$LOG" | grep -q "schema of extension distributed_counter was renamed"; then
  pass worker "the worker logs that the extension schema was renamed"
else fail worker "no WARNING about the renamed schema in the server log"; fi
# Undo: the worker resumes.
q -U mallory -c "SET client_min_messages = warning" -c "DROP SCHEMA public CASCADE" \
  -c "ALTER SCHEMA public_moved RENAME TO public" >/dev/null
if wait_for 30 "SELECT count(*) FROM counter_pending" 0; then
  pass worker "the worker resumes once the schema has its name back"
else fail worker "the worker did not resume after the schema got its name back"; fi

# An ERROR inside compaction is logged and rolled back; the worker lives on.
wpid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'")
log_mark=$(stat -c %s "$LOG")
q -c "ALTER TABLE counter_totals ADD CONSTRAINT attack_small CHECK (value < 1000000)" \
  -c "SELECT counter_add('w', 'big', 2000000)" >/dev/null
sleep 2
got=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'")
if [ "$got" = "$wpid" ] && tail -c +"$((log_mark + 1))" "$LOG" | grep -q "compaction failed.*attack_small"; then
  pass worker "an ERROR inside compaction is logged; the worker keeps running (pid $got)"
else fail worker "after an ERROR inside compaction the worker is pid '$got' (was $wpid)"; fi
q -c "ALTER TABLE counter_totals DROP CONSTRAINT attack_small"
wait_for 30 "SELECT count(*) FROM counter_pending" 0 || fail worker "no compaction after the constraint was dropped"

# ---- fastpath: row level security on the registry, tenants by name prefix.
echo "security: row level security and grants on counter_add's fast path and cache"
q -c "SELECT counter_create('alice_likes')" -c "SELECT counter_create('bob_likes')" >/dev/null
q -c "GRANT SELECT ON counter_registry, counter_totals, counter_pending TO alice, bob" \
  -c "GRANT INSERT ON counter_pending TO alice, bob" \
  -c "ALTER TABLE counter_registry ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY tenant ON counter_registry USING (name LIKE current_user || '\_%')"
expect_state fastpath "alice adds to her own counter" OK -U alice -c "SELECT counter_add('alice_likes', 'k', 1)"
expect_state fastpath "alice adds to bob's counter (fast path)" 42704 -U alice -c "SELECT counter_add('bob_likes', 'k', 1000000)"
expect_state fastpath "alice adds to bob's counter (request_id path)" 42704 -U alice -c "SELECT counter_add('bob_likes', 'k', 1000000, 'x')"
# The cache, filled by a role that sees bob's counter, then SET ROLE alice.
expect_state fastpath "cached by bob, then SET ROLE alice" 42704 \
  -c "SET ROLE bob" -c "SELECT counter_add('bob_likes', 'k', 1)" -c "RESET ROLE" \
  -c "SET ROLE alice" -c "SELECT counter_add('bob_likes', 'k', 1000000)"
expect_state fastpath "cached by the table owner, then SET ROLE alice" 42704 \
  -c "SELECT counter_add('bob_likes', 'k', 1)" -c "SET ROLE alice" -c "SELECT counter_add('bob_likes', 'k', 1000000)"
# A SECURITY DEFINER wrapper of bob's fills the cache in alice's backend.
q -c "GRANT CREATE ON SCHEMA public TO bob"
q -U bob -c "CREATE FUNCTION public.bob_like(k text) RETURNS bool LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog, public AS \$\$ SELECT public.counter_add('bob_likes', k, 1) \$\$"
q -c "REVOKE CREATE ON SCHEMA public FROM bob"
expect_state fastpath "bob's SECURITY DEFINER wrapper, then alice directly" 42704 \
  -U alice -c "SELECT public.bob_like('k')" -c "SELECT counter_add('bob_likes', 'k', 1000000)"
got=$(q -c "SELECT counter_value('bob_likes', 'k')")
[ "$got" -lt 1000000 ] && pass fastpath "bob's counter holds none of alice's adds ($got)" || fail fastpath "bob's counter is $got"
# The documented tenant setup: policies on the row tables as well, so a tenant's own
# grants (INSERT on counter_pending, SELECT on the totals) reach only its counters.
q -c "ALTER TABLE counter_pending ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY tenant ON counter_pending USING (counter_id IN (SELECT id FROM counter_registry))" \
  -c "ALTER TABLE counter_totals ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY tenant ON counter_totals USING (counter_id IN (SELECT id FROM counter_registry))" \
  -c "SELECT counter_compact()" >/dev/null
bob_id=$(q -c "SELECT id FROM counter_registry WHERE name = 'bob_likes'")
expect_state fastpath "alice inserts a delta for bob's counter into counter_pending directly" 42501 \
  -U alice -c "INSERT INTO counter_pending VALUES ($bob_id, 0, 'k', 1000000, now())"
got=$(q -U alice -c "SELECT count(*) FROM counter_totals t WHERE t.counter_id = $bob_id")
[ "$got" = 0 ] && pass fastpath "alice reads none of bob's totals directly" || fail fastpath "alice sees $got of bob's total rows"
expect_state fastpath "alice adds to her counter with policies on every table" OK -U alice -c "SELECT counter_add('alice_likes', 'k', 1)"
expect_state fastpath "alice adds to bob's counter with policies on every table" 42704 -U alice -c "SELECT counter_add('bob_likes', 'k', 1)"
# Bucketed counters: windows, series and leaderboards of another tenant's counter are
# unknown to alice, and counter_buckets' own policy hides its rows.
q -c "SELECT counter_create('alice_views', bucket => '1 minute'), counter_create('bob_views', bucket => '1 minute')" \
  -c "SELECT counter_add('bob_views', 'secret', 7), counter_add('alice_views', 'mine', 3)" -c "SELECT counter_compact()" \
  -c "GRANT SELECT ON counter_buckets TO alice, bob" \
  -c "ALTER TABLE counter_buckets ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY tenant ON counter_buckets USING (counter_id IN (SELECT id FROM counter_registry))" >/dev/null
expect_state windows "alice reads bob's window" 42704 -U alice -c "SELECT counter_window('bob_views', 'secret', '1 hour')"
expect_state windows "alice reads bob's series" 42704 -U alice -c "SELECT * FROM counter_series('bob_views', 'secret', now() - interval '1 hour', now())"
expect_state windows "alice reads bob's leaderboard" 42704 -U alice -c "SELECT * FROM counter_top('bob_views')"
expect_state windows "alice reads bob's windowed leaderboard" 42704 -U alice -c "SELECT * FROM counter_top('bob_views', 10, '1 hour')"
expect_state windows "alice adds to bob's bucketed counter, cached by bob first" 42704 \
  -c "SET ROLE bob" -c "SELECT counter_add('bob_views', 'k', 1)" -c "RESET ROLE" \
  -c "SET ROLE alice" -c "SELECT counter_add('bob_views', 'k', 1000000)"
got=$(q -U alice -c "SELECT counter_window('alice_views', 'mine', '1 hour') || '/' || (SELECT string_agg(key, ',') FROM counter_top('alice_views'))")
[ "$got" = "3/mine" ] && pass windows "alice reads her own window and leaderboard" || fail windows "alice's own window/leaderboard: $got"
got=$(q -U alice -c "SELECT count(*) FROM counter_buckets b WHERE b.key = 'secret'")
[ "$got" = 0 ] && pass windows "alice reads none of bob's buckets directly" || fail windows "alice sees $got of bob's bucket rows"
q -c "DROP POLICY tenant ON counter_buckets" -c "ALTER TABLE counter_buckets DISABLE ROW LEVEL SECURITY" \
  -c "REVOKE SELECT ON counter_buckets FROM alice, bob" >/dev/null
q -c "DROP POLICY tenant ON counter_pending" -c "DROP POLICY tenant ON counter_totals" \
  -c "ALTER TABLE counter_pending DISABLE ROW LEVEL SECURITY" -c "ALTER TABLE counter_totals DISABLE ROW LEVEL SECURITY"
# RLS on counter_pending itself (a WITH CHECK policy on keys).
q -c "ALTER TABLE counter_pending ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY keys_ins ON counter_pending FOR INSERT WITH CHECK (key NOT LIKE 'forbidden%')" \
  -c "CREATE POLICY keys_sel ON counter_pending FOR SELECT USING (true)"
expect_state fastpath "a key counter_pending's policy refuses (fast path)" 42501 -U alice -c "SELECT counter_add('alice_likes', 'forbidden_k', 1)"
expect_state fastpath "a key counter_pending's policy allows" OK -U alice -c "SELECT counter_add('alice_likes', 'fine', 1)"
q -c "DROP POLICY keys_ins ON counter_pending" -c "DROP POLICY keys_sel ON counter_pending" \
  -c "ALTER TABLE counter_pending DISABLE ROW LEVEL SECURITY"
# Revoked grants take effect at once, cache or not.
expect_state fastpath "alice after REVOKE INSERT, same backend, counter cached" 42501 \
  -c "SET ROLE alice" -c "SELECT counter_add('alice_likes', 'k', 1)" -c "RESET ROLE" \
  -c "REVOKE INSERT ON counter_pending FROM alice" -c "SET ROLE alice" -c "SELECT counter_add('alice_likes', 'k', 1)"
q -c "GRANT INSERT ON counter_pending TO alice"
# (a view keeps the resolved function: the parser's USAGE check does not run again)
expect_state fastpath "alice after REVOKE USAGE on the schema, through a view made before" 42501 \
  -c "SET ROLE alice" -c "CREATE TEMP VIEW add_k AS SELECT public.counter_add('alice_likes', 'k', 1)" \
  -c "SELECT * FROM add_k" -c "RESET ROLE" \
  -c "REVOKE USAGE ON SCHEMA public FROM PUBLIC" -c "SET ROLE alice" -c "SELECT * FROM add_k"
q -c "GRANT USAGE ON SCHEMA public TO PUBLIC"
q -U alice -c "CREATE TABLE alice_own (id int)" 2>/dev/null || q -c "CREATE TABLE public.alice_own (id int)" -c "ALTER TABLE public.alice_own OWNER TO alice"
expect_state fastpath "_counter_registry_changed() on another table" 39P01 -U alice \
  -c "CREATE TRIGGER t BEFORE DELETE ON public.alice_own FOR EACH STATEMENT EXECUTE FUNCTION _counter_registry_changed()" \
  -c "DELETE FROM public.alice_own"
# counter_stats shows a tenant only what it may see.
q -c "GRANT SELECT ON counter_stats TO alice"
got=$(q -U alice -c "SELECT string_agg(name, ',' ORDER BY name) FROM counter_stats")
[ "$got" = alice_likes,alice_views ] && pass fastpath "counter_stats under RLS shows alice only her counters ($got)" \
  || fail fastpath "counter_stats showed alice: $got"
q -c "DROP POLICY tenant ON counter_registry" -c "ALTER TABLE counter_registry DISABLE ROW LEVEL SECURITY"

# ---- grants: a role with no grants on the extension's tables.
echo "security: a role without grants calls every counter function"
q -c "GRANT SELECT ON counter_stats TO nogrants"
for call in "SELECT counter_create('ng_c')" "SELECT counter_add('alice_likes', 'k')" \
    "SELECT counter_add('alice_likes', 'k', 1, 'req')" "SELECT counter_value('alice_likes', 'k')" \
    "SELECT * FROM counter_values('alice_likes', ARRAY['k'])" "SELECT counter_compact()" \
    "SELECT counter_compact('alice_likes')" "SELECT counter_compact_batch(NULL, 10)" \
    "SELECT counter_set('alice_likes', 'k', 0)" "SELECT counter_drop('alice_likes')" \
    "SELECT counter_purge_requests(10)" "SELECT * FROM counter_stats" \
    "SELECT _counter_compaction_lock(true)" "SELECT _counter_add_sql('alice_likes', 'k', 1, NULL, NULL)"; do
  expect_state grants "$call" 42501 -U nogrants -c "$call"
done

# The CRDT default node is the server's to set: a session crediting its increments to
# another node's entry would make the per-node merge lose increments.
expect_state grants "an unprivileged role sets distributed_counter.node_id" 55P02 -U nogrants \
  -c "SET distributed_counter.node_id = 'another-node'"
expect_state grants "set_config('distributed_counter.node_id', ...)" 55P02 -U nogrants \
  -c "SELECT set_config('distributed_counter.node_id', 'another-node', false)"

# The grants README.md documents for adding and reading are enough, and no more is needed.
q -c "CREATE ROLE app LOGIN" -c "GRANT SELECT ON counter_registry TO app" \
  -c "GRANT INSERT ON counter_pending TO app" -c "GRANT SELECT, INSERT, UPDATE ON counter_requests TO app" \
  -c "GRANT SELECT ON counter_registry, counter_totals, counter_pending, counter_stats TO app"
expect_state grants "documented grants: counter_add" OK -U app -c "SELECT counter_add('alice_likes', 'app', 2)"
expect_state grants "documented grants: counter_add with request_id" OK -U app -c "SELECT counter_add('alice_likes', 'app', 3, 'app-1')"
expect_state grants "documented grants: counter_value/values/stats" OK -U app \
  -c "SELECT counter_value('alice_likes', 'app')" -c "SELECT * FROM counter_values('alice_likes', ARRAY['app'])" \
  -c "SELECT * FROM counter_stats"
expect_state grants "documented grants: no counter_drop" 42501 -U app -c "SELECT counter_drop('alice_likes')"

# ---- layout: changes only the tables' owner can make, honoured by the fast path.
echo "security: table changes the fast path must honour"
q -c "CREATE TABLE public.pending_audit (key text)" \
  -c "CREATE RULE audit AS ON INSERT TO counter_pending DO ALSO INSERT INTO public.pending_audit VALUES (NEW.key)"
q -c "SELECT counter_add('alice_likes', 'ruled', 1)" >/dev/null
got=$(q -c "SELECT count(*) FROM public.pending_audit WHERE key = 'ruled'")
[ "$got" = 1 ] && pass layout "a rule on counter_pending fires for counter_add" || fail layout "the rule fired $got times"
q -c "DROP RULE audit ON counter_pending"
q -c "ALTER TABLE counter_pending ALTER COLUMN shard ADD GENERATED ALWAYS AS IDENTITY"
expect_state layout "GENERATED ALWAYS identity column: counter_add behaves as the INSERT" 428C9 -c "SELECT counter_add('alice_likes', 'k', 1)"
q -c "ALTER TABLE counter_pending ALTER COLUMN shard DROP IDENTITY"

# ---- planting before CREATE EXTENSION: the install script runs as a superuser with
# search_path = the target schema, which the database owner owns (public).
echo "security: functions planted in public before CREATE EXTENSION"
q -d postgres -c "DROP DATABASE IF EXISTS attack_install WITH (FORCE)" -c "CREATE DATABASE attack_install OWNER mallory"
q -U mallory -d attack_install -c "CREATE SEQUENCE public.install_hits" -c "
  CREATE FUNCTION public.install_hit() RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS \$\$
  BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
      EXECUTE 'ALTER ROLE mallory SUPERUSER';
    END IF;
    PERFORM pg_catalog.nextval('public.install_hits');
  END \$\$" -c "
  CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS
    'BEGIN PERFORM public.install_hit(); RETURN QUERY SELECT pg_catalog.unnest(\$1); END'" -c "
  CREATE FUNCTION public.format_type(oid, int4) RETURNS text LANGUAGE plpgsql AS
    'BEGIN PERFORM public.install_hit(); RETURN pg_catalog.format_type(\$1, \$2); END'" -c "
  CREATE FUNCTION public.to_regprocedure(text) RETURNS regprocedure LANGUAGE plpgsql AS
    'BEGIN PERFORM public.install_hit(); RETURN pg_catalog.to_regprocedure(\$1); END'"
q -d attack_install -c "CREATE EXTENSION distributed_counter" -c "SELECT typed_aggregates('int2[]')" >/dev/null
got=$(q -d attack_install -c "SELECT last_value - 1 + is_called::int FROM public.install_hits")
[ "$got" = 0 ] && [ "$(is_superuser mallory)" = f ] \
  && pass planting "unnest(text[]), format_type and to_regprocedure planted in public: CREATE EXTENSION and typed_aggregates() call none of them" \
  || fail planting "planted functions ran $got times during CREATE EXTENSION / typed_aggregates() (mallory superuser: $(is_superuser mallory))"
q -d postgres -c "DROP DATABASE attack_install WITH (FORCE)"

# ---- ratelimit: rate_limit() buckets are one namespace per database, shared by every
# role that may call it (a caller could spend another's quota, or fill the table): no
# role may call it until granted, and a database's keys are not another's.
echo "security: rate_limit() grants and namespaces"
expect_state ratelimit "a role without a grant calls rate_limit()" 42501 -U nogrants \
  -c "SELECT * FROM rate_limit('api:alice', 10, '1 minute')"
expect_state ratelimit "the database owner (not a superuser) calls rate_limit() ungranted" 42501 -U mallory \
  -c "SELECT * FROM rate_limit('api:alice', 10, '1 minute')"
q -d postgres -c "DROP DATABASE IF EXISTS attack_rl WITH (FORCE)" -c "CREATE DATABASE attack_rl"
for db in attackdb attack_rl; do
  q -d "$db" -c "CREATE EXTENSION IF NOT EXISTS distributed_counter" \
    -c "GRANT EXECUTE ON FUNCTION rate_limit(text, int8, interval, int8, int8) TO app" >/dev/null
done
expect_state ratelimit "granted, app drains key 'quota' in database attack_rl" OK -U app -d attack_rl \
  -c "SELECT count(*) FROM generate_series(1, 5) g, LATERAL rate_limit('quota', 3 + 0 * g, '1 hour') r"
got=$(q -U app -c "SELECT allowed || '/' || remaining FROM rate_limit('quota', 3, '1 hour')")
[ "$got" = "true/2" ] && pass ratelimit "the same key in attackdb is untouched ($got)" \
  || fail ratelimit "draining 'quota' in attack_rl reached attackdb's bucket: $got"
q -d postgres -c "DROP DATABASE attack_rl WITH (FORCE)"

# ---- buffered: the adds of a buffered counter wait in shared memory, where neither
# grants nor row level security exist; every way in and out checks them itself.
echo "security: buffered counters' shared buffer: grants and row level security"
# The worker buffers adds in attackdb once a flush of its succeeded (wait for one); then
# flushes far apart, so the add below stays unflushed while it is read. (Added before
# counter_pending has row level security: with it, every add is a durable row.)
q -c "SELECT counter_create('shared_buf', mode => 'buffered')" >/dev/null
wait_for 30 "SELECT last_flush_age < interval '1 second' FROM counter_stats WHERE name = 'shared_buf'" t \
  || fail buffered "the worker does not flush attackdb's buffered counters"
q -c "ALTER SYSTEM SET distributed_counter.flush_interval = 600000" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q -c "SELECT counter_add('shared_buf', 'bob:secret', 41)" \
  -c "GRANT SELECT, INSERT ON counter_pending TO alice" -c "GRANT SELECT ON counter_registry, counter_totals TO alice" \
  -c "ALTER TABLE counter_pending ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY own_keys ON counter_pending USING (key LIKE current_user || ':%') WITH CHECK (key LIKE current_user || ':%')" >/dev/null
buf_id=$(q -c "SELECT id FROM counter_registry WHERE name = 'shared_buf'")
got=$(q -c "SELECT coalesce(unflushed, 0) FROM counter_stats WHERE name = 'shared_buf'")
[ "$got" = 41 ] && pass buffered "the superuser's add to 'bob:secret' is unflushed in shared memory ($got)" \
  || fail buffered "expected 41 unflushed for 'bob:secret', counter_stats says $got (is the worker serving attackdb?)"
expect_state buffered "alice, under counter_pending's policy, reads 'bob:secret' unflushed (counter_value)" 42501 \
  -U alice -c "SELECT counter_value('shared_buf', 'bob:secret')"
expect_state buffered "alice, under the policy, reads the leaderboard with the unflushed key" 42501 \
  -U alice -c "SELECT * FROM counter_top('shared_buf')"
expect_state buffered "alice, under the policy, reads the buffer directly" 42501 \
  -U alice -c "SELECT * FROM _counter_unflushed($buf_id, NULL, NULL)"
expect_state buffered "alice adds to 'bob:x' past the policy's WITH CHECK (no buffering around it)" 42501 \
  -U alice -c "SELECT counter_add('shared_buf', 'bob:x', 1000000)"
got=$(sqlstate -U alice -c "SELECT name, unflushed FROM counter_stats WHERE name = 'alice_likes'")
[ "$got" = OK ] && pass buffered "alice reads a durable counter's statistics under the policy, with a buffered counter beside it ($got)" \
  || fail buffered "counter_stats of a durable counter under counter_pending's policy: $got"
expect_state buffered "alice adds to her own key under the policy (a durable row)" OK \
  -U alice -c "SELECT counter_add('shared_buf', 'alice:x', 1)"
# (a row, pending or already folded by the worker; nothing of it in the buffer, which is
# flushed only every 600 s now)
got=$(q -c "SELECT counter_value('shared_buf', 'alice:x') || '/' || (SELECT count(*) FROM _counter_unflushed($buf_id, 'alice:x', 0))")
[ "$got" = 1/0 ] && pass buffered "alice's add under the policy is a row the policy checked, not in the buffer (value/buffered entries $got)" \
  || fail buffered "alice's add under the policy: value/buffered entries $got (buffered past the policy?)"
q -c "DROP POLICY own_keys ON counter_pending" -c "ALTER TABLE counter_pending DISABLE ROW LEVEL SECURITY" >/dev/null
# A trigger the table owner puts on counter_pending runs at the add, as the adding role,
# as it would for the SQL path's INSERT: never later, in a flush, as another role. In one
# backend: a buffered add first (the fast path's cache then says the table is plain),
# then the trigger, then the same add again.
expect_state buffered "a trigger on counter_pending, created after a buffered add in the same backend, fires at alice's next add" P0001 \
  -c "SET ROLE alice" -c "SELECT counter_add('shared_buf', 'alice:t', 1)" -c "RESET ROLE" \
  -c "CREATE FUNCTION public.pending_guard() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS
      \$\$ BEGIN RAISE EXCEPTION 'pending_guard ran as %', current_user; END \$\$" \
  -c "CREATE TRIGGER pending_guard BEFORE INSERT ON counter_pending FOR EACH ROW EXECUTE FUNCTION public.pending_guard()" \
  -c "SET ROLE alice" -c "SELECT counter_add('shared_buf', 'alice:t', 1)"
q -c "DROP TRIGGER IF EXISTS pending_guard ON counter_pending" -c "DROP FUNCTION IF EXISTS public.pending_guard()" >/dev/null
expect_state buffered "a role without grants reads the buffer directly" 42501 \
  -U nogrants -c "SELECT * FROM _counter_unflushed($buf_id, NULL, NULL)"
expect_state buffered "a role without grants reads counter_stats' buffer state" 42501 \
  -U nogrants -c "SELECT * FROM _counter_buffer_state($buf_id)"
expect_state buffered "a role without grants flushes the buffer" 42501 -U nogrants -c "SELECT counter_flush()"
expect_state buffered "alice (INSERT on counter_pending, no grant on counter_flush) flushes the buffer" 42501 \
  -U alice -c "SELECT counter_flush()"
# Granted, counter_flush() still refuses what would let its insert drop other counters'
# adds (it keeps the rows of counters it can see) or hold flushes back in an old snapshot.
q -c "GRANT EXECUTE ON FUNCTION counter_flush() TO alice" \
  -c "ALTER TABLE counter_registry ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY flush_tenant ON counter_registry USING (name LIKE 'alice%')" >/dev/null
expect_state buffered "alice, granted counter_flush, under row level security on the registry" 42501 \
  -U alice -c "SELECT counter_flush()"
q -c "DROP POLICY flush_tenant ON counter_registry" -c "ALTER TABLE counter_registry DISABLE ROW LEVEL SECURITY" >/dev/null
expect_state buffered "alice, granted counter_flush, in a REPEATABLE READ transaction" 0A000 \
  -U alice -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT counter_flush()"
q -c "REVOKE EXECUTE ON FUNCTION counter_flush() FROM alice" >/dev/null
expect_state buffered "a role without grants adds to a buffered counter" 42501 \
  -U nogrants -c "SELECT counter_add('shared_buf', 'bob:secret', 1000000)"
got=$(q -c "SELECT counter_value('shared_buf', 'bob:secret')")
[ "$got" = 41 ] && pass buffered "'bob:secret' holds only the superuser's add ($got)" || fail buffered "'bob:secret' is $got"
q -c "ALTER SYSTEM RESET distributed_counter.flush_interval" -c "SELECT pg_reload_conf()" \
  -c "REVOKE SELECT, INSERT ON counter_pending FROM alice" >/dev/null

echo
total=0
for c in worker fastpath grants planting layout ratelimit windows buffered; do
  printf 'security: %-9s %d attacks\n' "$c" "${count[$c]:-0}"; total=$((total + ${count[$c]:-0}))
done
echo "security: $total checks, $failures failed"
[ "$failures" -eq 0 ]
