"""The package recognises files with the core's one sniffer.

Regression: `load_checkpoint` took every safetensors file whose header length
has a low byte of 0x80 (a pickle's PROTO opcode) for a pickle checkpoint, one
small shard in four. Every residue goes through every entry point: here
`load_checkpoint`, `load_file`, `safe_open` and the CLI; `safeweights.load`
in test_api.py.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as reference_save

from safeweights import safe_open
from safeweights._safeweights_rust import SNIFF_LEN, sniff_format
from safeweights.torch import load_checkpoint, load_file

TENSOR = torch.arange(6, dtype=torch.float32).reshape(2, 3)


def _reference_file_with_residue(residue: int) -> bytes:
    """A file written by the reference `safetensors` whose header length is
    `residue` modulo 256. The reference pads its header to a multiple of 8,
    so it reaches the multiples of 8; the other residues get `residue % 8`
    more bytes of JSON whitespace, as an unpadding writer leaves them."""
    for pad in range(512):
        data = reference_save({"w": TENSOR}, metadata={"pad": "x" * pad})
        (length,) = struct.unpack("<Q", data[:8])
        if length % 256 == residue & ~7:
            extra = residue % 8
            header = data[8 : 8 + length] + b" " * extra
            return struct.pack("<Q", length + extra) + header + data[8 + length :]
    raise AssertionError("512 paddings cover every multiple of 8 modulo 256")


@pytest.fixture(scope="module")
def files_for_every_residue(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("residues")
    paths = []
    for residue in range(256):
        path = folder / f"r{residue:03d}.safetensors"
        path.write_bytes(_reference_file_with_residue(residue))
        paths.append(path)
    return paths


def test_header_length_low_byte_0x80_is_not_taken_for_a_pickle(files_for_every_residue: list[Path]) -> None:
    path = files_for_every_residue[0x80]
    assert path.read_bytes()[0] == 0x80
    assert sniff_format(path.read_bytes()[:SNIFF_LEN]) == "safetensors"
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], TENSOR)


def test_every_header_length_residue_loads_through_every_entry_point(files_for_every_residue: list[Path]) -> None:
    for residue, path in enumerate(files_for_every_residue):
        data = path.read_bytes()
        assert struct.unpack("<Q", data[:8])[0] % 256 == residue
        assert sniff_format(data[:SNIFF_LEN]) == "safetensors", residue
        assert torch.equal(load_checkpoint(path)["w"], TENSOR), residue
        assert torch.equal(load_checkpoint(io.BytesIO(data))["w"], TENSOR), residue
        assert torch.equal(load_file(path)["w"], TENSOR), residue
        with safe_open(path, framework="pt") as handle:
            assert torch.equal(handle.get_tensor("w"), TENSOR), residue
        with safe_open(path, framework="np") as handle:
            assert np.array_equal(handle.get_tensor("w"), TENSOR.numpy()), residue


def test_torch_save_files_still_sniff_as_pickles(tmp_path: Path) -> None:
    zipped = tmp_path / "zip.pt"
    torch.save({"w": TENSOR}, zipped)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": TENSOR}, legacy, _use_new_zipfile_serialization=False)
    assert sniff_format(zipped.read_bytes()[:SNIFF_LEN]) == "zip"
    assert sniff_format(legacy.read_bytes()[:SNIFF_LEN]) == "pickle"
    for path in (zipped, legacy):
        assert torch.equal(load_checkpoint(path)["w"], TENSOR)


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        (b"version https://git-lfs.github.com/spec/v1\n", "git-lfs-pointer"),
        (b"<!DOCTYPE html><html>", "html"),
        (b"\x93NUMPY\x01\x00", "numpy"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"plain text", "unknown"),
    ],
)
def test_sniff_format_names_what_a_file_is(prefix: bytes, kind: str) -> None:
    assert sniff_format(prefix) == kind


CLI = [sys.executable, "-m", "safeweights"]


def _cli(*args: str) -> dict:
    done = subprocess.run([*CLI, "--json", *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def test_every_header_length_residue_passes_the_cli(files_for_every_residue: list[Path]) -> None:
    validated = _cli("validate", *map(str, files_for_every_residue))
    assert validated["valid"] is True
    assert [Path(f["path"]).name for f in validated["files"] if f["valid"]] == [p.name for p in files_for_every_residue]
    scanned = _cli("scan", str(files_for_every_residue[0].parent))
    assert scanned["verdict"] == "safe"
    assert sorted((Path(f["path"]).name, f["format"], f["verdict"]) for f in scanned["files"]) == [
        (p.name, "safetensors", "safe") for p in files_for_every_residue
    ]
    # inspect takes one file: the residues whose first byte is another format's magic.
    for residue in (0x00, 0x1F, 0x50, 0x76, 0x7B, 0x80, 0x93, 0xFF):
        inspected = json.dumps(_cli("inspect", str(files_for_every_residue[residue])))
        assert '"w"' in inspected and "F32" in inspected, residue
