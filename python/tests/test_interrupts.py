"""Ctrl-C during a Python save abandons it within a second: the temporary
file is removed, the destination is left as it was and KeyboardInterrupt
is raised (issue 15)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from safeweights.numpy import load_file, save_file

SAVER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from safeweights.numpy import save_file
    from safeweights._safeweights_rust import serialize_sharded
    big = np.ones(1 << 28, dtype=np.float32)  # 1 GiB
    print("ready", flush=True)
    try:
        if sys.argv[2] == "file":
            save_file({"w": big}, sys.argv[1])
        else:
            from safeweights import TensorSpec
            part = big[: 1 << 26]
            one = TensorSpec(dtype="float32", shape=[1 << 26], data_ptr=part.ctypes.data, data_len=part.nbytes)
            spec = {f"w{i}": one for i in range(4)}
            serialize_sharded(spec, sys.argv[1], 1 << 28, overwrite=True)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        sys.exit(7)
    print("finished", flush=True)
    """
)


def interrupt_save(target, kind: str, ready) -> float:
    child = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(target), kind], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while not ready():
        assert child.poll() is None, "the save finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 7, out
    interrupted_at = float(out.split()[1])
    return interrupted_at - sent


def temporaries(directory):
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_ctrl_c_abandons_save_file_within_a_second(tmp_path):
    path = tmp_path / "model.safetensors"
    old = {"w": np.arange(10, dtype=np.float32)}
    save_file(old, path)
    took = interrupt_save(path, "file", lambda: temporaries(tmp_path))
    assert took < 1.0
    assert temporaries(tmp_path) == []
    np.testing.assert_array_equal(load_file(path)["w"], old["w"])


def test_ctrl_c_abandons_a_sharded_save_and_its_written_shards(tmp_path):
    first = tmp_path / "model-00001-of-00004.safetensors"
    took = interrupt_save(tmp_path, "sharded", first.exists)
    assert took < 1.0
    assert os.listdir(tmp_path) == []
