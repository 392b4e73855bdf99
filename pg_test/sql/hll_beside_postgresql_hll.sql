-- Our hll beside postgresql-hll in one database: both types called hll coexist, each in
-- its own schema, and each schema's functions answer for its own type. scripts/regress.sh
-- runs this file only where postgresql-hll is installed (Debian's postgresql-15-hll).
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS distributed_counter CASCADE;
RESET client_min_messages;
CREATE SCHEMA dc;
CREATE EXTENSION distributed_counter SCHEMA dc;
CREATE SCHEMA phll;
CREATE EXTENSION hll SCHEMA phll;
SET search_path = public, dc;

SELECT format_type('dc.hll'::regtype, NULL), format_type('phll.hll'::regtype, NULL);
SELECT round(# hll_add_agg(hll_hash_integer(g))) AS ours,
       round(phll.hll_cardinality(phll.hll_add_agg(phll.hll_hash_integer(g))))::int8 AS theirs
FROM generate_series(1, 50) g;

RESET search_path;
DROP EXTENSION distributed_counter;
DROP EXTENSION hll;
DROP SCHEMA dc, phll;
