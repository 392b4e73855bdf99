-- cms and topk on a real server: forced parallel plans (Partial Aggregate, results equal
-- to serial), pg_dump | pg_restore and COPY (text and binary) round trips, parameter
-- errors, bad and fuzzed input with the server staying up, bounded aggregate memory.
\set ON_ERROR_STOP 0
SELECT pg_postmaster_start_time() AS started \gset
-- use the extension where it is (or create it, and drop it again at the end)
SELECT NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'distributed_counter') AS created_ext \gset
CREATE EXTENSION IF NOT EXISTS distributed_counter;
SELECT n.nspname AS ext FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'distributed_counter' \gset
CREATE SCHEMA sk;
SET search_path = sk, :"ext";

-- 300000 events: v is Zipf-like (s = 1.1 over 10000 values, deterministic), w has 30
-- values (fewer than topk's 4k counters, so every topk over w is exact).
CREATE TABLE events AS
SELECT g AS id,
       floor(pow(1 - ((g::int8 * 7919) % 300007) / 300007.0 * (1 - pow(10000, -0.1)), -10))::int8 AS v,
       (g * 13) % 30 AS w
FROM generate_series(1, 300000) g;
ANALYZE events;
CREATE TABLE truth AS SELECT v::text AS value, count(*) AS n FROM events GROUP BY v;

-- serial results
SET max_parallel_workers_per_gather = 0;
CREATE TABLE serial AS
SELECT cms_add_agg(v) AS c1, cms_add_agg(v, 0.01, 0.01) AS c2, cms_add_agg(v, id % 3, 0.01, 0.01) AS c3,
       topk_add_agg(w) AS t1, topk_add_agg(w::text, 8) AS t2,
       topk_add_agg(v) AS t3, topk_add_agg(v, 100) AS t4
FROM events;
CREATE TABLE parts AS
SELECT id % 16 AS part, cms_add_agg(v, 0.01, 0.01) AS c, topk_add_agg(v, 10) AS t FROM events GROUP BY 1;

-- forced parallel plans
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT cms_add_agg(v), topk_add_agg(w), topk_add_agg(v, 100) FROM events;
CREATE TABLE par AS
SELECT cms_add_agg(v) AS c1, cms_add_agg(v, 0.01, 0.01) AS c2, cms_add_agg(v, id % 3, 0.01, 0.01) AS c3,
       topk_add_agg(w) AS t1, topk_add_agg(w::text, 8) AS t2,
       topk_add_agg(v) AS t3, topk_add_agg(v, 100) AS t4
FROM events;
-- cms adds commute exactly; topk over 30 values is exact in any order
SELECT s.c1 = p.c1 AS cms_equal, s.c2 = p.c2 AS cms_params_equal, s.c3 = p.c3 AS cms_weighted_equal,
       s.t1 = p.t1 AS topk_equal, s.t2 = p.t2 AS topk_k8_equal
FROM serial s, par p;
SELECT value, count, error FROM topk_list((SELECT t1 FROM par)) LIMIT 3;
SELECT cms_total(c3) AS weighted_total, (SELECT sum(id % 3) FROM events) AS expected FROM par;
-- topk over the Zipf column: the parallel merge keeps the guarantees (each row's bounds
-- hold, every value above total/k is listed, same heavy hitters as serial)
SELECT k, count(*) AS listed,
       count(*) FILTER (WHERE l.count - l.error <= t.n AND t.n <= l.count) AS bounds_hold
FROM (SELECT 10 AS k, * FROM topk_list((SELECT t3 FROM par))
      UNION ALL SELECT 100, * FROM topk_list((SELECT t4 FROM par))) l
JOIN truth t USING (value) GROUP BY k ORDER BY k;
SELECT k, count(*) AS heavy, count(*) FILTER (WHERE value IN (SELECT value FROM topk_list(CASE k WHEN 10 THEN p.t3 ELSE p.t4 END))) AS listed_parallel,
       count(*) FILTER (WHERE value IN (SELECT value FROM topk_list(CASE k WHEN 10 THEN s.t3 ELSE s.t4 END))) AS listed_serial
FROM truth, (VALUES (10), (100)) ks(k), par p, serial s
WHERE n * k > 300000 GROUP BY k ORDER BY k;
-- union aggregates over stored sketches, in parallel
EXPLAIN (COSTS OFF) SELECT cms_union_agg(c), topk_union_agg(t) FROM parts;
SELECT (SELECT cms_union_agg(c) FROM parts) = (SELECT c2 FROM serial) AS cms_union_of_parts_equals_whole,
       (SELECT topk_total(topk_union_agg(t)) FROM parts) AS topk_union_total;
SELECT count(*) AS listed, count(*) FILTER (WHERE l.count - l.error <= t.n AND t.n <= l.count) AS bounds_hold
FROM topk_list((SELECT topk_union_agg(t) FROM parts)) l JOIN truth t USING (value);
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather; RESET parallel_leader_participation;

-- cms_count: never below the true count; a handful of values
SELECT count(*) FILTER (WHERE cms_count(s.c1, t.value::int8) < t.n) AS below_true,
       count(*) FILTER (WHERE cms_count(s.c1, t.value::int8) > t.n + 0.001 * 300000) AS over_bound
FROM truth t, serial s;
SELECT v, count(*) AS true_count, cms_count((SELECT c1 FROM serial), v) AS cms_v,
       cms_count((SELECT c1 FROM serial), v::int4) AS cms_int4, cms_count((SELECT c1 FROM serial), v::int2) AS cms_int2
FROM events WHERE v IN (1, 2, 10, 100) GROUP BY v ORDER BY v;
SELECT value, count, error FROM topk_list((SELECT t3 FROM serial)) LIMIT 5;
SELECT cms_print(c2), topk_print(t1) FROM serial;

-- GROUP BY / DISTINCT over sketch columns (hash and btree opclasses)
SELECT count(DISTINCT c) AS distinct_cms, count(DISTINCT t) AS distinct_topk
FROM (SELECT c, t FROM parts UNION ALL SELECT c, t FROM parts) s;
SELECT count(*) AS groups_of_two FROM (SELECT t FROM (SELECT t FROM parts UNION ALL SELECT t FROM parts) s GROUP BY t HAVING count(*) = 2) g;

-- COPY text and binary round trips
COPY parts TO '/var/tmp/distributed_counter-regress/sk_parts.txt';
COPY parts TO '/var/tmp/distributed_counter-regress/sk_parts.bin' (FORMAT binary);
CREATE TABLE parts_txt (LIKE parts);
CREATE TABLE parts_bin (LIKE parts);
COPY parts_txt FROM '/var/tmp/distributed_counter-regress/sk_parts.txt';
COPY parts_bin FROM '/var/tmp/distributed_counter-regress/sk_parts.bin' (FORMAT binary);
SELECT count(*) AS rows, bool_and(p.c = x.c AND p.t = x.t) AS text_equal, bool_and(p.c = b.c AND p.t = b.t) AS binary_equal
FROM parts p JOIN parts_txt x USING (part) JOIN parts_bin b USING (part);
-- binary send is the stored bytes
SELECT bool_and(cms_send(c) = c::bytea AND topk_send(t) = t::bytea) AS send_is_stored_bytes FROM parts;

-- pg_dump | pg_restore into a fresh database, then compare fingerprints
SELECT md5(string_agg(c::text || t::text, ',' ORDER BY part)) AS fingerprint FROM parts \gset
\! dropdb --if-exists dc_regress_sk_restore 2>/dev/null; createdb dc_regress_sk_restore
\! pg_dump -Fc dc_regress | pg_restore -d dc_regress_sk_restore >/dev/null 2>&1 || true
\! psql -X -At -d dc_regress_sk_restore -c "SELECT md5(string_agg(c::text || t::text, ',' ORDER BY part)) FROM sk.parts" > /var/tmp/distributed_counter-regress/sk_restored.txt
\set restored `cat /var/tmp/distributed_counter-regress/sk_restored.txt`
SELECT :'fingerprint' = :'restored' AS dump_restore_identical;
\! dropdb --if-exists dc_regress_sk_restore

-- parameter errors
\set VERBOSITY sqlstate
SELECT cms_union(cms_empty(0.01, 0.01), cms_empty(0.001, 0.01));       -- 22023
SELECT cms_union_agg(c) FROM (VALUES (cms_empty(0.01, 0.01)), (cms_empty(0.01, 0.001))) v(c);  -- 22023
SELECT cms_add(cms_empty(), 5, -1);                                    -- 22023
SELECT cms_add_agg(v, -1::int8, 0.01, 0.01) FROM events;               -- 22023
SELECT cms_empty(0, 0.5);                                              -- 22023
SELECT cms_empty(1e-9, 0.5);                                           -- 22023
SELECT topk_add(topk_empty(), 5, -1);                                  -- 22023
SELECT topk_add_agg(v, 0) FROM events;                                 -- 22023
SELECT topk_add_agg(v, 100001) FROM events;                            -- 22023
SELECT cms_add(cms_add(cms_empty(0.5, 0.5), 1, 9223372036854775807), 1);  -- 22003
\set VERBOSITY default
SELECT cms_union_agg(c) FROM (VALUES (cms_empty(0.01, 0.01)), (cms_empty(0.01, 0.001))) v(c);
SELECT cms_add(cms_empty(), 5, -1);

-- bad input: each error has the SQLSTATE docs/SQL.md promises
\set VERBOSITY sqlstate
SELECT 'nothex'::cms;                 -- 22P02
SELECT '\x01'::cms;                   -- 22P02 (truncated)
SELECT '\x0110zz'::cms;               -- 22P02 (bad digit)
SELECT '\x03100400000001000000'::cms; -- 22P02 (unknown version)
SELECT '\x01'::bytea::cms;            -- 22P03
SELECT '\x01200a0000000000000000000000000000000000'::bytea::cms;  -- 22P03 (topk bytes)
SELECT 'nothex'::topk;                -- 22P02
SELECT '\x0120'::topk;                -- 22P02 (truncated)
SELECT '\x0110'::bytea::topk;         -- 22P03
-- a topk whose item (a NUL byte) is not valid text
SELECT ('\x01200a000000' || '0100000000000000' || '01000000' || '0100000000000000' || '0000000000000000' || '01000000' || '00')::bytea::topk;  -- 22P03
\set VERBOSITY default
SELECT '\x01'::bytea::cms;
SELECT '\x0110'::bytea::topk;

-- 1800 mutated inputs through text input, the bytea cast and COPY BINARY recv: each
-- loads as a valid value or fails with the promised SQLSTATE, never anything else
SELECT setseed(0.42);
CREATE TABLE fuzz_seeds AS
SELECT c::bytea AS b, 'cms' AS type FROM (SELECT cms_add_agg(v, 0.3, 0.2) AS c FROM events GROUP BY id % 3) s
UNION ALL SELECT cms_empty(0.5, 0.5)::bytea, 'cms'
UNION ALL SELECT t::bytea, 'topk' FROM (SELECT topk_add_agg(v, 2) AS t FROM events GROUP BY id % 3) s
UNION ALL SELECT topk_add_agg(w, 10)::bytea, 'topk' FROM events;
CREATE FUNCTION mutate(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE r float8 := random(); n int := length(b); pos int;
BEGIN
  IF r < 0.25 THEN RETURN substr(b, 1, (random() * n)::int);              -- truncate
  ELSIF r < 0.5 THEN pos := (random() * (n * 8 - 1))::int;                   -- flip a bit
    RETURN set_bit(b, pos, 1 - get_bit(b, pos));
  ELSIF r < 0.7 THEN pos := (random() * (n - 1))::int;                       -- random byte
    RETURN set_byte(b, pos, (random() * 255)::int);
  ELSIF r < 0.8 THEN RETURN b || decode(md5(random()::text), 'hex');         -- trailing junk
  ELSE RETURN decode(repeat(md5(random()::text), (random() * 4)::int), 'hex'); -- random bytes
  END IF;
END $$;
CREATE TABLE fuzz_inputs AS SELECT mutate(b) AS b, type FROM fuzz_seeds, generate_series(1, 200) i;
SELECT type, count(*) AS inputs FROM fuzz_inputs GROUP BY type ORDER BY type;
CREATE TABLE fuzz_result (path text, outcome text);
DO $$
DECLARE x bytea; ty text; c cms; t topk;
BEGIN
  FOR x, ty IN SELECT b, type FROM fuzz_inputs LOOP
    IF ty = 'cms' THEN
      BEGIN
        c := ('\x' || encode(x, 'hex'))::cms;
        PERFORM cms_total(c), cms_print(c), cms_union(c, c);
        -- a mutated element type name loads; a lookup of another type is then 42804
        BEGIN PERFORM cms_count(c, 1); EXCEPTION WHEN datatype_mismatch THEN NULL; END;
        INSERT INTO fuzz_result VALUES ('cms text', 'loaded');
      EXCEPTION WHEN invalid_text_representation THEN INSERT INTO fuzz_result VALUES ('cms text', '22P02');
      END;
      BEGIN
        c := x::cms;
        PERFORM cms_union_agg(u) FROM (VALUES (c), (c)) s(u);
        INSERT INTO fuzz_result VALUES ('cms bytea', 'loaded');
      EXCEPTION WHEN invalid_binary_representation THEN INSERT INTO fuzz_result VALUES ('cms bytea', '22P03');
      END;
    ELSE
      BEGIN
        t := ('\x' || encode(x, 'hex'))::topk;
        PERFORM topk_total(t), topk_print(t), topk_union(t, t), (SELECT count(*) FROM topk_list(t));
        INSERT INTO fuzz_result VALUES ('topk text', 'loaded');
      EXCEPTION WHEN invalid_text_representation THEN INSERT INTO fuzz_result VALUES ('topk text', '22P02');
      END;
      BEGIN
        t := x::topk;
        PERFORM topk_union_agg(u) FROM (VALUES (t), (t)) s(u);
        INSERT INTO fuzz_result VALUES ('topk bytea', 'loaded');
      EXCEPTION WHEN invalid_binary_representation THEN INSERT INTO fuzz_result VALUES ('topk bytea', '22P03');
      END;
    END IF;
  END LOOP;
END $$;
SELECT path, count(*) FILTER (WHERE outcome = 'loaded') > 0 AS some_loaded,
       count(*) FILTER (WHERE outcome <> 'loaded') > 0 AS some_rejected, count(*) AS tried
FROM fuzz_result GROUP BY path ORDER BY path;
-- COPY BINARY recv path: bytea and the sketch types share the wire format, so these
-- files feed cms_recv / topk_recv each mutated value; one bad value fails the COPY
CREATE TABLE fuzz_bytes (b bytea);
INSERT INTO fuzz_bytes SELECT b FROM fuzz_inputs WHERE type = 'cms';
COPY fuzz_bytes TO '/var/tmp/distributed_counter-regress/sk_fuzz_cms.bin' (FORMAT binary);
TRUNCATE fuzz_bytes;
INSERT INTO fuzz_bytes SELECT b FROM fuzz_inputs WHERE type = 'topk';
COPY fuzz_bytes TO '/var/tmp/distributed_counter-regress/sk_fuzz_topk.bin' (FORMAT binary);
CREATE TABLE fuzz_cms (c cms);
CREATE TABLE fuzz_topk (t topk);
\set VERBOSITY sqlstate
COPY fuzz_cms FROM '/var/tmp/distributed_counter-regress/sk_fuzz_cms.bin' (FORMAT binary);
COPY fuzz_topk FROM '/var/tmp/distributed_counter-regress/sk_fuzz_topk.bin' (FORMAT binary);
\set VERBOSITY default
-- the valid seeds alone load through recv
TRUNCATE fuzz_bytes;
INSERT INTO fuzz_bytes SELECT b FROM fuzz_seeds WHERE type = 'cms';
COPY fuzz_bytes TO '/var/tmp/distributed_counter-regress/sk_seeds_cms.bin' (FORMAT binary);
COPY fuzz_cms FROM '/var/tmp/distributed_counter-regress/sk_seeds_cms.bin' (FORMAT binary);
TRUNCATE fuzz_bytes;
INSERT INTO fuzz_bytes SELECT b FROM fuzz_seeds WHERE type = 'topk';
COPY fuzz_bytes TO '/var/tmp/distributed_counter-regress/sk_seeds_topk.bin' (FORMAT binary);
COPY fuzz_topk FROM '/var/tmp/distributed_counter-regress/sk_seeds_topk.bin' (FORMAT binary);
SELECT (SELECT count(*) FROM fuzz_cms) AS cms_recv_loaded, (SELECT count(*) FROM fuzz_topk) AS topk_recv_loaded;

-- topk aggregate memory stays bounded: after a warm-up, 4M more rows (every one a new
-- value, so every row evicts) raise this backend's peak RSS by less than 16 MB
CREATE FUNCTION vm_hwm_kb() RETURNS int8 LANGUAGE sql
    AS $$ SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmHWM:\s+(\d+)'))[1]::int8 $$;
SET max_parallel_workers_per_gather = 0;
SELECT topk_total(topk_add_agg(g, 10)) FROM generate_series(1, 500000) g;
SELECT vm_hwm_kb() AS hwm_before \gset
SELECT topk_total(topk_add_agg(g, 10)) FROM generate_series(1, 4000000) g;
SELECT vm_hwm_kb() - :hwm_before < 16384 AS memory_bounded;
-- and many groups, repeated, do not leak (each group's state is freed with its context)
SELECT sum(topk_total(t)) FROM (SELECT g % 1000 AS grp, topk_add_agg(g, 5) AS t FROM generate_series(1, 200000) g GROUP BY 1) s;
SELECT vm_hwm_kb() AS hwm_before \gset
DO $$ BEGIN FOR i IN 1..5 LOOP
  PERFORM sum(topk_total(t)) FROM (SELECT g % 1000 AS grp, topk_add_agg(g, 5) AS t FROM generate_series(1, 200000) g GROUP BY 1) s;
END LOOP; END $$;
SELECT vm_hwm_kb() - :hwm_before < 16384 AS groups_memory_bounded;
RESET max_parallel_workers_per_gather;

-- the server never restarted
SELECT pg_postmaster_start_time() = :'started' AS server_stayed_up;
DROP SCHEMA sk CASCADE;
\if :created_ext
DROP EXTENSION distributed_counter;
\endif
