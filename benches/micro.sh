#!/usr/bin/env bash
# The criterion micro-benches (wire codecs, master core, scan cost, state file) and the bytes per
# server (benches/memory.rs), written into docs/benchmarks.md between the micro markers: each
# figure as criterion measured it in this run, and as a ratio to a baseline measured in the same
# run (the machines here are noisy; absolute times vary).
#
#   benches/micro.sh            # about 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench-micro
mkdir -p "$OUT"
# The commit measured, for the report (benches/measured.py; the same as benches/common.sh writes).
{ git rev-parse --short HEAD
  git status --porcelain --untracked-files=no -- . ':!docs/benchmarks.md' | grep -q . && echo dirty
} >"$OUT/commit.txt" || true
rm -rf target/criterion/wire target/criterion/master target/criterion/scan target/criterion/state_file
cargo bench -q --bench wire -- --warm-up-time 1 --measurement-time 3 >"$OUT/wire.txt" 2>&1
cargo bench -q --bench master -- --warm-up-time 1 --measurement-time 3 >"$OUT/master.txt" 2>&1
cargo bench -q --bench state -- --warm-up-time 1 --measurement-time 3 >"$OUT/state.txt" 2>&1
cargo bench -q --bench memory >"$OUT/memory.md" 2>"$OUT/memory.err"
python3 benches/micro_report.py "$OUT"
