"""Paths are resolved by the core's one resolver, and each shard of a sharded
checkpoint is opened once (it used to be opened twice: once to check the index,
once to read)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
from pathlib import Path

import pytest
import torch

import safeweights
from safeweights import safe_open
from safeweights.torch import load_file, save_checkpoint

IN_OPEN = 0x20
IN_NONBLOCK = 0o4000


class _OpenCounter:
    """Counts the times files are opened, seen by the kernel (inotify), so
    that opens made by the native module count too."""

    def __init__(self, paths: list[Path]) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.inotify_init1(IN_NONBLOCK)
        assert self._fd >= 0, os.strerror(ctypes.get_errno())
        self._names = {}
        for path in paths:
            wd = self._libc.inotify_add_watch(self._fd, str(path).encode(), IN_OPEN)
            assert wd >= 0, os.strerror(ctypes.get_errno())
            self._names[wd] = path.name

    def counts(self) -> dict[str, int]:
        seen = {name: 0 for name in self._names.values()}
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return seen
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                if mask & IN_OPEN:
                    seen[self._names[wd]] += 1
                offset += 16 + length

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture
def sharded(tmp_path: Path) -> Path:
    state = {f"layer{i}.weight": torch.full((64, 64), float(i)) for i in range(4)}
    save_checkpoint(state, tmp_path, max_shard_size="20KB")
    shards = sorted(tmp_path.glob("*.safetensors"))
    assert len(shards) > 1
    return tmp_path


@pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")
@pytest.mark.parametrize("backend", ["mmap", "pread"])
def test_each_shard_is_opened_once(sharded: Path, backend: str) -> None:
    shards = sorted(sharded.glob("*.safetensors"))
    counter = _OpenCounter(shards)
    try:
        with safe_open(sharded / "model.safetensors.index.json", framework="pt", backend=backend) as f:
            names = list(f.keys())
            for name in names:
                f.get_tensor(name)
        assert counter.counts() == {shard.name: 1 for shard in shards}
    finally:
        counter.close()
    assert len(names) == 4


def test_an_index_is_recognised_by_content_not_name(sharded: Path) -> None:
    renamed = sharded / "weights-map.txt"
    renamed.write_bytes((sharded / "model.safetensors.index.json").read_bytes())
    loaded = load_file(renamed)
    assert sorted(loaded) == [f"layer{i}.weight" for i in range(4)]
    assert torch.equal(loaded["layer3.weight"], torch.full((64, 64), 3.0))


def test_a_safetensors_file_named_json_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_bytes(safeweights.torch.save({"a": torch.ones(2)}))
    assert torch.equal(load_file(path)["a"], torch.ones(2))


def test_a_directory_of_several_files_says_what_it_holds(tmp_path: Path) -> None:
    for name in ("a.safetensors", "b.safetensors"):
        (tmp_path / name).write_bytes(safeweights.torch.save({"a": torch.ones(2)}))
    with pytest.raises(safeweights.ShardDirectoryError, match="2 safetensors files"):
        load_file(tmp_path)
