#!/usr/bin/env bash
# Usage: scripts/cluster.sh NAME PORT [extra postgresql.conf lines...]
# Creates (once) and (re)starts a PostgreSQL 15 cluster of our own with the extension
# preloaded, so the compaction worker runs. Idempotent. Prints nothing on success.
set -euo pipefail
name=$1 port=$2; shift 2
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "15 $name"; then
  pg_createcluster 15 "$name" -p "$port" >/dev/null
fi
conf=/etc/postgresql/15/$name/conf.d/distributed_counter.conf
{
  echo "port = $port"
  echo "shared_preload_libraries = 'distributed_counter'"
  echo "distributed_counter.database = 'postgres'"
  echo "max_worker_processes = 16"
  echo "max_parallel_workers_per_gather = 2"
  echo "max_connections = 200"
  echo "wal_level = logical"
  echo "max_replication_slots = 10"
  echo "max_wal_senders = 10"
  echo "listen_addresses = 'localhost'"
  echo "fsync = on"
  for line in "$@"; do echo "$line"; done
} > "$conf"
chown postgres:postgres "$conf"
# Local TCP connections as postgres without a password (loopback only).
hba=/etc/postgresql/15/$name/pg_hba.conf
grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust' "$hba"
# Close inherited descriptors above stderr: a caller may hold a flock(1) lock on one,
# and a daemonised postmaster must not keep it forever.
pg_ctlcluster 15 "$name" stop -m fast >/dev/null 2>&1 9>&- 8>&- 7>&- 6>&- 5>&- 4>&- 3>&- || true
pg_ctlcluster 15 "$name" start 9>&- 8>&- 7>&- 6>&- 5>&- 4>&- 3>&-
