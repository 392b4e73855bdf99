#!/usr/bin/env bash
# The test suite, by layer. `./scripts/test.sh` (= `all`) is README's second command and
# what .ci/run calls; docs/DEVELOPING.md says what each layer covers.
#
#   scripts/test.sh [all|lint|core|fuzz|pgrx|pg18|regress|scenarios|attack|upgrade] ...
#
#   all        setup (scripts/setup.sh), then every layer below, in this order
#   lint       cargo fmt --check; cargo clippy -D warnings (extension for 15 and 18, core)
#   core       cargo test of src/core: unit, property and golden tests, no PostgreSQL
#   fuzz       15 s of coverage-guided fuzzing per core decoder/parser (scripts/fuzz.sh)
#   pgrx       #[pg_test]s inside a pgrx-managed PostgreSQL 15 (installs the debug build)
#   regress    pg_regress files in pg_test/ against a preloaded cluster of our own
#   scenarios  scripts/tests/*.sh: concurrency, faults, crashes, multi-node replication
#   attack     hostile input (scripts/attack_sql.sh) and privilege attacks
#              (scripts/security_attacks.sh)
#   pg18       the #[pg_test]s again, on PostgreSQL 18 (cargo pgrx test pg18)
#   upgrade    build every earlier release (scripts/releases.tsv), store every type with
#              it, ALTER EXTENSION ... UPDATE to this build, check (scripts/upgrade_test.sh)
#
# Only `all` runs setup; the single layers assume it ran once. regress, scenarios and
# attack use the build that `pgrx` (or `cargo pgrx install`) installed last.
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
  log "pgrx: cargo pgrx test pg15"
  local data=/var/tmp/distributed_counter-pgrx
  install -d -o postgres -g postgres "$data"
  cargo pgrx test pg15 --runas postgres --pgdata "$data"
}
layer_pg18() {
  log "pg18: cargo pgrx test pg18 (PostgreSQL 18 from scripts/setup.sh)"
  local data=/var/tmp/distributed_counter-pgrx18
  install -d -o postgres -g postgres "$data"
  cargo pgrx test pg18 --runas postgres --pgdata "$data"
}
layer_regress() {
  log "regress: pg_regress against a preloaded cluster"
  ./scripts/regress.sh
}
layer_scenarios() {
  local t
  for t in scripts/tests/*.sh; do
    [ -e "$t" ] || continue
    log "scenario: $t"
    bash "$t"
  done
}
layer_attack() {
  log "attack: 2,000 random/mutated inputs per type and path + resource attacks (scripts/attack_sql.sh)"
  ./scripts/attack_sql.sh 2000
  log "attack: privilege attacks as unprivileged roles (scripts/security_attacks.sh)"
  ./scripts/security_attacks.sh
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
      for l in lint core fuzz pg18 pgrx regress scenarios attack upgrade; do "layer_$l"; done
      log "all tests passed" ;;
    lint|core|fuzz|pgrx|pg18|regress|scenarios|attack|upgrade) "layer_$layer" ;;
    *) echo "usage: scripts/test.sh [all|lint|core|fuzz|pgrx|pg18|regress|scenarios|attack|upgrade] ..." >&2; exit 2 ;;
  esac
done
