# Sourced by the Citus tests (scripts/citus_test.sh, scripts/citus_counters_test.sh),
# after scripts/lib/pg.sh and with say/fail defined: builds Citus from ../shared/vendor
# (DC_SHARED_DIR overrides; exits 0 with one line where it is absent), and makes a fresh
# cluster of three PostgreSQL 15 servers on loopback: coordinator 5570, workers 5571 and
# 5572, both extensions on every node. q NODE [psql args] runs psql there.
if [ "$PG_MAJOR" != 15 ]; then
  echo "citus: skipped (the Citus tests run on PostgreSQL 15)"; exit 0
fi
SHARED=${DC_SHARED_DIR:-../shared}
if [ ! -f "$SHARED/vendor/build-citus.sh" ]; then
  echo "citus: skipped ($SHARED/vendor/build-citus.sh is absent: Citus cannot be built here)"; exit 0
fi
bash "$SHARED/vendor/build-citus.sh" "$PG_CONFIG" >/dev/null
pg_extension_installed || fail "distributed_counter is not installed into PostgreSQL 15 (run the pgrx layer)"

NODES=(coord w1 w2)
declare -A PORT=([coord]=5570 [w1]=5571 [w2]=5572)
citus_stop_all() { for n in "${NODES[@]}"; do pg_cluster_stop "dc_citus_$n"; done; }
# q NODE [psql args]: as postgres, database postgres, rows unaligned
q() {
  local n=$1; shift
  runuser -u postgres -- env PGOPTIONS="-c client_min_messages=warning" \
    psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[$n]}" -d postgres "$@"
}
# citus_cluster_up [postgresql.conf lines...]: the three nodes, afresh
citus_cluster_up() {
  local n
  for n in "${NODES[@]}"; do
    pg_cluster_stop "dc_citus_$n"
    rm -rf "$(pg_cluster_dir "dc_citus_$n")"
    pg_cluster_up "dc_citus_$n" "${PORT[$n]}" "shared_preload_libraries = 'citus,distributed_counter'" \
      "max_prepared_transactions = 100" "citus.node_conninfo = 'sslmode=prefer'" "$@"
  done
  for n in "${NODES[@]}"; do
    q "$n" -c "CREATE EXTENSION citus" -c "CREATE EXTENSION distributed_counter"
  done
  q coord -c "SELECT citus_set_coordinator_host('127.0.0.1', ${PORT[coord]})" \
    -c "SELECT citus_add_node('127.0.0.1', ${PORT[w1]})" -c "SELECT citus_add_node('127.0.0.1', ${PORT[w2]})" >/dev/null
  say "Citus $(q coord -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"): coordinator ${PORT[coord]}, workers ${PORT[w1]} and ${PORT[w2]}"
}
