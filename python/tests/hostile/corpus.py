"""The regression corpus of crafted files, generated (never stored as blobs).

Each `Case` names a bypass class and writes one file. Hostile cases carry a
payload that only creates `MARKER` in the current directory (see
`oracle.py`); benign ones are what real tools write, sometimes edited the
way a real file could differ. `python corpus.py DIR` writes them all to
DIR (the benchmark uses that), and `test_corpus.py` runs every one through
the differential oracle.

Classes:
- no-proto: pickles starting with FRAME, a string, MARK, NONE, INST...
- proto0-stop: protocol 0 streams our simulation could give up on (memo
  keys CPython accepts, the stack limit, computed global names).
- legacy: torch's legacy stream (payload in any of its pickles, magic
  without PROTO) and its pre-0.4 tar format.
- weak-checks: npy object dtypes spelled out, escaped names, gadgets
  outside the old deny list.
- benign: files real tools write, read back to the same values.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List

import numpy as np
import torch

from oracle import touch_payload

CMD = touch_payload().encode()


@dataclass(frozen=True)
class Case:
    name: str
    cls: str
    expect: str  # "payload" or "benign"
    build: Callable[[Path], None]
    """Writes the file at the given path."""
    ext: str = ".pkl"
    """The name an attacker would give it (scanners that go by name see this)."""


CASES: List[Case] = []


def case(cls: str, expect: str = "payload", ext: str = ".pkl"):
    def register(build: Callable[[Path], None]) -> Callable[[Path], None]:
        CASES.append(Case(build.__name__, cls, expect, build, ext))
        return build

    return register


def write(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def short_unicode(s: bytes) -> bytes:
    return b"\x8c" + bytes([len(s)]) + s


def system_call_v2() -> bytes:
    """Protocol 2+ body (no PROTO, no STOP): os.system(CMD) by STACK_GLOBAL."""
    return short_unicode(b"os") + short_unicode(b"system") + b"\x93" + short_unicode(CMD) + b"\x85R"


def system_call_v0(module: bytes = b"os") -> bytes:
    """Protocol 0 body: module.system(CMD) by GLOBAL, MARK, TUPLE, REDUCE."""
    return b"c" + module + b"\nsystem\n(S'" + CMD + b"'\ntR"


# ---------------------------------------------------------------- no PROTO


def _framed(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


for _name, _data in {
    "frame_first": _framed(system_call_v2() + b"."),
    "short_binunicode_first": system_call_v2() + b".",
    "mark_first": b"(" + system_call_v0() + b".",
    "global_first": system_call_v0() + b".",
    "none_pop_first": b"N0" + system_call_v0(b"posix") + b".",
    "inst_first": b"(S'" + CMD + b"'\nios\nsystem\n.",
    "binunicode_first": b"X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93" + short_unicode(CMD) + b"\x85R.",
    "empty_dict_first": b"}(Vk\n" + system_call_v0() + b"u.",
}.items():
    CASES.append(Case(_name, "no-proto", "payload", write(_data)))


# ---------------------------------------------------------------- protocol 0 stops


@case("proto0-stop")
def memo_key_underscore(path):
    # CPython's int() reads `1_0` as 10; a scanner that cannot parse it stops.
    path.write_bytes(b"Vos\np1_0\n0Vsystem\np11\n0g10\ng11\n\x93(V" + CMD + b"\ntR.")


@case("proto0-stop")
def memo_key_spaces_sign(path):
    path.write_bytes(b"Vos\np +7 \n0Vsystem\np 08\n0g7\ng8\n\x93(V" + CMD + b"\ntR.")


@case("proto0-stop")
def stack_limit_then_payload(path):
    # More values than our simulator's stack limit, then the payload.
    path.write_bytes(b"N" * 1_000_001 + system_call_v0() + b".")


@case("proto0-stop")
def computed_global_name(path):
    # STACK_GLOBAL's module name is returned by builtins.str("os").
    path.write_bytes(b"cbuiltins\nstr\n(Vos\ntRVsystem\n\x93(V" + CMD + b"\ntR.")


@case("proto0-stop")
def payload_then_garbage(path):
    path.write_bytes(system_call_v0() + b"\xff\xfe garbage")


# ---------------------------------------------------------------- legacy torch


def _legacy_bytes(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def _legacy_pickles(data: bytes) -> List[int]:
    """Offsets where the five legacy header pickles start, and their end
    (found by walking opcodes with pickletools, which runs nothing)."""
    offsets = [0]
    for _ in range(5):
        *_, (op, _arg, pos) = pickletools.genops(data[offsets[-1] :])
        assert op.name == "STOP"
        offsets.append(offsets[-1] + pos + 1)
    return offsets


def _legacy_with(replace_index: int, new_pickle: bytes) -> bytes:
    data = _legacy_bytes({"w": torch.arange(4, dtype=torch.float32)})
    offsets = _legacy_pickles(data)
    start, end = offsets[replace_index], offsets[replace_index + 1]
    return data[:start] + new_pickle + data[end:]


@case("legacy", ext=".pt")
def legacy_payload_in_sys_info(path):
    path.write_bytes(_legacy_with(2, b"\x80\x02" + system_call_v2() + b"."))


@case("legacy", ext=".pt")
def legacy_payload_in_storage_keys(path):
    path.write_bytes(_legacy_with(4, b"\x80\x02" + system_call_v2() + b"."))


@case("legacy", ext=".pt")
def legacy_payload_in_protocol_version(path):
    path.write_bytes(_legacy_with(1, system_call_v0() + b"."))


@case("legacy", ext=".pt")
def legacy_magic_without_proto(path):
    magic = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    data = _legacy_with(2, system_call_v0() + b".")
    offsets = _legacy_pickles(data)
    path.write_bytes(magic + data[offsets[1] :])


def _tar_checkpoint(main: bytes, storage_args: bytes | None = None, views: bytes | None = None) -> bytes:
    """torch's pre-0.4 checkpoint: one float storage (key 0) and one
    tensor (key 1) over it, laid out as torch's `_legacy_load` reads them."""
    values = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    storages = (
        pickle.dumps(1, protocol=2)
        + (storage_args or pickle.dumps((0, "cpu", torch.FloatStorage), protocol=2))
        + struct.pack("<q", 4)
        + values
        + (views or pickle.dumps([], protocol=2))
    )
    tensors = (
        pickle.dumps(1, protocol=2)
        + pickle.dumps((1, 0, torch.FloatTensor), protocol=2)
        + struct.pack("<ii", 1, 0)
        + struct.pack("<q", 4)
        + struct.pack("<q", 1)
        + struct.pack("<q", 0)
    )
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("sys_info", sys_info), ("pickle", main), ("storages", storages), ("tensors", tensors)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _tar_main() -> bytes:
    """{"w": <tensor 1>} with the tensor as persistent id "1"."""
    return b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01X\x01\x00\x00\x001Qs."


