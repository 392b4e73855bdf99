-- hll against a real server: forced parallel plans, dump/restore, COPY (text and
-- binary), GROUP BY, bad input. Runs in database dc_regress.
\set ON_ERROR_STOP 0
SELECT pg_postmaster_start_time() AS started \gset
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS distributed_counter CASCADE;
RESET client_min_messages;
CREATE SCHEMA dc;
CREATE EXTENSION distributed_counter SCHEMA dc;
SET search_path = public, dc;

CREATE TABLE visits (id int8, day int4, user_id int8);
INSERT INTO visits SELECT g, g % 7, (g::int8 * 7919) % 150000 FROM generate_series(1, 300000) g;
ANALYZE visits;

-- serial results
SET max_parallel_workers_per_gather = 0;
CREATE TABLE serial AS
SELECT hll_add_agg(hll_hash_bigint(user_id)) AS a,
       hll_add_agg(hll_hash_bigint(user_id), 10) AS b,
       approx_count_distinct(user_id) AS c
FROM visits;
CREATE TABLE daily AS
SELECT day, hll_add_agg(hll_hash_bigint(user_id)) AS users FROM visits GROUP BY day;

-- forced parallel plans
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT hll_add_agg(hll_hash_bigint(user_id)), approx_count_distinct(user_id) FROM visits;
SELECT s.a = p.a AS add_agg_equal, s.b = p.b AS add_agg_p_equal, s.c = p.c AS acd_equal
FROM serial s,
     (SELECT hll_add_agg(hll_hash_bigint(user_id)) AS a,
             hll_add_agg(hll_hash_bigint(user_id), 10) AS b,
             approx_count_distinct(user_id) AS c FROM visits) p;
EXPLAIN (COSTS OFF) SELECT hll_union_agg(users) FROM daily;
SELECT (SELECT hll_union_agg(users) FROM daily) = (SELECT a FROM serial) AS union_of_days_equals_whole;
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather; RESET parallel_leader_participation;

