"""Sharded checkpoints replaced atomically as a set: a save killed at any
point leaves the old checkpoint or the new one, or files every loader
refuses as a mix, never a mix that loads (issue 15)."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from safeweights import ShardError, safe_open
from safeweights._safeweights_rust import _FAULT_INJECTION
from safeweights.torch import load_checkpoint, save_checkpoint

SHARD_SIZE = 4096
TENSORS = 4


def state(fill: int, step: int) -> dict:
    """Four 4 KiB tensors (one shard each) plus a step counter."""
    weights = {f"w{i}": torch.full((1024,), float(fill + i)) for i in range(TENSORS)}
    return {"model": weights, "step": step}


def assert_state(loaded: dict, expected: dict) -> None:
    assert loaded["step"] == expected["step"]
    for name, tensor in expected["model"].items():
        assert torch.equal(loaded["model"][name], tensor), name


# The writer, killed at a step; it imports no framework, so each run is quick.
WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from safeweights import TensorSpec
    from safeweights._safeweights_rust import serialize_sharded
    directory, fill, step = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    arrays = [np.full(1024, fill + i, dtype=np.float32) for i in range(4)]
    tensors = {
        f"w{i}": TensorSpec(dtype="float32", shape=[1024], data_ptr=a.ctypes.data, data_len=a.nbytes)
        for i, a in enumerate(arrays)
    }
    serialize_sharded(tensors, directory, 4096, {"step": step}, overwrite=True)
    """
)


def write_sharded(directory, fill: int, step: int, crash_at: str = "never") -> int:
    # The crash points are compiled only into test builds (cargo feature
    # fault-injection, which scripts/setup.sh builds the package with).
    assert _FAULT_INJECTION or crash_at == "never", (
        "this safeweights build has no crash points: build it with"
        " `maturin develop --release --features fault-injection` (scripts/setup.sh does)"
    )
    env = dict(os.environ, SAFEWEIGHTS_CRASH_AT=crash_at)
    argv = [sys.executable, "-c", WRITER, str(directory), str(fill), str(step)]
    return subprocess.run(argv, env=env, timeout=120).returncode


def loaded_step(directory) -> int:
    """The step of the checkpoint in `directory`, after checking that every
    tensor belongs to that same save."""
    with safe_open(directory, framework="np") as f:
        step = int(f.metadata()["step"])
        fill = 0 if step == 1 else 100
        for i in range(TENSORS):
            assert (f.get_tensor(f"w{i}") == fill + i).all(), (directory, i)
    return step


def shard_count(directory) -> int:
    return sum(name.endswith(".safetensors") for name in os.listdir(directory))


@pytest.mark.parametrize("generation", [0, 1], ids=["over-conventional-names", "over-tagged-names"])
def test_a_sharded_overwrite_killed_at_every_step_never_loads_a_mix(tmp_path, generation):
    pristine = tmp_path / "pristine"
    for _ in range(generation + 1):
        # A second save picks the other naming, so both collisions are covered.
        assert write_sharded(pristine, 0, 1) == 0
    shards = shard_count(pristine)
    assert shards == TENSORS
    steps = [f"shard-{k}" for k in range(1, shards + 1)] + ["index"]
    for step in steps:
        directory = tmp_path / step
        shutil.copytree(pristine, directory)
        assert write_sharded(directory, 100, 2, crash_at=step) == -signal.SIGABRT, step
        # The new set is complete only once the index is switched; until
        # then the old checkpoint is intact and loads.
        assert loaded_step(directory) == (2 if step == "index" else 1), step
    # Not killed, the next save completes and leaves only the new set.
    directory = tmp_path / "shard-1"
    assert write_sharded(directory, 100, 2) == 0
    assert loaded_step(directory) == 2
    assert shard_count(directory) == shards


def test_load_checkpoint_sees_the_old_state_after_a_killed_overwrite(tmp_path):
    save_checkpoint(state(0, 1), tmp_path, max_shard_size=SHARD_SIZE)
    assert write_sharded(tmp_path, 100, 2, crash_at="shard-2") == -signal.SIGABRT
    assert_state(load_checkpoint(tmp_path), state(0, 1))


def test_a_mix_of_two_saves_is_refused_naming_the_mix(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    save_checkpoint(state(0, 1), first, max_shard_size=SHARD_SIZE)
    save_checkpoint(state(100, 2), second, max_shard_size=SHARD_SIZE)
    name = "model-00001-of-00004.safetensors"
    shutil.copy(second / name, first / name)
    with pytest.raises(ShardError, match="mix of two saves") as raised:
        load_checkpoint(first)
    assert name in str(raised.value)


def test_save_checkpoint_refuses_to_overwrite_a_sharded_checkpoint_unless_told(tmp_path):
    save_checkpoint(state(0, 1), tmp_path, max_shard_size=SHARD_SIZE)
    with pytest.raises(FileExistsError, match="overwrite=True") as raised:
        save_checkpoint(state(100, 2), tmp_path, max_shard_size=SHARD_SIZE)
    assert raised.value.errno == errno.EEXIST
    assert_state(load_checkpoint(tmp_path), state(0, 1))
    save_checkpoint(state(100, 2), tmp_path, max_shard_size=SHARD_SIZE, overwrite=True)
    assert_state(load_checkpoint(tmp_path), state(100, 2))


def test_a_single_file_save_over_shards_removes_the_old_set(tmp_path):
    save_checkpoint(state(0, 1), tmp_path, max_shard_size=SHARD_SIZE)
    save_checkpoint(state(100, 2), tmp_path, max_shard_size="1GB", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    assert_state(load_checkpoint(tmp_path), state(100, 2))
    save_checkpoint(state(0, 1), tmp_path, max_shard_size=SHARD_SIZE, overwrite=True)
    assert "model.safetensors" not in os.listdir(tmp_path)
    assert_state(load_checkpoint(tmp_path), state(0, 1))
