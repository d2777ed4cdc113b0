"""A full disk never costs the old file or checkpoint and leaves no
temporary file behind, for single files and sharded checkpoints (issue 15).
The disk is a 1 MiB tmpfs mounted by the test (needs root)."""

import errno
import os
import subprocess

import numpy as np
import pytest

from safeweights import TensorSpec, safe_open
from safeweights.numpy import load_file, save_file
from safeweights._safeweights_rust import serialize_sharded


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot mount a tmpfs here ({done.stderr.strip()}); full-disk tests need root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


ARRAYS = []  # keeps the arrays behind the specs alive


def sharded(fill: int, size: int, step: str) -> tuple:
    data = np.full(size, fill, dtype=np.uint8)
    ARRAYS.append(data)
    spec = TensorSpec(dtype="uint8", shape=[size], data_ptr=data.ctypes.data, data_len=size)
    return {f"w{i}": spec for i in range(3)}, {"step": step}


def test_a_save_file_that_fills_the_disk_keeps_the_old_file(small_disk):
    path = small_disk / "model.safetensors"
    save_file({"w": np.arange(1000, dtype=np.float32)}, path)
    with pytest.raises(OSError) as raised:
        save_file({"w": np.zeros(1 << 19, dtype=np.float32)}, path)
    assert raised.value.errno == errno.ENOSPC
    np.testing.assert_array_equal(load_file(path)["w"], np.arange(1000, dtype=np.float32))
    assert os.listdir(small_disk) == ["model.safetensors"]


def test_a_sharded_save_that_fills_the_disk_keeps_the_old_checkpoint(small_disk):
    tensors, metadata = sharded(1, 100_000, "1")
    serialize_sharded(tensors, str(small_disk), 100_000, metadata, overwrite=False)
    before = sorted(os.listdir(small_disk))
    tensors, metadata = sharded(2, 300_000, "2")
    with pytest.raises(OSError) as raised:
        serialize_sharded(tensors, str(small_disk), 300_000, metadata, overwrite=True)
    assert raised.value.errno == errno.ENOSPC
    # The old set is untouched, loads, and nothing of the new one is left.
    assert sorted(os.listdir(small_disk)) == before
    with safe_open(small_disk, framework="np") as f:
        assert f.metadata()["step"] == "1"
        for name in f.keys():
            assert (f.get_tensor(name) == 1).all()
