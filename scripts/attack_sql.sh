#!/usr/bin/env bash
# SQL-level attack run against a real server (cluster dc_test, port 5498): for each type
# (hll, cms, topk, gcounter, pncounter) and each path (text input, bytea cast, COPY BINARY
# recv), N random and mutated inputs (default 10000). Every input must either load as a
# valid value (which then survives its basic functions) or fail with the SQLSTATE
# docs/SQL.md promises (22P02 text, 22P03 binary); anything else, or a server restart
# (pg_postmaster_start_time), fails the run. Prints a table of outcomes per type/path.
# Usage: [PG_MAJOR=15|18] scripts/attack_sql.sh [N]
# (expects the extension installed in that PostgreSQL, e.g. by cargo pgrx test)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pg.sh
N=${1:-10000}
PORT=${DC_TEST_PORT:-5498}
pg_cluster_up dc_test "$PORT"
# synchronize_seqscans off: every path must see the same N inputs in the same order
q() { runuser -u postgres -- env PGOPTIONS="-c synchronize_seqscans=off" psql -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" "$@"; }
q -d postgres -c "DROP DATABASE IF EXISTS dc_attack WITH (FORCE)" -c "CREATE DATABASE dc_attack"
DIR=/var/tmp/distributed_counter-attack-pg$PG_MAJOR
rm -rf "$DIR"; install -d -o postgres -g postgres "$DIR"
started=$(q -d dc_attack -c "SELECT pg_postmaster_start_time()")
q -d dc_attack <<SQL
CREATE EXTENSION distributed_counter;
SELECT setseed(0.1234);
-- valid seeds of every type and size class
CREATE TABLE seeds (typ text, b bytea, t text);
INSERT INTO seeds SELECT 'hll', h::bytea, h::text FROM (
  SELECT hll_add_agg(hll_hash_integer(g), p) h FROM generate_series(1, 2000) g, (VALUES (4), (10), (12)) v(p) GROUP BY p
  UNION ALL SELECT hll_empty(12) || hll_hash_integer(7)
  UNION ALL SELECT hll_add_agg(hll_hash_integer(g), 14) FROM generate_series(1, 60) g) s;
INSERT INTO seeds SELECT 'cms', c::bytea, c::text FROM (
  SELECT cms_add_agg(g % 97, 0.2, 0.1) c FROM generate_series(1, 500) g
  UNION ALL SELECT cms_empty(0.05, 0.05)
  UNION ALL SELECT cms_add_agg(g, 0.01, 0.01) FROM generate_series(1, 100) g) s;
INSERT INTO seeds SELECT 'topk', t::bytea, t::text FROM (
  SELECT topk_add_agg(g % 13, 3) t FROM generate_series(1, 300) g
  UNION ALL SELECT topk_add_agg('item-' || (g * g % 101), 10) FROM generate_series(1, 1000) g) s;
INSERT INTO seeds SELECT 'gcounter', c::bytea, c::text FROM (
  SELECT gcounter_increment(gcounter_increment(NULL, 5, 'node-a'), 7, 'b') c
  UNION ALL SELECT '{}'::gcounter
  UNION ALL SELECT '{"x":1,"y":2,"zz":3,"ü":4}'::gcounter) s;
INSERT INTO seeds SELECT 'pncounter', c::bytea, c::text FROM (
  SELECT pncounter_decrement(pncounter_increment(NULL, 5, 'node-a'), 2, 'b') c
  UNION ALL SELECT '{}'::pncounter
  UNION ALL SELECT '{"p":{"a":9223372036854775807},"n":{"a":1,"b":2}}'::pncounter) s;

CREATE FUNCTION mutate_bytes(b bytea) RETURNS bytea LANGUAGE plpgsql AS \$\$
DECLARE r float8 := random(); n int := length(b); pos int;
BEGIN
  IF n = 0 OR r < 0.05 THEN RETURN decode(repeat(md5(random()::text), (random() * 6)::int), 'hex');
  ELSIF r < 0.25 THEN RETURN substr(b, 1, (random() * n)::int);
  ELSIF r < 0.5 THEN pos := (random() * (n - 1))::int;
    RETURN set_bit(b, pos * 8 + (random() * 7)::int, 1 - get_bit(b, pos * 8 + 0));
  ELSIF r < 0.75 THEN pos := (random() * (n - 1))::int; RETURN set_byte(b, pos, (random() * 255)::int);
  ELSIF r < 0.85 THEN RETURN b || decode(md5(random()::text), 'hex');
  ELSIF r < 0.95 THEN pos := (random() * (n - 1))::int;  -- duplicate a slice
    RETURN substr(b, 1, pos) || substr(b, pos + 1, 16) || substr(b, pos + 1);
  ELSE RETURN substr(b, 1, 2) || decode(md5(random()::text), 'hex') || substr(b, 3);
  END IF;
END \$\$;
CREATE FUNCTION mutate_text(t text) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE r float8 := random(); n int := length(t); pos int;
  alphabet text := '{}[]":,\\-+.eE0123456789abcxyzpnü ' || chr(9) || chr(10);
  c text := substr(alphabet, 1 + (random() * (length(alphabet) - 1))::int, 1);
BEGIN
  IF n = 0 THEN RETURN c; END IF;
  pos := 1 + (random() * (n - 1))::int;
  IF r < 0.3 THEN RETURN overlay(t placing c from pos for 1);
  ELSIF r < 0.55 THEN RETURN overlay(t placing '' from pos for 1);
  ELSIF r < 0.8 THEN RETURN substr(t, 1, pos) || c || substr(t, pos + 1);
  ELSIF r < 0.9 THEN RETURN substr(t, 1, pos);
  ELSE RETURN t || substr(t, pos);
  END IF;
END \$\$;

CREATE TABLE outcomes (typ text, path text, outcome text, n int);
CREATE TABLE inputs (typ text, b bytea, t text);
INSERT INTO inputs
SELECT s.typ, mutate_bytes(s.b),
       CASE WHEN s.typ IN ('gcounter', 'pncounter') THEN mutate_text(s.t) ELSE '\\x' || encode(mutate_bytes(s.b), 'hex') END
FROM seeds s, generate_series(1, $N) g
WHERE g <= $N / (SELECT count(*) FROM seeds x WHERE x.typ = s.typ) + 1;
SQL
for typ in hll cms topk gcounter pncounter; do
  q -d dc_attack <<SQL
DO \$\$
DECLARE x record; ok_t int := 0; ok_b int := 0; e_t int := 0; e_b int := 0; i int := 0;
BEGIN
  FOR x IN SELECT b, t FROM inputs WHERE typ = '$typ' LIMIT $N LOOP
    i := i + 1;
    BEGIN
      EXECUTE format('SELECT (\$1::%s)::text', '$typ') USING x.t;
      ok_t := ok_t + 1;
    EXCEPTION WHEN invalid_text_representation THEN e_t := e_t + 1;
    END;
    BEGIN
      EXECUTE format('SELECT (\$1::%s)::text', '$typ') USING x.b;
      ok_b := ok_b + 1;
    EXCEPTION WHEN invalid_binary_representation THEN e_b := e_b + 1;
    END;
  END LOOP;
  INSERT INTO outcomes VALUES ('$typ', 'text', 'loaded', ok_t), ('$typ', 'text', '22P02', e_t),
                              ('$typ', 'bytea cast', 'loaded', ok_b), ('$typ', 'bytea cast', '22P03', e_b);
END \$\$;
-- COPY BINARY recv: one single-row binary COPY file per input (bytea and every one of
-- these types share the wire format: the raw stored bytes)
CREATE TEMP TABLE one (b bytea);
CREATE TABLE sink_$typ (v $typ);
DO \$\$
DECLARE x record; ok int := 0; e int := 0;
BEGIN
  FOR x IN SELECT b FROM inputs WHERE typ = '$typ' LIMIT $N LOOP
    TRUNCATE one;
    INSERT INTO one VALUES (x.b);
    EXECUTE 'COPY one TO ''$DIR/one.bin'' (FORMAT binary)';
    BEGIN
      EXECUTE 'COPY sink_$typ FROM ''$DIR/one.bin'' (FORMAT binary)';
      ok := ok + 1;
    EXCEPTION WHEN invalid_binary_representation THEN e := e + 1;
    END;
  END LOOP;
  INSERT INTO outcomes VALUES ('$typ', 'COPY BINARY recv', 'loaded', ok), ('$typ', 'COPY BINARY recv', '22P03', e);
END \$\$;
SQL
done
# Resource attacks: huge parameters and inputs must fail fast with a clear error, never
# exhaust memory or take the server down.
resource() {  # resource LABEL EXPECTED_SQLSTATE SQL
  local got
  got=$(runuser -u postgres -- psql -X -q -At -h localhost -p "$PORT" -d dc_attack \
        -c "\\set VERBOSITY sqlstate" -c "$3" 2>&1 | grep -o 'ERROR:  [0-9A-Z]*' | awk '{print $2}' | head -1 || true)
  if [ "$got" != "$2" ]; then echo "attack_sql: FAIL: $1: expected $2, got '${got:-no error}'"; exit 1; fi
  printf 'resource attack %-44s -> %s\n' "$1" "$got"
}
resource "cms eps = 1e-12" 22023 "SELECT cms_empty(1e-12)"
resource "cms eps = 1e-4, delta = 1e-300 (19M counters)" 22023 "SELECT cms_empty(0.0001, 1e-300)"
resource "topk k = 10^9" 22023 "SELECT topk_add_agg(g, 1000000000) FROM generate_series(1, 3) g"
resource "hll precision 30" 22023 "SELECT hll_empty(30)"
resource "hll typmod 30" 22023 "CREATE TEMP TABLE big (h hll(30))"
resource "hll_add_agg precision 30" 22023 "SELECT hll_add_agg(hll_hash_integer(1), 30)"
resource "gcounter with 20,000 nodes (JSON)" 22P02 \
  "SELECT ('{' || string_agg(format('\"n%s\":1', g), ',') || '}')::gcounter FROM generate_series(1, 20000) g"
resource "pncounter node id of 10 MB" 22P02 "SELECT ('{\"p\":{\"' || repeat('x', 10000000) || '\":1}}')::pncounter"
resource "gcounter_increment node of 64 bytes" 22023 "SELECT gcounter_increment(NULL, 1, repeat('x', 64))"
resource "500 MB of JSON" 22P02 "SELECT ('{\"a\":' || repeat('9', 500000000) || '}')::gcounter"
resource "hll from 300 MB of bytes" 22P03 "SELECT decode(repeat('00', 150000000), 'hex')::hll"
resource "cms from 300 MB of bytes" 22P03 "SELECT decode(repeat('01', 150000000), 'hex')::cms"
resource "topk claiming 2^32 entries" 22P03 "SELECT ('\\x0120' || '0a000000' || '0000000000000000' || 'ffffffff')::bytea::topk"
now=$(q -d dc_attack -c "SELECT pg_postmaster_start_time()")
q -d dc_attack -c "SELECT typ, path, sum(n) AS tried, sum(n) FILTER (WHERE outcome = 'loaded') AS loaded,
  string_agg(outcome || '=' || n, ' ' ORDER BY outcome) FILTER (WHERE outcome <> 'loaded') AS rejected
  FROM outcomes GROUP BY typ, path ORDER BY typ, path" -P footer=off -F ' | ' 
# loaded values survive their functions (the sink tables hold every recv-loaded value)
q -d dc_attack -c "SELECT count(*) FROM (SELECT hll_cardinality(v) FROM sink_hll) a" \
  -c "SELECT count(*) FROM (SELECT cms_total(v) FROM sink_cms) a" \
  -c "SELECT count(*) FROM (SELECT topk_list(v) FROM sink_topk) a" \
  -c "SELECT count(*) FROM (SELECT gcounter_value(v) FROM sink_gcounter) a" \
  -c "SELECT count(*) FROM (SELECT pncounter_value(v) FROM sink_pncounter) a" >/dev/null
[ -n "${KEEP_DB:-}" ] || q -d postgres -c "DROP DATABASE dc_attack WITH (FORCE)"
if [ "$started" != "$now" ]; then echo "attack_sql: FAIL: the server restarted"; exit 1; fi
echo "attack_sql: PASS: every input loaded or failed with the promised SQLSTATE; server never restarted ($started)"
