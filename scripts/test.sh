#!/usr/bin/env bash
# The test suite, by layer. `./scripts/test.sh` (= `all`) is README's second command and
# what .ci/run calls; docs/DEVELOPING.md says what each layer covers.
#
#   [PG_MAJOR=15|18] scripts/test.sh [all|lint|core|fuzz|pgrx|pg18|regress|docs|scenarios|attack|citus|upgrade] ...
#
#   all        setup (scripts/setup.sh), then every layer below, in this order, on
#              PostgreSQL 18 (the pg18 layer) and 15 (the rest)
#   lint       cargo fmt --check; cargo clippy -D warnings (extension for 15 and 18, core)
#   core       cargo test of src/core: unit, property and golden tests, no PostgreSQL
#   fuzz       15 s of coverage-guided fuzzing per core decoder/parser (scripts/fuzz.sh)
#   pg18       pgrx, regress, docs, scenarios, attack and upgrade on PostgreSQL 18
#   pgrx       #[pg_test]s inside a pgrx-managed PostgreSQL (installs the debug build)
#   regress    pg_regress files in pg_test/ against a preloaded cluster of our own
#   docs       the README's SQL blocks run in order on the demo data, outputs checked
#              (scripts/doc_test.sh)
#   scenarios  scripts/tests/*.sh: concurrency, faults, crashes, multi-node replication
#   attack     hostile input (scripts/attack_sql.sh) and privilege attacks
#              (scripts/security_attacks.sh)
#   citus      a Citus cluster of three PostgreSQL 15 servers (Citus built from
#              ../shared/vendor; skipped with one line where that is absent):
#              aggregates partially aggregated on the workers (scripts/citus_test.sh),
#              counters across nodes with fault rounds (scripts/citus_counters_test.sh)
#   upgrade    build every earlier release (scripts/releases.tsv), store every type with
#              it, ALTER EXTENSION ... UPDATE to this build, check (scripts/upgrade_test.sh)
#
# pgrx, regress, docs, scenarios and attack run on the PostgreSQL of PG_MAJOR (15 unless set;
# scripts/lib/pg.sh). Only `all` runs setup; the single layers assume it ran once.
# regress, scenarios and attack use the build that `pgrx` (or `cargo pgrx install`)
# installed last into that PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1;34m[test]\033[0m %s\n' "$*"; }

layer_lint() {
  log "lint: cargo fmt --check; cargo clippy -- -D warnings"
  cargo fmt --all -- --check
  cargo clippy -q --features pg15 -- -D warnings
  cargo clippy -q --no-default-features --features pg18 -- -D warnings
  cargo clippy -q -p distributed_counter_core --all-targets -- -D warnings
}
layer_core() {
  log "core: cargo test -p distributed_counter_core"
  cargo test -q -p distributed_counter_core
}
layer_fuzz() {
  # Coverage-guided fuzzing of every decoder / text parser in src/core (stable Rust,
  # cargo-fuzz --sanitizer none; installs cargo-fuzz if missing). ~2-4 minutes.
  log "fuzz: scripts/fuzz.sh 15"
  ./scripts/fuzz.sh 15
}
layer_pgrx() {
  local major=${PG_MAJOR:-15} data
  log "pgrx: cargo pgrx test pg$major"
  data=/var/tmp/distributed_counter-pgrx$([ "$major" = 15 ] || echo "$major")
  install -d -o postgres -g postgres "$data"
  # One test at a time: each #[pg_test] is one transaction held open to its end, and
  # tests that create the same counter name and take the compaction lock would
  # otherwise wait on each other's uncommitted rows and locks (deadlocks).
  RUST_TEST_THREADS=1 cargo pgrx test "pg$major" --runas postgres --pgdata "$data"
}
layer_regress() {
  log "regress: pg_regress against a preloaded PostgreSQL ${PG_MAJOR:-15} cluster"
  ./scripts/regress.sh
}
layer_docs() {
  log "docs: the README's SQL blocks, in order, on the demo data (PostgreSQL ${PG_MAJOR:-15}; scripts/doc_test.sh)"
  ./scripts/doc_test.sh README.md
}
layer_scenarios() {
  local t
  for t in scripts/tests/*.sh; do
    [ -e "$t" ] || continue
    log "scenario (PostgreSQL ${PG_MAJOR:-15}): $t"
    bash "$t"
  done
}
layer_attack() {
  log "attack (PostgreSQL ${PG_MAJOR:-15}): 2,000 random/mutated inputs per type and path + resource attacks (scripts/attack_sql.sh)"
  ./scripts/attack_sql.sh 2000
  log "attack (PostgreSQL ${PG_MAJOR:-15}): privilege attacks as unprivileged roles (scripts/security_attacks.sh)"
  ./scripts/security_attacks.sh
}
# The server layers again on PostgreSQL 18 (the wheel scripts/setup.sh installs).
layer_pg18() {
  (export PG_MAJOR=18; for l in pgrx regress docs scenarios attack upgrade; do "layer_$l"; done)
}

layer_citus() {
  log "citus: aggregates on a Citus cluster (scripts/citus_test.sh)"
  ./scripts/citus_test.sh
  log "citus: sharded counters on a Citus cluster (scripts/citus_counters_test.sh)"
  ./scripts/citus_counters_test.sh
}

layer_upgrade() {
  log "upgrade: from every earlier release to this build (scripts/upgrade_test.sh)"
  ./scripts/upgrade_test.sh
}

layers=("$@")
[ ${#layers[@]} -gt 0 ] || layers=(all)
for layer in "${layers[@]}"; do
  case $layer in
    all)
      ./scripts/setup.sh
      for l in lint core fuzz pg18; do "layer_$l"; done
      (export PG_MAJOR=15; for l in pgrx regress docs scenarios attack citus upgrade; do "layer_$l"; done)
      log "all tests passed (PostgreSQL 18 and 15)" ;;
    lint|core|fuzz|pgrx|pg18|regress|docs|scenarios|attack|citus|upgrade) "layer_$layer" ;;
    *) echo "usage: scripts/test.sh [all|lint|core|fuzz|pgrx|pg18|regress|docs|scenarios|attack|citus|upgrade] ..." >&2; exit 2 ;;
  esac
done
