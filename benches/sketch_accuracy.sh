#!/usr/bin/env bash
# Accuracy of cms and topk on 10^7-event streams (Zipf s = 0.8, 1.1, 1.5 and uniform over
# 10^6 values), whole-stream and merged from 8 partitions, against exact counts.
# Pure Rust against the core crate (the SQL glue only converts arguments):
#   src/core/examples/sketch_accuracy.rs. Exits non-zero if a guarantee fails.
# Usage: benches/sketch_accuracy.sh [--events N]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-out
cargo run --quiet --release -p distributed_counter_core --example sketch_accuracy -- "$@" \
  | tee bench-out/sketch_accuracy.txt
