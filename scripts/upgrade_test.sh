#!/usr/bin/env bash
# Upgrade test: for every earlier release listed in scripts/releases.tsv, build and
# install that release (a git worktree of its commit), store every type and create
# counters with it, then put this build back, run ALTER EXTENSION distributed_counter
# UPDATE and check that
#   - every stored value reads back byte for byte and gives the same answers,
#   - counters keep their values and keep counting (adds, request ids, the worker),
#   - the upgraded extension's objects are defined exactly as a fresh install's
#     (functions with their SET clauses, aggregates, triggers, views, indexes, columns).
# Expects this build installed (the pgrx layer or `cargo pgrx install` does that).
# Cluster dc_upgrade, port 5540, on the PostgreSQL of PG_MAJOR (scripts/lib/pg.sh); a
# release that cannot be built for that version is skipped. A release's build is kept in
# target/upgrade-<version> (target/upgrade-<version>-pg18 for 18).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/lib/pg.sh
PORT=5540
CLUSTER=dc_upgrade
LIBDIR=$($PG_CONFIG --pkglibdir)
EXTDIR=$($PG_CONFIG --sharedir)/extension
ROOT=$PWD
say() { printf '\033[1;34m[upgrade]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[upgrade] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }

current=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ -f "$LIBDIR/distributed_counter.so" ] && [ -f "$EXTDIR/distributed_counter--$current.sql" ] \
  || fail "this build ($current) is not installed: run the pgrx layer or cargo pgrx install first"
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "upgrade: skipped (no git history in this copy: earlier releases cannot be built)"; exit 0
fi