-- estimates: 150000 distinct users, RSE 1.2% at p = 12
SELECT abs((# a) / 150000 - 1) < 0.05 AS p12_close, abs((# b) / 150000 - 1) < 0.2 AS p10_close,
       abs(c::float8 / 150000 - 1) < 0.05 AS acd_close FROM serial;

-- GROUP BY / DISTINCT over an hll column (hash opclass)
SELECT count(*) AS groups FROM (SELECT users FROM daily UNION ALL SELECT users FROM daily) s GROUP BY users HAVING count(*) = 2;
SELECT count(DISTINCT users) FROM (SELECT users FROM daily UNION ALL SELECT users FROM daily) s;

-- typmod columns
CREATE TABLE typed (day int4, users hll(11));
INSERT INTO typed SELECT day, users FROM daily;
SELECT DISTINCT hll_precision(users) FROM typed;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'typed'::regclass AND attname = 'users';

-- COPY text and binary round trips
COPY daily TO '/var/tmp/distributed_counter-regress/daily.txt';
COPY daily TO '/var/tmp/distributed_counter-regress/daily.bin' (FORMAT binary);
CREATE TABLE daily_txt (LIKE daily);
CREATE TABLE daily_bin (LIKE daily);
COPY daily_txt FROM '/var/tmp/distributed_counter-regress/daily.txt';
COPY daily_bin FROM '/var/tmp/distributed_counter-regress/daily.bin' (FORMAT binary);
SELECT count(*) AS rows, bool_and(d.users = t.users) AS text_equal, bool_and(d.users = b.users) AS binary_equal
FROM daily d JOIN daily_txt t USING (day) JOIN daily_bin b USING (day);
-- binary send is the stored bytes
SELECT bool_and(hll_send(users) = users::bytea) FROM daily;

-- pg_dump | pg_restore into a fresh database, then compare fingerprints
SELECT md5(string_agg(users::text, ',' ORDER BY day)) AS fingerprint FROM daily \gset
\! dropdb --if-exists dc_regress_restore && createdb dc_regress_restore
\! pg_dump -Fc dc_regress | pg_restore -d dc_regress_restore 2>&1 | grep -v '^$' || true
\! psql -X -At -d dc_regress_restore -c "SELECT md5(string_agg(users::text, ',' ORDER BY day)) FROM public.daily" > /var/tmp/distributed_counter-regress/restored.txt
\set restored `cat /var/tmp/distributed_counter-regress/restored.txt`
SELECT :'fingerprint' = :'restored' AS dump_restore_identical;
\! dropdb --if-exists dc_regress_restore

-- bad input: each error has the SQLSTATE docs/SQL.md promises
\set VERBOSITY sqlstate
SELECT 'nothex'::hll;                 -- 22P02
SELECT '\x01'::hll;                   -- 22P02 (truncated)
SELECT '\x03010c'::hll;               -- 22P02 (unknown version)
SELECT '\x02010c'::hll;               -- 22P02 (format 2, truncated)
SELECT '\x01010c0'::hll;              -- 22P02 (odd digits)
SELECT '\x01011f'::hll;               -- 22P02 (precision 31)
SELECT '\x010101'::bytea::hll;        -- 22P03 (precision 1)
SELECT '\x01030c'::bytea::hll;        -- 22P03 (unknown kind)
SELECT '\x01020c00'::bytea::hll;      -- 22P03 (dense, wrong length)
SELECT hll_empty(30);                 -- 22023
SELECT hll_empty(3);                  -- 22023
SELECT hll_add_agg(hll_hash_integer(1), 19);  -- 22023
SELECT '\x010c'::hll(30);             -- 22023 typmod
SELECT hll_cardinality_bounds(hll_empty(), 1.5);  -- 22023
\set VERBOSITY default
SELECT '\x03010c'::hll;
SELECT '\x02010c'::hll;
SELECT '\x01020c00'::bytea::hll;

-- 3000 random and mutated inputs through text input, the bytea cast and COPY BINARY recv:
-- each loads as a valid value or fails with the promised SQLSTATE, never anything else
SELECT setseed(0.42);
CREATE TABLE fuzz_seeds AS
SELECT users::bytea AS b FROM daily
UNION ALL SELECT (hll_empty(12) || hll_hash_integer(g))::bytea FROM generate_series(1, 5) g
UNION ALL SELECT hll_add_agg(hll_hash_integer(g), 4)::bytea FROM generate_series(1, 500) g
UNION ALL SELECT hll_add_agg(hll_hash_integer(g), 6)::bytea FROM generate_series(1, 150) g
-- format 1 (0.2.0's stored form): a sparse and a dense value
UNION ALL SELECT '\x0101042600000027000080'::bytea
UNION ALL SELECT '\x010204001200000000000000000000000000fc'::bytea;
CREATE FUNCTION mutate(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE r float8 := random(); n int := length(b); pos int;
BEGIN
  IF r < 0.25 THEN RETURN substr(b, 1, (random() * n)::int);              -- truncate
  ELSIF r < 0.5 THEN pos := (random() * (n - 1))::int;                       -- flip a bit
    RETURN set_bit(b, pos * 8 + (random() * 7)::int, 1 - get_bit(b, pos * 8));
  ELSIF r < 0.7 THEN pos := (random() * (n - 1))::int;                       -- random byte
    RETURN set_byte(b, pos, (random() * 255)::int);
  ELSIF r < 0.8 THEN RETURN b || decode(md5(random()::text), 'hex');         -- trailing junk
  ELSE RETURN decode(repeat(md5(random()::text), (random() * 4)::int), 'hex'); -- random bytes
  END IF;
END $$;
CREATE TABLE fuzz_inputs AS SELECT mutate(b) AS b FROM fuzz_seeds, generate_series(1, 300) i;
SELECT count(*) AS inputs FROM fuzz_inputs;
CREATE TABLE fuzz_result (path text, outcome text);
DO $$
DECLARE x bytea; v dc.hll;
BEGIN
  FOR x IN SELECT b FROM fuzz_inputs LOOP
    BEGIN
      v := encode(x, 'hex')::text::dc.hll;  -- not \x: always 22P02
      INSERT INTO fuzz_result VALUES ('text-nohex', 'loaded');
    EXCEPTION WHEN invalid_text_representation THEN INSERT INTO fuzz_result VALUES ('text-nohex', '22P02');
    END;
    BEGIN
      v := ('\x' || encode(x, 'hex'))::dc.hll;
      PERFORM dc.hll_cardinality(v), dc.hll_print(v), v || v;
      INSERT INTO fuzz_result VALUES ('text', 'loaded');
    EXCEPTION WHEN invalid_text_representation THEN INSERT INTO fuzz_result VALUES ('text', '22P02');
    END;
    BEGIN
      v := x::dc.hll;
      PERFORM dc.hll_cardinality(v), dc.hll_union_agg(u) FROM (VALUES (v), (v)) s(u);
      INSERT INTO fuzz_result VALUES ('bytea', 'loaded');
    EXCEPTION WHEN invalid_binary_representation THEN INSERT INTO fuzz_result VALUES ('bytea', '22P03');
    END;
  END LOOP;
END $$;
SELECT path, count(*) FILTER (WHERE outcome = 'loaded') > 0 AS some_loaded,
       count(*) FILTER (WHERE outcome <> 'loaded') > 0 AS some_rejected, count(*) AS tried
FROM fuzz_result GROUP BY path ORDER BY path;
-- COPY BINARY recv path: a file of mutated values in PostgreSQL's binary COPY format
CREATE TABLE fuzz_bytes (b bytea);
INSERT INTO fuzz_bytes SELECT b FROM fuzz_inputs;
COPY fuzz_bytes TO '/var/tmp/distributed_counter-regress/fuzz.bin' (FORMAT binary);
CREATE TABLE fuzz_copy (h hll);
-- bytea and hll share the wire format, so this file feeds hll_recv each mutated value;
-- one bad value fails the whole COPY with 22P03
\set VERBOSITY sqlstate
COPY fuzz_copy FROM '/var/tmp/distributed_counter-regress/fuzz.bin' (FORMAT binary);
\set VERBOSITY default
-- the valid seeds alone load through recv
TRUNCATE fuzz_bytes;
INSERT INTO fuzz_bytes SELECT b FROM fuzz_seeds;
COPY fuzz_bytes TO '/var/tmp/distributed_counter-regress/seeds.bin' (FORMAT binary);
COPY fuzz_copy FROM '/var/tmp/distributed_counter-regress/seeds.bin' (FORMAT binary);
SELECT count(*) AS recv_loaded FROM fuzz_copy;

-- the server never restarted
SELECT pg_postmaster_start_time() = :'started' AS server_stayed_up;
DROP TABLE visits, serial, daily, typed, daily_txt, daily_bin, fuzz_seeds, fuzz_inputs, fuzz_result, fuzz_bytes, fuzz_copy;
DROP FUNCTION mutate(bytea);
DROP EXTENSION distributed_counter;
DROP SCHEMA dc;
