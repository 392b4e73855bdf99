-- The extension in a schema whose name needs quoting ("Dc Ext"): the install script, the
-- typed aggregates, typed_aggregates(), counters and counter_stats all work there.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS distributed_counter CASCADE;
RESET client_min_messages;
CREATE SCHEMA "Dc Ext";
CREATE EXTENSION distributed_counter SCHEMA "Dc Ext";
SET search_path = public, "Dc Ext";
SELECT approx_count_distinct(g) FROM generate_series(1, 100) g;
SELECT cms_count(cms_add_agg(g::text), '5'::text) FROM generate_series(1, 10) g;
SELECT topk_total(topk_add_agg(g % 3, 2)) FROM generate_series(1, 30) g;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
SELECT typed_aggregates('mood');
SELECT approx_count_distinct(m) FROM unnest(enum_range(NULL::mood)) m;
SELECT counter_create('c');
SELECT counter_add('c', 'k', 2), counter_add('c', 'k', 3, 'req-1'), counter_add('c', 'k', 3, 'req-1');
SELECT counter_value('c', 'k');
SELECT counter_compact() >= 2 AS compacted;
SELECT counter_value('c', 'k');
SELECT name, keys, pending_rows FROM counter_stats;
SELECT counter_distribute();  -- 55000: no Citus here
RESET search_path;
DROP EXTENSION distributed_counter CASCADE;
DROP TYPE mood;
DROP SCHEMA "Dc Ext";
