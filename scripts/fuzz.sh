#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer) of every decoder and text parser in
# src/core; the targets and their properties are in fuzz/ (fuzz/src/lib.rs).
#
#   scripts/fuzz.sh [seconds_per_target] [target...]     default: 20 s, all targets
#   scripts/fuzz.sh 3600                                  a long run
#
# Works on stable Rust: `--sanitizer none` avoids the nightly-only -Zsanitizer flag;
# everything else cargo-fuzz passes (-Cpasses=sancov-module, -Cllvm-args=...,
# --cfg fuzzing) is stable. Rust itself is memory-safe, so without ASan we still catch
# panics, overflow (-a: debug assertions + overflow checks), timeouts and, through
# libFuzzer's limits, unbounded allocation (-malloc_limit_mb / -rss_limit_mb).
#
# The corpus grows in fuzz/corpus/<target>/ (gitignored) and starts from the committed
# seeds in fuzz/seeds/<target>/ (regenerate: cargo run --manifest-path fuzz/Cargo.toml
# --example gen_seeds). Crash inputs go to fuzz/artifacts/<target>/; reproduce one with
#   cargo fuzz run -s none -a <target> fuzz/artifacts/<target>/crash-...
# Exit status: non-zero if any target found a crash (or failed to build/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

secs="${1:-20}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(hll_decode cms_decode topk_decode gcounter_decode pncounter_decode gcounter_json pncounter_json hex_text)
fi

log() { printf '\033[1;34m[fuzz]\033[0m %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

flags=(--sanitizer none --debug-assertions)
log "building fuzz targets"
cargo fuzz build "${flags[@]}"

failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  out="fuzz/artifacts/$t.log"
  log "$t: ${secs}s"
  set +e
  cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=512 -malloc_limit_mb=256 \
    -print_final_stats=1 >"$out" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  crashes=$(grep -c 'Test unit written to' "$out" || true)
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes="?"   # failed without writing an input (build/run error): see the log
  fi
  line=$(printf '%-17s executions %10s  corpus %5s  crashes %s' "$t" "${execs:-?}" "$corpus" "$crashes")
  summary+=("$line")
  if [ "$rc" -ne 0 ]; then
    failed=1
    log "$t FAILED (exit $rc); log: $out"
    grep -E 'panicked|ERROR|Test unit written to|SUMMARY' "$out" | head -20 || true
  fi
done

log "summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  log "crashes found; inputs in fuzz/artifacts/<target>/"
  exit 1
fi
log "no crashes"
