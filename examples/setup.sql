-- Sample data for the tour (scripts/demo.sh loads it into database dc_demo, and
-- scripts/doc_test.sh into a database of its own): page views by user over 30 days.
-- distributed_counter in schema dc (scripts/demo.sh adds postgresql-hll in schema phll
-- where it is installed: both have a type hll).
CREATE SCHEMA dc;
CREATE EXTENSION distributed_counter SCHEMA dc;
SELECT format('ALTER DATABASE %I SET search_path = public, dc', current_database()) \gexec
SET search_path = public, dc;

-- 2M page views over the last 30 days: 200k users, 500 pages, skewed (a few pages and
-- users are hot)
CREATE TABLE page_views (
    viewed_at timestamptz NOT NULL,
    user_id   int8 NOT NULL,
    page      text NOT NULL
);
SELECT setseed(0.5) \gset
INSERT INTO page_views
SELECT now() - (random() * 30) * interval '1 day',
       (200000 * power(random(), 2))::int8,
       '/page/' || (500 * power(random(), 3))::int
FROM generate_series(1, 2000000);
ANALYZE page_views;

-- the classic rollup: one sketch of visitors per day
CREATE TABLE daily_visitors AS
SELECT viewed_at::date AS day, hll_add_agg(hll_hash_bigint(user_id)) AS visitors
FROM page_views GROUP BY 1;

-- per-day frequency sketches of pages (count-min) and heavy hitters (top-k)
CREATE TABLE daily_pages AS
SELECT viewed_at::date AS day, cms_add_agg(page) AS page_freq, topk_add_agg(page, 10) AS top_pages
FROM page_views GROUP BY 1;

-- an exact hot-key counter: likes on posts
SELECT counter_create('likes') \gset
SELECT count(*) AS likes_added FROM (SELECT counter_add('likes', 'post:' || (1 + (g % 3)), 1) FROM generate_series(1, 3000) g) s;

-- page hits per hour, kept for 7 days (windows, series, leaderboards): the last 2 days
SELECT counter_create('page_hits_hourly', bucket => '1 hour', retention => '7 days') \gset
SELECT count(*) AS hits_added FROM (SELECT counter_add('page_hits_hourly', page, 1, NULL, viewed_at)
                                    FROM page_views WHERE viewed_at > now() - interval '2 days') s;

-- a CRDT counter per post, as two regions would keep it
CREATE TABLE post_views (post text PRIMARY KEY, views pncounter NOT NULL DEFAULT '{}');
INSERT INTO post_views VALUES ('post:1', pncounter_increment(NULL, 10, 'eu-west')),
                              ('post:2', pncounter_increment(NULL, 3, 'us-east'));
