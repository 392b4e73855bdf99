#!/usr/bin/env bash
# Multi-node convergence of pncounter/gcounter tables under full-mesh bidirectional
# logical replication (no origin filter), using crdt_merge_trigger() and
# crdt_insert_merge_trigger() as in README.md ("CRDT counters").
#
# Three clusters of our own on loopback ports (default 5521-5523) in /var/tmp. Every node
# runs several concurrent psql clients that increment and decrement the same keys, all
# keys being new (so the first inserts of a key race on several nodes at once); one
# subscription is disabled for a while and re-enabled (a partition). After the workload,
# the script polls until the three nodes hold identical rows (timeout), prints the time
# that took, and checks every value against the net counts the clients made. The clusters
# are always torn down (trap). Exit status 0 = pass.
#
# Needs: root (runs PostgreSQL as postgres), the extension installed into the PostgreSQL
# of PG_MAJOR (scripts/lib/pg.sh; cargo pgrx test / install). Run it under the shared lock:
#   flock /tmp/distributed_counter.pg.lock scripts/tests/crdt_multinode.sh
# Env: CRDT_MN_PORT (first port, default 5521), CRDT_MN_CLIENTS (per node, default 3),
#      CRDT_MN_OPS (per client, default 500), CRDT_MN_KEYS (default 12),
#      CRDT_MN_TIMEOUT (convergence timeout in s, default 120).
set -euo pipefail
. "$(dirname "$0")/../lib/pg.sh"
BIN=$PG_BIN
PORT0=${CRDT_MN_PORT:-5521}
CLIENTS=${CRDT_MN_CLIENTS:-3}
OPS=${CRDT_MN_OPS:-500}
KEYS=${CRDT_MN_KEYS:-12}
TIMEOUT=${CRDT_MN_TIMEOUT:-120}
NODES=(1 2 3)
BASE=$(mktemp -d /var/tmp/dc_crdt_multinode.XXXXXX)
chown postgres:postgres "$BASE"

port() { echo $((PORT0 + $1 - 1)); }
as_pg() { runuser -u postgres -- "$@"; }
psqln() { # psqln NODE [psql args...]
  local n=$1; shift
  as_pg env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(port "$n")" -d postgres "$@"
}
log() { printf '[crdt_multinode] %s\n' "$*"; }

