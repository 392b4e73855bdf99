#!/usr/bin/env bash
# The whole test suite (README's second command; .ci/run calls exactly this):
#   1. core unit + property tests (plain cargo, no PostgreSQL), then a short
#      coverage-guided fuzz run of every core decoder and parser (scripts/fuzz.sh),
#   2. #[pg_test]s inside a pgrx-managed PostgreSQL 15,
#   3. pg_regress files in pg_test/ against a real preloaded cluster of our own
#      (parallel plans, dump/restore, COPY BINARY, bad input, the worker),
#   4. scenario scripts (concurrency, crashes, multi-node) in scripts/tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
./scripts/setup.sh

log() { printf '\033[1;34m[test]\033[0m %s\n' "$*"; }

log "core: cargo test -p distributed_counter_core"
cargo test -q -p distributed_counter_core

# Coverage-guided fuzzing of every decoder / text parser in src/core (stable Rust,
# cargo-fuzz --sanitizer none; installs cargo-fuzz if missing). ~2-4 minutes.
log "fuzz: scripts/fuzz.sh 15"
./scripts/fuzz.sh 15

log "pg_test: cargo pgrx test pg15"
PGRX_DATA=/var/tmp/distributed_counter-pgrx
install -d -o postgres -g postgres "$PGRX_DATA"
cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_DATA"

# pgrx test installed this build into the Debian server; regression runs use it.
log "regression: pg_regress against a preloaded cluster"
./scripts/regress.sh

for t in scripts/tests/*.sh; do
  [ -e "$t" ] || continue
  log "scenario: $t"
  bash "$t"
done
log "attack: 2,000 random/mutated inputs per type and path + resource attacks (scripts/attack_sql.sh)"
./scripts/attack_sql.sh 2000
log "all tests passed"
