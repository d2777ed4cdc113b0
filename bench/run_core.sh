#!/usr/bin/env bash
# Runs the core benchmarks (ours against the reference `safetensors` crate,
# in the same run) and writes their table into BENCHMARKS.md.
#
#   bench/run_core.sh [criterion filter]
#
# Environment: SAFEWEIGHTS_BENCH_MIB (default 1024) sets the data size of
# the write and read benchmarks; SAFEWEIGHTS_BENCH_DIR where files are
# written (default: the system temporary directory); CARGO_TARGET_DIR as
# usual. Takes about 5 to 10 minutes on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
criterion_dir="$CARGO_TARGET_DIR/criterion"
# Stale results of a previous run must not end up in the table.
rm -rf "$criterion_dir"/{header_parse,validate,serialize_memory,serialize_file,read_warm_mmap,read_warm_owned}
cargo bench -p safeweights-bench --bench core -- "$@"
python="${SAFEWEIGHTS_PYTHON:-python3}"
"$python" bench/report_core.py "$criterion_dir" BENCHMARKS.md