teardown() {
  local rc=$?
  # stop background clients we started, by pid
  for pid in ${CLIENT_PIDS[@]+"${CLIENT_PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for n in "${NODES[@]}"; do
    if [ -f "$BASE/node$n/postmaster.pid" ]; then
      as_pg "$BIN/pg_ctl" -D "$BASE/node$n" stop -m immediate >/dev/null 2>&1 || true
    fi
  done
  if [ $rc -ne 0 ]; then
    for n in "${NODES[@]}"; do
      [ -f "$BASE/node$n.log" ] && { echo "--- node$n.log (errors)"; grep -E 'ERROR|FATAL|PANIC' "$BASE/node$n.log" | tail -20 || true; }
    done
  fi
  rm -rf "$BASE"
  exit $rc
}
CLIENT_PIDS=()
trap teardown EXIT
trap 'exit 130' INT TERM

# ---- clusters ------------------------------------------------------------------------------
for n in "${NODES[@]}"; do
  p=$(port "$n")
  if as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$p"; then
    log "port $p is already in use"; exit 1
  fi
  as_pg "$BIN/initdb" -D "$BASE/node$n" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  cat >> "$BASE/node$n/postgresql.conf" <<EOF
port = $p
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_logical_replication_workers = 8
max_worker_processes = 16
max_connections = 50
fsync = off
synchronous_commit = off
wal_retrieve_retry_interval = 1s
distributed_counter.node_id = 'node$n'
# Preloaded because loading the library after startup currently fails (it defines a
# PGC_POSTMASTER GUC in _PG_init); the compaction worker has nothing to do here.
shared_preload_libraries = 'distributed_counter'
distributed_counter.worker_enabled = off
EOF
  as_pg "$BIN/pg_ctl" -D "$BASE/node$n" -l "$BASE/node$n.log" -w start >/dev/null
done

# Identical schemas first, then the mesh (copy_data = false: the tables are empty).
for n in "${NODES[@]}"; do
  psqln "$n" <<'SQL'
CREATE EXTENSION distributed_counter;
CREATE TABLE t (k text PRIMARY KEY, c pncounter NOT NULL DEFAULT '{}', g gcounter NOT NULL DEFAULT '{}');
CREATE TRIGGER crdt_merge BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION crdt_merge_trigger();
CREATE TRIGGER crdt_insert BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION crdt_insert_merge_trigger();
ALTER TABLE t ENABLE ALWAYS TRIGGER crdt_merge;
ALTER TABLE t ENABLE ALWAYS TRIGGER crdt_insert;
CREATE PUBLICATION crdt_pub FOR TABLE t;
SQL
done
for n in "${NODES[@]}"; do
  for m in "${NODES[@]}"; do
    [ "$n" = "$m" ] && continue
    psqln "$n" -c "CREATE SUBSCRIPTION sub_${n}_from_${m} CONNECTION 'host=127.0.0.1 port=$(port "$m") dbname=postgres user=postgres' PUBLICATION crdt_pub WITH (copy_data = false)"
  done
done
# wait until every subscription's apply worker is streaming
deadline=$((SECONDS + 30))
for n in "${NODES[@]}"; do
  until [ "$(psqln "$n" -Atc "SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL AND relid IS NULL")" = 2 ]; do
    [ $SECONDS -lt $deadline ] || { log "subscriptions of node$n did not start"; exit 1; }
    sleep 0.2
  done
done
log "3 nodes, full mesh of 6 subscriptions up (ports $(port 1)-$(port 3))"

# ---- workload ------------------------------------------------------------------------------
# One SQL script per client; the generator records the net amounts per key.
python3 - "$BASE" "$CLIENTS" "$OPS" "$KEYS" <<'PY'
import json, random, sys
base, clients, ops, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(20240501)
net = {f"k{i}": 0 for i in range(keys)}
incs = {f"k{i}": 0 for i in range(keys)}
per_node = {n: [0, 0] for n in (1, 2, 3)}
for node in (1, 2, 3):
    for client in range(clients):
        seen = set()
        lines = []
        for _ in range(ops):
            k = f"k{rng.randrange(keys)}"
            n = rng.randint(1, 5)
            if k not in seen:
                # First use of the key by this client: create the row (a no-op merge when it
                # exists here already or arrives later by replication), then count on it.
                lines.append(f"INSERT INTO t (k) VALUES ('{k}');")
                seen.add(k)
            if rng.random() < 0.7:
                lines.append(f"UPDATE t SET c = pncounter_increment(c, {n}), g = gcounter_increment(g, {n}) WHERE k = '{k}';")
                net[k] += n
                incs[k] += n
                per_node[node][0] += n
            else:
                lines.append(f"UPDATE t SET c = pncounter_decrement(c, {n}) WHERE k = '{k}';")
                net[k] -= n
                per_node[node][1] += n
        with open(f"{base}/client_{node}_{client}.sql", "w") as f:
            f.write("\n".join(lines) + "\n")
with open(f"{base}/expected.txt", "w") as f:
    for k in sorted(net):
        f.write(f"{k}|{net[k]}|{incs[k]}\n")
with open(f"{base}/expected_nodes.txt", "w") as f:
    for n in (1, 2, 3):
        f.write(f"node{n}|{per_node[n][0]}|{per_node[n][1]}\n")
PY
chown postgres:postgres "$BASE"/*.sql "$BASE"/expected*.txt

log "workload: ${CLIENTS} clients x ${OPS} ops on each node, ${KEYS} new keys"
start=$SECONDS
for n in "${NODES[@]}"; do
  for ((c = 0; c < CLIENTS; c++)); do
    psqln "$n" -f "$BASE/client_${n}_${c}.sql" >"$BASE/client_${n}_${c}.out" 2>&1 &
    CLIENT_PIDS+=($!)
  done
done
# A partition while the clients run: node3 stops receiving from node1 directly.
sleep 1
psqln 3 -c "ALTER SUBSCRIPTION sub_3_from_1 DISABLE"
log "partition: sub_3_from_1 disabled"
sleep 4
psqln 3 -c "ALTER SUBSCRIPTION sub_3_from_1 ENABLE"
log "partition healed: sub_3_from_1 enabled"
fail=0
for pid in "${CLIENT_PIDS[@]}"; do wait "$pid" || fail=1; done
CLIENT_PIDS=()
if [ $fail -ne 0 ]; then
  log "a client failed:"; cat "$BASE"/client_*.out | head -20; exit 1
fi
log "clients done in $((SECONDS - start)) s"

# ---- convergence ---------------------------------------------------------------------------
state() { psqln "$1" -Atc "SELECT coalesce(string_agg(k || '=' || c::text || '/' || g::text, ';' ORDER BY k), '') FROM t"; }
t0=$(date +%s.%N)
deadline=$((SECONDS + TIMEOUT))
while :; do
  s1=$(state 1); s2=$(state 2); s3=$(state 3)
  if [ -n "$s1" ] && [ "$s1" = "$s2" ] && [ "$s2" = "$s3" ]; then break; fi
  if [ $SECONDS -ge $deadline ]; then
    log "FAIL: nodes did not converge within ${TIMEOUT} s"
    for n in "${NODES[@]}"; do echo "node$n: $(psqln "$n" -Atc "SELECT string_agg(k || '=' || pncounter_value(c), ' ' ORDER BY k) FROM t")"; done
    exit 1
  fi
  sleep 0.2
done
t1=$(date +%s.%N)
converge=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
log "converged: all 3 nodes identical ${converge} s after the workload ended"

# ---- values --------------------------------------------------------------------------------
actual=$(psqln 1 -Atc "SELECT string_agg(k || '|' || pncounter_value(c) || '|' || gcounter_value(g), E'\n' ORDER BY k) FROM t")
expected=$(cat "$BASE/expected.txt")
if [ "$actual" != "$expected" ]; then
  log "FAIL: values differ from the net counts made"
  diff <(echo "$expected") <(echo "$actual") || true
  exit 1
fi
# each node's entries hold exactly the increments / decrements its own clients made
actual_nodes=$(psqln 1 -Atc "SELECT string_agg(node || '|' || i || '|' || d, E'\n' ORDER BY node) FROM (SELECT e.node, sum(e.increments) i, sum(e.decrements) d FROM t, pncounter_entries(c) e GROUP BY e.node) s")
if [ "$actual_nodes" != "$(cat "$BASE/expected_nodes.txt")" ]; then
  log "FAIL: per-node entries differ from what each node counted"
  diff <(cat "$BASE/expected_nodes.txt") <(echo "$actual_nodes") || true
  exit 1
fi
# no echo loop: once converged, no node rewrites a row any more (row versions stay put)
versions() { psqln "$1" -Atc "SELECT string_agg(k || ':' || xmin::text || ':' || ctid::text, ',' ORDER BY k) FROM t"; }
v_before="$(versions 1) $(versions 2) $(versions 3)"
sleep 3
v_after="$(versions 1) $(versions 2) $(versions 3)"
[ "$v_before" = "$v_after" ] || { log "FAIL: rows still being rewritten after convergence (echo loop?)"; exit 1; }
# no apply worker hit an error (e.g. a unique violation on a racing first insert)
if grep -E 'ERROR|FATAL' "$BASE"/node*.log | grep -v 'terminating logical replication worker due to administrator command' >/dev/null; then
  log "FAIL: errors in the server logs:"; grep -E 'ERROR|FATAL' "$BASE"/node*.log | head -20; exit 1
fi
# ---- counter_add's per-backend counter cache follows replicated registry changes ----------
# node2 subscribes to node1's counter_registry. One node2 session (dblink 's') caches a
# counter; node1 changes its shard count, then drops it. The apply worker fires the
# registry's row trigger (ENABLE ALWAYS), so that session sees each change on its next add.
psqln 1 -c "CREATE PUBLICATION reg_pub FOR TABLE counter_registry"
psqln 2 -c "CREATE SUBSCRIPTION reg_sub CONNECTION 'host=127.0.0.1 port=$(port 1) dbname=postgres user=postgres' PUBLICATION reg_pub"
psqln 2 <<SQL >/dev/null
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('s', 'host=127.0.0.1 port=$(port 2) dbname=postgres user=postgres');
SELECT dblink_connect('n1', 'host=127.0.0.1 port=$(port 1) dbname=postgres user=postgres');
CREATE FUNCTION pg_temp.wait_for(cond text) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE ok bool;
BEGIN
  FOR i IN 1..150 LOOP
    EXECUTE 'SELECT ' || cond INTO ok;
    IF ok THEN RETURN; END IF;
    PERFORM pg_sleep(0.2);
  END LOOP;
  RAISE EXCEPTION 'node2 never saw: %', cond;
END \$\$;
CREATE FUNCTION pg_temp.add_in_s(delta int8) RETURNS text LANGUAGE sql AS
  \$\$ SELECT x FROM dblink('s', format('SELECT counter_add(%L, %L, %s)::text', 'lr', 'k', delta)) t(x text) \$\$;
SELECT x FROM dblink('n1', \$q\$SELECT 'ok' FROM (SELECT counter_create('lr', 1)) s\$q\$) t(x text);
SELECT pg_temp.wait_for(\$q\$EXISTS (SELECT FROM counter_registry WHERE name = 'lr')\$q\$);
SELECT pg_temp.add_in_s(1);                                    -- cached: 1 shard
SELECT dblink_exec('n1', \$q\$UPDATE counter_registry SET shards = 1024 WHERE name = 'lr'\$q\$);
SELECT pg_temp.wait_for(\$q\$(SELECT shards FROM counter_registry WHERE name = 'lr') = 1024\$q\$);
SELECT pg_temp.add_in_s(3);
DO \$\$ BEGIN
  IF (SELECT p.shard FROM counter_pending p JOIN counter_registry r ON r.id = p.counter_id
      WHERE r.name = 'lr' AND p.delta = 3)
     IS DISTINCT FROM (SELECT x::int FROM dblink('s', 'SELECT pg_backend_pid()::text') t(x text)) % 1024 THEN
    RAISE EXCEPTION 'the add after the replicated shard change used the cached shard count';
  END IF;
END \$\$;
SELECT x FROM dblink('n1', \$q\$SELECT 'ok' FROM (SELECT counter_drop('lr')) s\$q\$) t(x text);
SELECT pg_temp.wait_for(\$q\$NOT EXISTS (SELECT FROM counter_registry WHERE name = 'lr')\$q\$);
DO \$\$ BEGIN
  PERFORM pg_temp.add_in_s(1);
  RAISE EXCEPTION 'counter_add on node2 still wrote to counter lr after node1 dropped it';
EXCEPTION WHEN undefined_object THEN NULL;
END \$\$;
SQL
log "counter cache on node2 followed replicated registry changes (shard count, drop)"

total=$(awk -F'|' '{s += $2} END {print s}' "$BASE/expected.txt")
log "PASS: ${KEYS} keys identical on 3 nodes, every value = net count (sum ${total}); converged in ${converge} s"
echo "CONVERGE_SECONDS=${converge}"
