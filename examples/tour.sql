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

-- Size: small sets are tiny (sparse), big ones are 2^p bytes
SELECT pg_column_size(hll_add_agg(hll_hash_integer(g))) AS ten_values_bytes,
       hll_print(hll_add_agg(hll_hash_integer(g))) FROM generate_series(1, 10) g;
SELECT hll_print(visitors) AS ours, pg_column_size(visitors) AS our_bytes
FROM daily_visitors d WHERE day = current_date - 1;

-- Incremental adds and the operators
SELECT # (hll_empty() || hll_hash_text('alice') || hll_hash_text('bob') || hll_hash_text('alice')) AS two;

-- Frequencies: how often was a page viewed this month? (never below the truth)
SELECT cms_count(cms_union_agg(page_freq), '/page/0'::text) AS approx,
       (SELECT count(*) FROM page_views WHERE page = '/page/0') AS exact
FROM daily_pages;

-- Heavy hitters over the month, merged from daily top-k summaries
SELECT * FROM topk_list((SELECT topk_union_agg(top_pages) FROM daily_pages)) LIMIT 5;

-- Exact hot-key counters: transactional adds, idempotent retries, batch reads
SELECT counter_add('likes', 'post:1', 1, 'request-123') AS first_try,
       counter_add('likes', 'post:1', 1, 'request-123') AS retry;
SELECT * FROM counter_values('likes', ARRAY['post:1', 'post:2', 'post:3']);
SELECT counter_compact('likes') AS rows_folded;
SELECT name, shards, keys, pending_rows FROM counter_stats;

-- Time windows and leaderboards: hourly buckets (UTC-aligned), exact with pending rows
SELECT counter_window('page_hits_hourly', '/page/0', '6 hours') AS last_6_hours,
       (SELECT count(*) FROM page_views
         WHERE page = '/page/0'
           AND date_trunc('hour', viewed_at AT TIME ZONE 'UTC')
               > date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '6 hours') AS exact;
SELECT * FROM counter_series('page_hits_hourly', '/page/0', now() - interval '5 hours', now());
SELECT * FROM counter_top('page_hits_hourly', 5, width => '1 day');

-- Rate limiting: 5 requests a second per API key, bursts of 3; the 4th call in a burst waits
SELECT n, (r).allowed, (r).remaining, (r).retry_after
FROM (SELECT n, rate_limit('api:alice', 5, '1 second', 3) AS r FROM generate_series(1, 4) n) calls;

-- CRDT counters: increments from two regions merge to the same value everywhere
SELECT post, pncounter_value(views) FROM post_views ORDER BY post;
SELECT pncounter_value(pncounter_merge(
         pncounter_increment('{}'::pncounter, 5, 'eu-west'),
         pncounter_decrement('{}'::pncounter, 2, 'us-east'))) AS merged;