@case("legacy", ext=".pt")
def tar_payload_in_pickle(path):
    path.write_bytes(_tar_checkpoint(b"\x80\x02" + system_call_v2() + b"."))


@case("legacy", ext=".pt")
def tar_payload_in_storage_record(path):
    path.write_bytes(_tar_checkpoint(_tar_main(), storage_args=b"\x80\x02" + system_call_v2() + b"."))


@case("legacy", ext=".pt")
def tar_payload_in_storage_views(path):
    path.write_bytes(_tar_checkpoint(_tar_main(), views=b"\x80\x02" + system_call_v2() + b"."))


@case("legacy", "benign", ".pt")
def tar_benign(path):
    path.write_bytes(_tar_checkpoint(_tar_main()))


# ---------------------------------------------------------------- weak checks


def _npy(descr: str, body: bytes) -> bytes:
    header = "{'descr': %s, 'fortran_order': False, 'shape': (1,), }" % descr
    header += " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


_PAYLOAD_ARRAY = b"\x80\x02" + system_call_v2() + b"."
for _descr in ["'object'", "'|O'", "'O'", "'O8'", "[('a', 'O')]"]:
    _label = _descr.strip("'[]()").replace("|", "pipe").replace(", ", "_").replace("'", "")
    CASES.append(Case(f"npy_descr_{_label}", "weak-checks", "payload", write(_npy(_descr, _PAYLOAD_ARRAY)), ".npy"))

for _name, _data in {
    "escaped_hex_string": b"S'o\\x73'\nS'sy\\x73tem'\n\x93(S'" + CMD + b"'\ntR.",
    "escaped_octal_string": b"S'\\157s'\nS'system'\n\x93(S'" + CMD + b"'\ntR.",
    "escaped_raw_unicode": b"V\\u006f\\u0073\nVsystem\n\x93(V" + CMD + b"\ntR.",
    "gadget_f2py_myeval": b"\x80\x02cnumpy.f2py.crackfortran\nmyeval\n"
    + short_unicode(b"__import__('os').system('" + CMD + b"')")
    + b"\x85R.",
    "gadget_methodcaller_shlex_os": b"\x80\x02c_operator\nmethodcaller\n"
    + short_unicode(b"system")
    + short_unicode(CMD)
    + b"\x86Rcshlex\nos\n\x85R.",
    "gadget_collect_env_run": b"\x80\x02ctorch.utils.collect_env\nrun\n" + short_unicode(CMD) + b"\x85R.",
    "gadget_subinterpreter": b"\x80\x02c_xxsubinterpreters\nrun_string\nc_xxsubinterpreters\ncreate\n)R"
    + short_unicode(b"import os; os.system('" + CMD + b"')")
    + b"\x86R.",
    "gadget_py2_commands": b"ccommands\ngetoutput\n(S'" + CMD + b"'\ntR.",
}.items():
    CASES.append(Case(_name, "weak-checks", "payload", write(_data)))


# ---------------------------------------------------------------- benign


def _state():
    return {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3, dtype=torch.float16)}


@case("benign", "benign", ".pt")
def torch_zip(path):
    torch.save(_state(), path)


@case("benign", "benign", ".pt")
def torch_legacy(path):
    torch.save(_state(), path, _use_new_zipfile_serialization=False)


@case("benign", "benign", ".pt")
def torch_legacy_sys_info_big_endian(path):
    # sys_info says big-endian; torch still reads the storages little-endian.
    data = bytearray(_legacy_bytes(_state()))
    offsets = _legacy_pickles(bytes(data))
    at = data.index(b"little_endian", offsets[2], offsets[3])
    flag = data.index(b"\x88", at, offsets[3])
    data[flag] = 0x89  # NEWTRUE -> NEWFALSE
    path.write_bytes(bytes(data))


@case("benign", "benign", ".npy")
def numpy_npy(path):
    with open(path, "wb") as f:
        np.save(f, np.arange(5, dtype=np.int32))


@case("benign", "benign")
def plain_pickle_protocol0(path):
    path.write_bytes(pickle.dumps({"a": [1, 2.5, "x"]}, protocol=0))


def build_all(directory: Path) -> List[tuple]:
    """Writes every case into `directory`; returns (case, path) pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for c in CASES:
        path = directory / f"{c.cls}__{c.name}{c.ext}"
        c.build(path)
        out.append((c, path))
    return out


if __name__ == "__main__":
    for c, p in build_all(Path(sys.argv[1])):
        print(c.cls, c.expect, p)
