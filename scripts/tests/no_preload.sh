#!/usr/bin/env bash
# docs/SQL.md: everything but the worker and rate_limit() works without
# shared_preload_libraries. A cluster that does not preload the library creates the
# extension and uses every type; rate_limit() says how to preload it (55000).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/pg.sh
PORT=5520
pg_cluster_up dc_nopreload "$PORT" "shared_preload_libraries = ''"
trap 'pg_cluster_stop dc_nopreload' EXIT
q() { runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -h localhost -p "$PORT" -d postgres "$@"; }
q -c "DROP EXTENSION IF EXISTS distributed_counter CASCADE" -c "CREATE EXTENSION distributed_counter"
[ "$(q -c "SHOW shared_preload_libraries")" = "" ] || { echo "library is preloaded"; exit 1; }
got=$(q -c "SELECT approx_count_distinct(g) FROM generate_series(1, 50) g")
[ "$got" = 50 ] || { echo "approx_count_distinct gave $got"; exit 1; }
got=$(q -c "SELECT round(# hll_union_agg(h))::int FROM (SELECT hll_add_agg(hll_hash_integer(g)) h FROM generate_series(1, 60) g GROUP BY g % 3) s")
[ "$got" = 60 ] || { echo "hll_union_agg gave $got"; exit 1; }
q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'distributed_counter compactor'" | grep -qx 0
out=$(q -v VERBOSITY=verbose -c "SELECT * FROM rate_limit('k', 1, '1 second')" 2>&1 || true)
grep -q "ERROR:  55000" <<<"$out" && grep -q "shared_preload_libraries" <<<"$out" \
  || { echo "rate_limit without the preloaded library: $out"; exit 1; }
q -c "DROP EXTENSION distributed_counter"
echo "no_preload: extension works without shared_preload_libraries"
