-- A short tour of distributed_counter (run by scripts/demo.sh).
SET search_path = public, dc;

-- Distinct counts: exact vs approx_count_distinct (one call, hashes inside)
SELECT count(DISTINCT user_id) AS exact, approx_count_distinct(user_id) AS approx FROM page_views;

-- Daily rollups merge: monthly uniques from 30 stored daily sketches, no rescan
SELECT round(# hll_union_agg(visitors)) AS monthly_uniques FROM daily_visitors;
SELECT day, round(# visitors) AS uniques FROM daily_visitors ORDER BY day LIMIT 5;

-- Rolling 7-day uniques with a window over the sketches
SELECT day, round(# hll_union_agg(visitors) OVER (ORDER BY day ROWS 6 PRECEDING)) AS uniques_7d
FROM daily_visitors ORDER BY day DESC LIMIT 3;

-- Error bars
SELECT round(estimate) AS estimate, round(lower) AS lower, round(upper) AS upper
FROM hll_cardinality_bounds((SELECT hll_union_agg(visitors) FROM daily_visitors), 0.95);

-- Size: small sets are tiny (sparse), big ones are 2^p bytes, next to postgresql-hll
SELECT pg_column_size(hll_add_agg(hll_hash_integer(g))) AS ten_values_bytes,
       hll_print(hll_add_agg(hll_hash_integer(g))) FROM generate_series(1, 10) g;
SELECT hll_print(visitors) AS ours, pg_column_size(visitors) AS our_bytes,
       (SELECT pg_column_size(phll.hll_add_agg(phll.hll_hash_bigint(user_id)))
          FROM page_views WHERE viewed_at::date = d.day) AS postgresql_hll_bytes
FROM daily_visitors d WHERE day = '2026-10-01';

-- Incremental adds and the operators
SELECT # (hll_empty() || hll_hash_text('alice') || hll_hash_text('bob') || hll_hash_text('alice')) AS two;
