-- gcounter / pncounter on a real server: forced parallel merge aggregates, COPY BINARY
-- round trips (and recv validation), bad input SQLSTATEs with the server staying up.
CREATE EXTENSION IF NOT EXISTS distributed_counter;
CREATE SCHEMA crdt_regress;
SELECT set_config('search_path', 'crdt_regress, ' || current_setting('search_path'), false) IS NOT NULL AS ok;

-- 20000 counters over 8 nodes each.
CREATE TABLE crdt_regress.c (k int PRIMARY KEY, g gcounter, p pncounter);
INSERT INTO crdt_regress.c
SELECT k,
       (SELECT gcounter_merge_agg(gcounter_increment(NULL, (k * 7 + n * 13) % 1000 + 1, 'node' || n))
          FROM generate_series(0, 7) n),
       (SELECT pncounter_merge_agg(pncounter_decrement(pncounter_increment(NULL, (k * 11 + n) % 997 + 1, 'node' || n),
                                                      (k + n * 5) % 500, 'node' || ((n + 1) % 8)))
          FROM generate_series(0, 7) n)
FROM generate_series(1, 20000) k;
ANALYZE crdt_regress.c;

-- Serial results.
SET max_parallel_workers_per_gather = 0;
SELECT gcounter_merge_agg(g)::text AS serial_g, pncounter_merge_agg(p)::text AS serial_p FROM c \gset
SELECT :'serial_g' AS serial_g;
SELECT :'serial_p' AS serial_p;
SELECT gcounter_value(:'serial_g') AS g_value, pncounter_value(:'serial_p') AS p_value;

-- Forced parallel plans: Partial Aggregate in workers, combined by the combine function.
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT gcounter_merge_agg(g), pncounter_merge_agg(p) FROM c;
SELECT gcounter_merge_agg(g)::text = :'serial_g' AS g_same, pncounter_merge_agg(p)::text = :'serial_p' AS p_same FROM c;
-- a filtered scan too (even k only)
SET max_parallel_workers_per_gather = 0;
SELECT pncounter_merge_agg(p)::text AS serial_half FROM c WHERE k % 2 = 0 \gset
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT pncounter_merge_agg(p) FROM c WHERE k % 2 = 0;
SELECT pncounter_merge_agg(p)::text = :'serial_half' AS half_same FROM c WHERE k % 2 = 0;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- COPY BINARY round trip of both types (send = stored bytes, recv validates them).
COPY c TO '/var/tmp/dc_crdt_regress.bin' WITH (FORMAT binary);
CREATE TABLE crdt_regress.c2 (LIKE crdt_regress.c);
COPY c2 FROM '/var/tmp/dc_crdt_regress.bin' WITH (FORMAT binary);
SELECT count(*) AS rows_equal FROM c JOIN c2 USING (k) WHERE c.g = c2.g AND c.p = c2.p
   AND c.g::text = c2.g::text AND gcounter_send(c.g) = gcounter_send(c2.g);
-- text COPY round trip too
COPY c TO '/var/tmp/dc_crdt_regress.txt';
TRUNCATE c2;
COPY c2 FROM '/var/tmp/dc_crdt_regress.txt';
SELECT count(*) AS rows_equal FROM c JOIN c2 USING (k) WHERE c.g = c2.g AND c.p = c2.p;

-- recv: raw bytes copied in binary from a bytea column land in the counter's recv.
CREATE TABLE crdt_regress.raw (g bytea, p bytea);
INSERT INTO raw VALUES (gcounter_send('{"a":5,"bc":3}'), pncounter_send('{"p":{"a":5},"n":{"b":2}}'));
COPY raw TO '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
CREATE TABLE crdt_regress.typed (g gcounter, p pncounter);
COPY typed FROM '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
SELECT g, p FROM typed;
\set VERBOSITY sqlstate
-- bad stored bytes -> 22P03
-- wrong version
TRUNCATE raw;
INSERT INTO raw VALUES ('\x023000000000'::bytea, NULL);
COPY raw TO '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
COPY typed FROM '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
-- a pncounter given to gcounter
TRUNCATE raw;
INSERT INTO raw VALUES (pncounter_send('{}'), NULL);
COPY raw TO '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
COPY typed FROM '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
-- truncated entry
TRUNCATE raw;
INSERT INTO raw VALUES ('\x01300100000001610500'::bytea, NULL);
COPY raw TO '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
COPY typed FROM '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
-- unsorted node ids
TRUNCATE raw;
INSERT INTO raw VALUES ('\x0130020000000162010000000000000001610100000000000000'::bytea, NULL);
COPY raw TO '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
COPY typed FROM '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
-- zero count
TRUNCATE raw;
INSERT INTO raw VALUES ('\x01300100000001610000000000000000'::bytea, NULL);
COPY raw TO '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
COPY typed FROM '/var/tmp/dc_crdt_regress_raw.bin' WITH (FORMAT binary);
SELECT count(*) AS typed_rows FROM typed;

-- bad text input: malformed, negative, duplicate node -> 22P02
SELECT '{'::gcounter;
SELECT '{"a":-1}'::gcounter;
SELECT '{"a":1,"a":2}'::gcounter;
SELECT '{"p":{"a":1},"x":{}}'::pncounter;
SELECT '{"p":{"a":"1"}}'::pncounter;
COPY c2 (k, g) FROM STDIN;
1	{"a":1,"a":1}
\.
-- bad parameters -> 22023, overflow -> 22003
SELECT gcounter_increment(NULL, -5, 'a');
SELECT pncounter_increment(NULL, 1, '');
SELECT gcounter_increment('{"a":9223372036854775807}', 1, 'a');
SELECT gcounter_value('{"a":9223372036854775807,"b":9223372036854775807}');
\set VERBOSITY default
-- the server is still up and the data intact
SELECT count(*) AS rows, sum(gcounter_value(g)) AS g_total FROM c;

DROP SCHEMA crdt_regress CASCADE;
