#!/usr/bin/env bash
# Usage: [PG_MAJOR=15|18] scripts/cluster.sh NAME PORT [extra postgresql.conf lines...]
# Creates (once) and (re)starts a cluster of our own with the extension preloaded, so the
# compaction worker runs (scripts/lib/pg.sh, pg_cluster_up). Idempotent. Prints nothing
# on success.
set -euo pipefail
. "$(dirname "$0")/lib/pg.sh"
pg_cluster_up "$@"