# This build's installed files, put back after each earlier release was installed.
SAVED=$(mktemp -d /tmp/dc_upgrade.XXXXXX)
WORKTREES=()
cleanup() {
  set +e
  cp "$SAVED/distributed_counter.so" "$LIBDIR/" 2>/dev/null
  cp "$SAVED"/distributed_counter.control "$SAVED"/distributed_counter--*.sql "$EXTDIR/" 2>/dev/null
  pg_cluster_stop "$CLUSTER"
  for w in "${WORKTREES[@]}"; do git worktree remove --force "$w" >/dev/null 2>&1; done
  rm -rf "$SAVED"
}
trap cleanup EXIT
cp "$LIBDIR/distributed_counter.so" "$SAVED/"
cp "$EXTDIR/distributed_counter.control" "$EXTDIR/distributed_counter--$current.sql" "$SAVED/"
shopt -s nullglob
upgrade_scripts=(sql/distributed_counter--*--*.sql)
shopt -u nullglob
[ ${#upgrade_scripts[@]} -eq 0 ] || cp "${upgrade_scripts[@]}" "$SAVED/"
restore_current() {
  # Exactly the repository's upgrade scripts: an installed one that sql/ no longer has
  # must not make the test pass.
  rm -f "$EXTDIR"/distributed_counter--*--*.sql
  cp "$SAVED/distributed_counter.so" "$LIBDIR/"
  cp "$SAVED"/distributed_counter.control "$SAVED"/distributed_counter--*.sql "$EXTDIR/"
}

q() { runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" "$@"; }

# Every object of the extension in its schema, as PostgreSQL prints its definition (one
# per line). (A build made by `cargo pgrx test` also carries a `tests` schema of test
# functions; those are not part of the extension's interface.)
fingerprint() {
  q -d "$1" <<'SQL'
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'distributed_counter'),
members AS (SELECT d.classid, d.objid FROM pg_depend d, ext
             WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT def FROM (
  SELECT regexp_replace(pg_get_functiondef(p.oid), '\s+', ' ', 'g') AS def
    FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
   WHERE p.prokind <> 'a' AND p.pronamespace = (SELECT extnamespace FROM pg_extension WHERE extname = 'distributed_counter')
  UNION ALL
  SELECT format('privileges %s: %s', p.oid::regprocedure, p.proacl)
    FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
   WHERE p.proacl IS NOT NULL
  UNION ALL
  SELECT format('aggregate %s: %s %s %s %s %s %s', p.oid::regprocedure, a.aggtransfn, a.aggfinalfn,
                a.aggcombinefn, a.aggtranstype::regtype, a.agginitval, p.proparallel)
    FROM pg_proc p JOIN pg_aggregate a ON a.aggfnoid = p.oid
    JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
  UNION ALL
  SELECT format('trigger %s %s', pg_get_triggerdef(t.oid), t.tgenabled)
    FROM pg_trigger t JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = t.tgrelid
   WHERE NOT t.tgisinternal
  UNION ALL
  SELECT format('relation %s %s %s %s', c.relname, c.relkind, c.reloptions,
                CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
    FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
  UNION ALL
  SELECT format('column %s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid))
    FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
  UNION ALL
  SELECT format('index %s', pg_get_indexdef(i.indexrelid))
    FROM pg_index i JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = i.indrelid
  UNION ALL
  SELECT format('operator %s', o.oid::regoperator) FROM pg_operator o
    JOIN members m ON m.classid = 'pg_operator'::regclass AND m.objid = o.oid
  UNION ALL
  SELECT format('type %s %s', t.oid::regtype, t.typstorage) FROM pg_type t
    JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
  UNION ALL
  SELECT format('cast %s -> %s %s', c.castsource::regtype, c.casttarget::regtype, c.castcontext)
    FROM pg_cast c JOIN members m ON m.classid = 'pg_cast'::regclass AND m.objid = c.oid
) s ORDER BY def;
SQL
}

# Values of every type and counters, stored by the old release, with their answers.
STORE_SQL=$(cat <<'SQL'
CREATE TABLE stored (id int PRIMARY KEY, h hll, h_sparse hll, hv hll_hashval, c cms, t topk,
                     g gcounter, pn pncounter);
INSERT INTO stored
SELECT 1,
       (SELECT hll_add_agg(hll_hash_integer(i)) FROM generate_series(1, 50000) i),
       (SELECT hll_add_agg(hll_hash_text('v' || i)) FROM generate_series(1, 40) i),
       hll_hash_bigint(42),
       (SELECT cms_add_agg(i % 100) FROM generate_series(1, 20000) i),
       (SELECT topk_add_agg(i % 37, 5) FROM generate_series(1, 5000) i),
       gcounter_increment(gcounter_increment(NULL, 5, 'a'), 7, 'b'),
       pncounter_decrement(pncounter_increment(NULL, 9, 'a'), 4, 'b');
CREATE TABLE answers AS
SELECT s.h::bytea AS h_bytes, s.h_sparse::bytea AS hs_bytes, s.c::bytea AS c_bytes, s.t::bytea AS t_bytes,
       s.g::text AS g_text, s.pn::text AS pn_text, s.hv::int8 AS hv,
       hll_cardinality(s.h) AS h_card, hll_cardinality(s.h_sparse) AS hs_card,
       hll_cardinality(s.h || s.h_sparse) AS union_card,
       cms_count(s.c, 7) AS c7, cms_total(s.c) AS c_total,
       (SELECT string_agg(value || ':' || count || ':' || error, ',' ORDER BY count DESC, value) FROM topk_list(s.t)) AS t_list,
       gcounter_value(s.g) AS g_value, pncounter_value(s.pn) AS pn_value
FROM stored s;
SELECT counter_create('likes', 8);
SELECT counter_add('likes', 'k' || (i % 10), 1) FROM generate_series(1, 1000) i;
SELECT counter_compact();
SELECT counter_add('likes', 'k' || (i % 10), 2) FROM generate_series(1, 100) i;
SELECT counter_add('likes', 'req', 5, 'request-1');
CREATE TABLE counter_answers AS
SELECT key, value FROM counter_values('likes', ARRAY(SELECT 'k' || i FROM generate_series(0, 9) i) || ARRAY['req']);
SQL
)

CHECK_SQL=$(cat <<'SQL'
SELECT count(*) FILTER (WHERE NOT ok) FROM (
  SELECT s.h::bytea = a.h_bytes AS ok FROM stored s, answers a UNION ALL
  SELECT s.h_sparse::bytea = a.hs_bytes FROM stored s, answers a UNION ALL
  SELECT s.c::bytea = a.c_bytes FROM stored s, answers a UNION ALL
  SELECT s.t::bytea = a.t_bytes FROM stored s, answers a UNION ALL
  SELECT s.g::text = a.g_text FROM stored s, answers a UNION ALL
  SELECT s.pn::text = a.pn_text FROM stored s, answers a UNION ALL
  SELECT s.hv::int8 = a.hv FROM stored s, answers a UNION ALL
  SELECT hll_cardinality(s.h) = a.h_card FROM stored s, answers a UNION ALL
  SELECT hll_cardinality(s.h_sparse) = a.hs_card FROM stored s, answers a UNION ALL
  SELECT hll_cardinality(s.h || s.h_sparse) = a.union_card FROM stored s, answers a UNION ALL
  SELECT cms_count(s.c, 7) = a.c7 FROM stored s, answers a UNION ALL
  SELECT cms_total(s.c) = a.c_total FROM stored s, answers a UNION ALL
  SELECT (SELECT string_agg(value || ':' || count || ':' || error, ',' ORDER BY count DESC, value) FROM topk_list(s.t)) = a.t_list
    FROM stored s, answers a UNION ALL
  SELECT gcounter_value(s.g) = a.g_value FROM stored s, answers a UNION ALL
  SELECT pncounter_value(s.pn) = a.pn_value FROM stored s, answers a UNION ALL
  SELECT s.h::text::hll = s.h FROM stored s UNION ALL
  -- hll values stored before format 2: converted by hll_compact, same answers; unions
  -- of old and new values agree
  SELECT hll_cardinality(hll_compact(s.h)) = a.h_card FROM stored s, answers a UNION ALL
  SELECT hll_cardinality(hll_compact(s.h_sparse)) = a.hs_card FROM stored s, answers a UNION ALL
  SELECT get_byte(hll_compact(s.h)::bytea, 0) = 2 FROM stored s UNION ALL
  SELECT hll_union(hll_compact(s.h), s.h_sparse) = hll_union(s.h, hll_compact(s.h_sparse))
    FROM stored s UNION ALL
  SELECT (SELECT hll_union_agg(x) FROM (VALUES (s.h), (s.h_sparse)) v(x)) = hll_compact(s.h || s.h_sparse)
    FROM stored s UNION ALL
  SELECT counter_value('likes', c.key) = c.value FROM counter_answers c
) checks;
SQL
)

tested=0
while read -r version commit; do
  case $version in ''|\#*) continue ;; esac
  [ "$version" = "$current" ] && continue
  say "release $version ($commit) -> $current"
  git cat-file -e "$commit^{commit}" 2>/dev/null \
    || { echo "upgrade: skipped $version (commit $commit is not in this clone's history)"; continue; }
  git show "$commit:Cargo.toml" | grep -q "^pg$PG_MAJOR = " \
    || { echo "upgrade: skipped $version (it cannot be built for PostgreSQL $PG_MAJOR)"; continue; }
  build_dir="$ROOT/target/upgrade-$version$([ "$PG_MAJOR" = 15 ] || echo "-pg$PG_MAJOR")"
  wt="$ROOT/target/upgrade-src-$version"
  git worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
  git worktree add --detach --force "$wt" "$commit" >/dev/null
  WORKTREES+=("$wt")
  say "building and installing $version into PostgreSQL $PG_MAJOR (${build_dir#"$ROOT/"})"
  (cd "$wt" && CARGO_TARGET_DIR="$build_dir" cargo pgrx install --no-default-features \
     --features "pg$PG_MAJOR" --pg-config "$PG_CONFIG" >"$SAVED/build-$version.log" 2>&1) \
    || { tail -30 "$SAVED/build-$version.log"; fail "building $version"; }
  pg_cluster_up "$CLUSTER" "$PORT" "distributed_counter.database = 'dc_upgrade'" \
    "distributed_counter.compact_interval = 200"
  q -d postgres -c "DROP DATABASE IF EXISTS dc_upgrade WITH (FORCE)" -c "DROP DATABASE IF EXISTS dc_fresh WITH (FORCE)" \
    -c "CREATE DATABASE dc_upgrade" -c "CREATE DATABASE dc_fresh"
  q -d dc_upgrade -c "CREATE EXTENSION distributed_counter VERSION '$version'" \
    -c "SET client_min_messages = warning" >/dev/null
  q -d dc_upgrade -c "SET client_min_messages = warning" -c "$STORE_SQL" >/dev/null
  got=$(q -d dc_upgrade -c "SELECT extversion FROM pg_extension WHERE extname = 'distributed_counter'")
  [ "$got" = "$version" ] || fail "created version $got, expected $version"

  say "installing $current and running ALTER EXTENSION distributed_counter UPDATE"
  restore_current
  pg_cluster_ctl "$CLUSTER" restart
  q -d dc_upgrade -c "ALTER EXTENSION distributed_counter UPDATE" \
    || fail "ALTER EXTENSION distributed_counter UPDATE from $version failed"
  got=$(q -d dc_upgrade -c "SELECT extversion FROM pg_extension WHERE extname = 'distributed_counter'")
  [ "$got" = "$current" ] || fail "after UPDATE the version is $got, expected $current"

  bad=$(q -d dc_upgrade -c "$CHECK_SQL")
  [ "$bad" = 0 ] || fail "$bad stored values or answers differ after the upgrade from $version"
  say "ok: every stored value reads back byte for byte with the same answers; counters unchanged"

  # Counters keep counting: adds (fast and request-id paths), dedupe memory, the worker.
  q -d dc_upgrade -c "SELECT counter_add('likes', 'k1', 10)" -c "SELECT counter_add('likes', 'new', 3, 'request-2')" >/dev/null
  dup=$(q -d dc_upgrade -c "SELECT counter_add('likes', 'req', 5, 'request-1')")
  [ "$dup" = f ] || fail "a request id stored by $version was counted again"
  want=$(( $(q -d dc_upgrade -c "SELECT value FROM counter_answers WHERE key = 'k1'") + 10 ))
  for _ in $(seq 1 100); do
    [ "$(q -d dc_upgrade -c "SELECT count(*) FROM counter_pending")" = 0 ] && break; sleep 0.2
  done
  [ "$(q -d dc_upgrade -c "SELECT count(*) FROM counter_pending")" = 0 ] || fail "the worker did not compact after the upgrade"
  [ "$(q -d dc_upgrade -c "SELECT counter_value('likes', 'k1')")" = "$want" ] || fail "k1 is not $want after the upgrade"
  [ "$(q -d dc_upgrade -c "SELECT counter_value('likes', 'new')")" = 3 ] || fail "a new key after the upgrade is not 3"
  say "ok: counters keep counting (adds, request ids remembered across the upgrade, worker compaction)"

  q -d dc_fresh -c "CREATE EXTENSION distributed_counter" >/dev/null
  fingerprint dc_upgrade > "$SAVED/upgraded.txt"
  fingerprint dc_fresh > "$SAVED/fresh.txt"
  if ! diff -u "$SAVED/fresh.txt" "$SAVED/upgraded.txt" > "$SAVED/schema.diff"; then
    head -60 "$SAVED/schema.diff"
    fail "the extension upgraded from $version differs from a fresh $current install (diff above: - fresh, + upgraded)"
  fi
  say "ok: the upgraded extension's $(wc -l < "$SAVED/fresh.txt") object definitions equal a fresh install's"
  tested=$((tested + 1))
done < scripts/releases.tsv
if [ "$tested" = 0 ]; then
  say "no earlier release could be installed on PostgreSQL $PG_MAJOR: no upgrade path to test"
else
  say "all $tested upgrade paths to $current passed on PostgreSQL $PG_MAJOR"
fi
