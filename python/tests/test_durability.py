"""Saves flush the file before the rename and the directory after it by
default, and skip both when told (issue 15). Counted with strace."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

STRACE = shutil.which("strace")
if STRACE is None and os.environ.get("SAFEWEIGHTS_REQUIRE_ALL") == "1":
    raise RuntimeError("strace is missing: run scripts/install-test-deps.sh (SAFEWEIGHTS_REQUIRE_ALL=1)")
pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is missing: run scripts/install-test-deps.sh")

SAVE = textwrap.dedent(
    """
    import sys
    import numpy as np
    from safeweights.numpy import save_file
    from safeweights._safeweights_rust import serialize_sharded
    durable = sys.argv[3] == "durable"
    if sys.argv[2] == "file":
        save_file({"w": np.zeros(1000, dtype=np.float32)}, sys.argv[1], durable=durable)
    else:
        from safeweights import TensorSpec
        data = np.zeros(4096, dtype=np.uint8)
        one = TensorSpec(dtype="uint8", shape=[4096], data_ptr=data.ctypes.data, data_len=4096)
        state = {f"w{i}": one for i in range(3)}
        serialize_sharded(state, sys.argv[1], 4096, durable=durable)
    """
)


def fsyncs(tmp_path, kind: str, mode: str) -> int:
    trace = tmp_path / f"trace-{kind}-{mode}"
    target = tmp_path / f"{kind}-{mode}"
    if kind == "file":
        target = target.with_suffix(".safetensors")
    subprocess.run(
        [STRACE, "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(trace), sys.executable, "-c", SAVE, str(target), kind, mode],
        check=True,
    )
    return sum("fsync(" in line or "fdatasync(" in line for line in trace.read_text().splitlines())


def test_save_file_flushes_file_and_directory_unless_told_not_to(tmp_path):
    assert fsyncs(tmp_path, "file", "durable") == 2
    assert fsyncs(tmp_path, "file", "fast") == 0


def test_a_sharded_save_flushes_every_file_and_the_directory(tmp_path):
    # Three shards and the index: each file, and the directory after each rename.
    assert fsyncs(tmp_path, "shards", "durable") >= 8
    assert fsyncs(tmp_path, "shards", "fast") == 0
