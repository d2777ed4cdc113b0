#!/usr/bin/env bash
# Runs every benchmark, each comparing safeweights with the reference
# implementation in the same run, and rewrites the tables in BENCHMARKS.md.
# Takes about 40 minutes on 2 cores and needs about 10 GiB of free disk.
#
#   bench/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export SAFEWEIGHTS_PYTHON="$PWD/.venv/bin/python"
py=.venv/bin/python

echo "==> core library vs the safetensors crate"
bench/run_core.sh
echo "==> Python package vs the safetensors package and torch"
"$py" bench/python_bench.py --gib 1
echo "==> a 1 GiB training state through safeweights.save/load vs torch.save/torch.load"
"$py" bench/train_state_bench.py --size-mib 1024
echo "==> convert and scan vs torch.load + save_file and picklescan"
"$py" bench/pickle_bench.py --size-gib 2
echo "==> GGUF conversions vs gguf-py (1 GiB Q4_0/Q8_0 to safetensors, 1 GiB F32 to Q8_0)"
"$py" bench/gguf_bench.py --size-mib 1024
echo "==> durability: fsync on vs off"
"$py" bench/durability_bench.py --mib 64 256
echo "==> concurrency soak: one writer, six readers, 5 minutes (wrong bytes must be 0)"
"$py" bench/soak.py --seconds 300
echo "==> cold page cache, writes vs dd, 1M-tensor headers (drops the page cache: root)"
"$py" bench/cold_bench.py --gib 1
echo "==> CLI stats, diff and remote inspect vs torch and curl"
"$py" bench/cli_bench.py --size-gib 2
echo "==> a 1 GiB model from a local S3 server (s3s-fs) vs boto3 + the reference"
[ -x target/tools/bin/s3s-fs ] || cargo install s3s-fs@0.14.1 --locked --features binary --root target/tools
"$py" bench/remote_bench.py --size-mib 1024 --rounds 3
echo "==> torch.distributed.checkpoint, 4 ranks, 2 GiB: our storage layer vs torch's two"
"$py" bench/dcp_bench.py --size-mib 2048 --rounds 3
if "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "==> GPU loading vs the safetensors package and torch"
    "$py" bench/cuda_bench.py --gib 2
else
    echo "==> no GPU: the cuda section of BENCHMARKS.md is left as it is"
fi
