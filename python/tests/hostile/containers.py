"""Generators for crafted container files: zip parser differentials, missed
containers (gzip, bzip2, xz, nested zips, bzip2/LZMA npz members), 7z
archives written by py7zr, and
benign files we used to refuse (zero matrices, torch's CRC-less zips).

Everything is built here from `torch.save`, `np.savez`, `zipfile`,
`struct`, `gzip`, `bz2`, `lzma` and `py7zr`; no binary blobs. `corpus(out)` writes
every file and returns `Case`s saying what each one exercises. Payloads
only create the oracle's MARKER file.

The zip writer below lays out records and central directories by hand so
that a test can splice two directories, zip64 records and end records in
ways no real writer would: that is where readers disagree.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from oracle import touch_payload

LOCAL = 0x04034B50
CENTRAL = 0x02014B50
EOCD = 0x06054B50
ZIP64_EOCD = 0x06064B50
ZIP64_LOCATOR = 0x07064B50


@dataclass
class Case:
    """One crafted file."""

    name: str
    cls: str
    """The class it belongs to: `zip`, `container`, `7z` or `benign`."""
    expect: Optional[str]
    """`payload` (some real loader runs it), `benign` (one loads it, none
    runs anything), or None (no real loader in the oracle opens it)."""
    ambiguous: bool = False
    """Whether our zip reader must call it an ambiguous archive."""
    min_verdict: str = "safe"
    """The least severe scan verdict allowed."""


class _System:
    def __reduce__(self):
        return (os.system, (touch_payload(),))


def evil_pickle() -> bytes:
    return pickle.dumps({"w": _System()}, protocol=2)


def evil_object_npy() -> bytes:
    arr = np.empty(1, dtype=object)
    arr[0] = _System()
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def torch_members(state: dict) -> List[Tuple[str, bytes]]:
    """The members `torch.save` writes for `state`, renamed under `arc/`."""
    buf = io.BytesIO()
    torch.save(state, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        out = []
        for info in zf.infolist():
            rel = info.filename.split("/", 1)[1]
            out.append(("arc/" + rel, zf.read(info)))
        return out


def decoy_state() -> dict:
    return {"w": torch.arange(4, dtype=torch.float32)}


def evil_state() -> dict:
    return {"w": torch.arange(4, dtype=torch.float32), "x": _System()}


# ---------------------------------------------------------------- zip writer


def compress(method: int, data: bytes) -> bytes:
    if method == zipfile.ZIP_STORED:
        return data
    if method == zipfile.ZIP_DEFLATED:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    if method == zipfile.ZIP_BZIP2:
        return bz2.compress(data)
    if method == zipfile.ZIP_LZMA:
        comp = zipfile._get_compressor(zipfile.ZIP_LZMA)  # zipfile's own LZMA framing
        return comp.compress(data) + comp.flush()
    raise ValueError(method)


@dataclass
class Rec:
    """A member record written into the data area."""

    name: bytes
    offset: int
    method: int
    flags: int
    crc: int
    csize: int
    size: int

    def central(self, name: Optional[bytes] = None, offset: Optional[int] = None) -> bytes:
        name = self.name if name is None else name
        offset = self.offset if offset is None else offset
        return struct.pack(
            "<IHHHHHHIIIHHHHHII", CENTRAL, 20, 20, self.flags, self.method, 0, 0, self.crc,
            self.csize, self.size, len(name), 0, 0, 0, 0, 0, offset,
        ) + name


class Writer:
    """Appends records, directories and end records to one buffer."""

    def __init__(self, prefix: bytes = b""):
        self.buf = bytearray(prefix)

    def record(self, name: str, data: bytes, method: int = 0, *, local_name: Optional[str] = None,
               local_size: Optional[int] = None) -> Rec:
        body = compress(method, data)
        crc = zlib.crc32(data)
        flags = 0x800 | (2 if method == zipfile.ZIP_LZMA else 0)
        lname = (local_name or name).encode()
        rec = Rec(name.encode(), len(self.buf), method, flags, crc, len(body), len(data))
        self.buf += struct.pack(
            "<IHHHHHIIIHH", LOCAL, 20, flags, method, 0, 0, crc, len(body),
            len(data) if local_size is None else local_size, len(lname), 0,
        ) + lname + body
        return rec

    def directory(self, recs: List[bytes]) -> Tuple[int, int]:
        """Writes central headers; returns (offset, size)."""
        at = len(self.buf)
        for r in recs:
            self.buf += r
        return at, len(self.buf) - at

    def eocd(self, count: int, size: int, offset: int, comment_len: int = 0) -> None:
        self.buf += struct.pack("<IHHHHIIH", EOCD, 0, 0, count, count, size, offset, comment_len)

    def zip64_record(self, count: int, size: int, offset: int) -> int:
        at = len(self.buf)
        self.buf += struct.pack("<IQHHIIQQQQ", ZIP64_EOCD, 44, 45, 45, 0, 0, count, count, size, offset)
        return at

    def zip64_locator(self, record_at: int) -> None:
        self.buf += struct.pack("<IIQI", ZIP64_LOCATOR, 0, record_at, 1)

    def bytes(self) -> bytes:
        return bytes(self.buf)


def simple_zip(members: List[Tuple[str, bytes]], method: int = 0) -> bytes:
    w = Writer()
    recs = [w.record(n, d, method) for n, d in members]
    at, size = w.directory([r.central() for r in recs])
    w.eocd(len(recs), size, at)
    return w.bytes()


def two_sets(decoy: List[Tuple[str, bytes]], evil: List[Tuple[str, bytes]], w: Writer):
    """Writes the records of both member sets; returns their central headers."""
    d = [w.record(n, b) for n, b in decoy]
    e = [w.record(n, b) for n, b in evil]
    return [r.central() for r in d], [r.central() for r in e]


# ---------------------------------------------------------------- zip differentials


def eocd_comment_hides(decoy, evil, exact_last: bool) -> bytes:
    """The decoy's end record's comment holds the payload's whole directory
    and end record, which comes last (with a comment length that runs past
    the end of the file unless `exact_last`): readers that check comment
    lengths see the decoy, torch's reader and zipfile the payload."""
    w = Writer()
    dc, ec = two_sets(decoy, evil, w)
    d_at, d_size = w.directory(dc)
    e_size = sum(len(c) for c in ec)
    w.eocd(len(dc), d_size, d_at, comment_len=e_size + 22)
    e_at, _ = w.directory(ec)
    w.eocd(len(ec), e_size, e_at, comment_len=0 if exact_last else 9)
    return w.bytes()


def zip64_beside_classic(decoy, evil) -> bytes:
    """Classic fields (not 0xFFFF) point at the decoy's directory, a zip64
    record and locator at the payload's."""
    w = Writer()
    dc, ec = two_sets(decoy, evil, w)
    d_at, d_size = w.directory(dc)
    e_at, e_size = w.directory(ec)
    z = w.zip64_record(len(ec), e_size, e_at)
    w.zip64_locator(z)
    w.eocd(len(dc), d_size, d_at)
    return w.bytes()


def zip64_locator_elsewhere(decoy, evil) -> bytes:
    """The locator points at the payload's zip64 record; the record just
    before the locator (what Python 3.11's zipfile reads) is the decoy's."""
    w = Writer()
    dc, ec = two_sets(decoy, evil, w)
    d_at, d_size = w.directory(dc)
    e_at, e_size = w.directory(ec)
    z_evil = w.zip64_record(len(ec), e_size, e_at)
    w.zip64_record(len(dc), d_size, d_at)
    w.zip64_locator(z_evil)
    w.eocd(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return w.bytes()


def directory_shifted(decoy, evil) -> bytes:
    """The end record's offset points at the payload's directory; Python's
    zipfile shifts it (and every member offset) to the decoy's."""
    w = Writer()
    e = [w.record(n, b) for n, b in evil]
    d = [w.record(n, b) for n, b in decoy]
    e_at, e_size = w.directory([r.central() for r in e])
    shift = e_size
    d_at, d_size = w.directory([r.central(offset=r.offset - shift) for r in d])
    assert d_size == e_size, "both sets need the same names for this layout"
    w.eocd(len(e), d_size, e_at)
    return w.bytes()


def count_short_of_size(decoy, extra) -> bytes:
    """The count covers the decoy's members, the size all of them."""
    w = Writer()
    recs = [w.record(n, b) for n, b in decoy + extra]
    at, size = w.directory([r.central() for r in recs])
    w.eocd(len(decoy), size, at)
    return w.bytes()


def duplicate_names(members) -> bytes:
    return simple_zip(members)


def local_name_differs(members, target: str) -> bytes:
    w = Writer()
    recs = [w.record(n, d, local_name=(n + "X") if n == target else None) for n, d in members]
    at, size = w.directory([r.central() for r in recs])
    w.eocd(len(recs), size, at)
    return w.bytes()


def local_size_differs(members, target: str) -> bytes:
    w = Writer()
    recs = [w.record(n, d, local_size=1 if n == target else None) for n, d in members]
    at, size = w.directory([r.central() for r in recs])
    w.eocd(len(recs), size, at)
    return w.bytes()


def overlapping(members, alias: str, target: str) -> bytes:
    """A second central header names `alias` and points at `target`'s record."""
    w = Writer()
    recs = [w.record(n, d) for n, d in members]
    hit = next(r for r in recs if r.name == target.encode())
    at, size = w.directory([r.central() for r in recs] + [hit.central(name=alias.encode())])
    w.eocd(len(recs) + 1, size, at)
    return w.bytes()


def prepended(members, junk: bytes) -> bytes:
    """Data before a zip whose offsets do not count it: Python's zipfile
    shifts every offset to find the members, torch's reader does not."""
    return junk + simple_zip(members)


def zip64_proper(members) -> bytes:
    """A well-formed zip64 end: classic fields all 0xFFFF, the zip64 record
    just before its locator. Every reader agrees."""
    w = Writer()
    recs = [w.record(n, d) for n, d in members]
    at, size = w.directory([r.central() for r in recs])
    z = w.zip64_record(len(recs), size, at)
    w.zip64_locator(z)
    w.eocd(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return w.bytes()


def eocd_signature_in_tail(members) -> bytes:
    """The comment ends with an end-record signature too close to the end
    to be a record: Python's zipfile tries it and fails, torch's reader
    takes the real record before it."""
    w = Writer()
    recs = [w.record(n, d) for n, d in members]
    at, size = w.directory([r.central() for r in recs])
    tail = struct.pack("<I", EOCD) + b"\x00\x00"
    w.eocd(len(recs), size, at, comment_len=len(tail))
    w.buf += tail
    return w.bytes()


def zip_cases() -> Dict[str, Tuple[bytes, Case]]:
    decoy = torch_members(decoy_state())
    evil = torch_members(evil_state())
    assert [n for n, _ in decoy] == [n for n, _ in evil]
    npz_decoy = [("w.npy", npy(np.arange(3, dtype=np.float32)))]
    npz_evil = [("w.npy", evil_object_npy())]
    out = {}

    def add(name, data, expect, ambiguous=True, min_verdict="dangerous"):
        out[name] = (data, Case(name, "zip", expect, ambiguous, min_verdict))

    add("eocd_comment_hides.pt", eocd_comment_hides(decoy, evil, exact_last=False), "payload")
    add("eocd_two_exact.pt", eocd_comment_hides(decoy, evil, exact_last=True), "payload")
    add("eocd_two_exact.npz", eocd_comment_hides(npz_decoy, npz_evil, exact_last=True), "payload")
    add("eocd_comment_hides.npz", eocd_comment_hides(npz_decoy, npz_evil, exact_last=False), "payload")
    add("zip64_beside_classic.pt", zip64_beside_classic(decoy, evil), "payload")
    add("zip64_beside_classic.npz", zip64_beside_classic(npz_decoy, npz_evil), "payload")
    add("zip64_locator_elsewhere.pt", zip64_locator_elsewhere(decoy, evil), "payload")
    add("zip64_locator_elsewhere.npz", zip64_locator_elsewhere(npz_decoy, npz_evil), None)
    add("directory_shifted.pt", directory_shifted(decoy, evil), "payload")
    add("directory_shifted.npz", directory_shifted(npz_decoy, npz_evil), None)
    add("count_short_of_size.npz",
        count_short_of_size(npz_decoy, [("x.npy", evil_object_npy())]), "payload")
    add("duplicate_names.npz", duplicate_names(npz_decoy + npz_evil), "payload")
    pkl = dict(evil)["arc/data.pkl"]
    add("duplicate_data_pkl.pt", duplicate_names(decoy + [("arc/data.pkl", pkl)]), "payload")
    add("case_folded_names.npz", duplicate_names(npz_decoy + [("W.npy", evil_object_npy())]), "payload")
    add("local_name_differs.pt", local_name_differs(evil, "arc/data.pkl"), "payload")
    add("local_size_differs.pt", local_size_differs(evil, "arc/data.pkl"), "payload")
    add("overlapping_members.pt",
        overlapping(decoy, "arc/extra.pkl", "arc/data.pkl"), None, min_verdict="dangerous")
    benign_zip = simple_zip(decoy)
    add("data_after.pt", benign_zip + b"trailing bytes", "benign")
    # torch.load reads the pickle, zipfile the zip after it (from its end records).
    add("pickle_before_zip.pt", evil_pickle() + benign_zip, "payload")
    # Where torch's reader and Python's zipfile part ways.
    add("prepended_junk.pt", prepended(evil, b"\x00" * 100), None)
    # np.load goes by the first bytes: a local-header signature sends it to zipfile.
    add("prepended_junk.npz", prepended(npz_evil, struct.pack("<I", LOCAL) + bytes(96)), "payload")
    add("zip64_proper.pt", zip64_proper(decoy), "benign", ambiguous=False, min_verdict="safe")
    add("eocd_signature_in_tail.pt", eocd_signature_in_tail(decoy), "benign")
    return out


# ---------------------------------------------------------------- missed containers


def gzip_members(*parts: bytes, **kw) -> bytes:
    return b"".join(gzip.compress(p, **kw) for p in parts)


def nested_zip(inner: bytes, depth: int) -> bytes:
    data = inner
    for level in range(depth):
        data = simple_zip([(f"level{level}.zip" if level else "payload.pkl", data)], zipfile.ZIP_DEFLATED)
    return data


def container_cases() -> Dict[str, Tuple[bytes, Case]]:
    evil = evil_pickle()
    out = {}

    def add(name, data, expect, min_verdict="dangerous"):
        out[name] = (data, Case(name, "container", expect, False, min_verdict))

    add("pickle.pkl.gz", gzip.compress(evil), "payload")
    add("pickle_named_header.pkl.gz", gzip_members(evil, mtime=0), "payload")
    benign_head = pickle.dumps([1, 2], protocol=2)
    # pickle.load reads the first pickle; a second gzip member holds more.
    add("two_members.pkl.gz", gzip_members(evil[:10], evil[10:]), "payload")
    add("benign_then_evil_stream.pkl.gz", gzip_members(benign_head, evil), None)
    add("pickle.pkl.bz2", bz2.compress(evil), None)
    add("pickle.pkl.xz", lzma.compress(evil), None)
    add("torch_checkpoint.pt.gz", gzip.compress(simple_zip(torch_members(evil_state()))), None)
    npz_bz2 = io.BytesIO()
    with zipfile.ZipFile(npz_bz2, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("x.npy", evil_object_npy())
    add("object_member_bzip2.npz", npz_bz2.getvalue(), "payload")
    npz_lzma = io.BytesIO()
    with zipfile.ZipFile(npz_lzma, "w", zipfile.ZIP_LZMA) as zf:
        zf.writestr("x.npy", evil_object_npy())
    add("object_member_lzma.npz", npz_lzma.getvalue(), "payload")
    add("nested_2.zip", nested_zip(evil, 2), None)
    add("nested_12.zip", nested_zip(evil, 12), None, min_verdict="suspicious")
    # A 7z signature and garbage: no 7z reader opens it, nor do we.
    add("model.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24) + gzip.compress(evil), None,
        min_verdict="suspicious")
    return out


# ---------------------------------------------------------------- 7z ("nullifAI")


def seven_zip(members: List[Tuple[str, bytes]], filters=None, password=None,
              header_encryption=False) -> bytes:
    """A 7z archive written by py7zr (LZMA2 unless `filters` says)."""
    import py7zr

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", filters=filters, password=password,
                            header_encryption=header_encryption) as archive:
        for name, data in members:
            archive.writestr(data, name)
    return buf.getvalue()


def seven_zip_cases() -> Dict[str, Tuple[bytes, Case]]:
    """7z archives: the oracle's `sevenzip` loader extracts them with py7zr
    and loads every member with torch.load (pickle.load where torch refuses)."""
    import py7zr

    evil = evil_pickle()
    evil_pt = simple_zip(torch_members(evil_state()))
    benign_pt = simple_zip(torch_members(decoy_state()))
    out = {}

    def add(name, data, expect, min_verdict="dangerous"):
        out[name] = (data, Case(name, "7z", expect, False, min_verdict))

    add("pickle_lzma2.7z", seven_zip([("model.pkl", evil)]), "payload")
    add("torch_zip_lzma2.7z", seven_zip([("pytorch_model.bin", evil_pt)]), "payload")
    for tag, filters in (("copy", [{"id": py7zr.FILTER_COPY}]),
                         ("bzip2", [{"id": py7zr.FILTER_BZIP2}]),
                         ("deflate", [{"id": py7zr.FILTER_DEFLATE}]),
                         ("lzma_bcj", [{"id": py7zr.FILTER_X86}, {"id": py7zr.FILTER_LZMA}]),
                         ("ppmd", [{"id": py7zr.FILTER_PPMD}])):
        add(f"pickle_{tag}.7z", seven_zip([("model.pkl", evil)], filters), "payload")
    # A solid block: a benign member first, the payload after it.
    add("solid_benign_then_evil.7z",
        seven_zip([("config.pkl", pickle.dumps({"lr": 0.1}, protocol=2)), ("model.pkl", evil)]),
        "payload")
    add("npz_inside.7z", seven_zip([("arrays.npz", simple_zip([("x.npy", evil_object_npy())]))]), "payload")
    add("nested.7z", seven_zip([("inner.7z", seven_zip([("model.pkl", evil)]))]), None)
    add("inside_zip.zip", simple_zip([("model.7z", seven_zip([("model.pkl", evil)]))]), None)
    # Encrypted: no extractor runs it without the password, and we cannot look inside.
    add("encrypted.7z", seven_zip([("model.pkl", evil)], password="secret"), None,
        min_verdict="suspicious")
    add("encrypted_header.7z",
        seven_zip([("model.pkl", evil)], password="secret", header_encryption=True), None,
        min_verdict="suspicious")
    good = seven_zip([("model.pkl", evil)])
    add("truncated.7z", good[: len(good) // 2], None, min_verdict="suspicious")
    add("benign_torch.7z", seven_zip([("pytorch_model.bin", benign_pt)]), "benign", min_verdict="safe")
    add("benign_arrays.7z", seven_zip([("a.npy", npy(np.arange(6, dtype=np.float32)))]), "benign",
        min_verdict="safe")
    return out


# ---------------------------------------------------------------- benign


def benign_cases(tmp: str) -> Dict[str, Tuple[bytes, Case]]:
    out = {}

    def add(name, data):
        out[name] = (data, Case(name, "benign", "benign", False, "safe"))

    # A zero-initialised LoRA B matrix: ~1000:1 under deflate.
    buf = io.BytesIO()
    np.savez_compressed(buf, lora_B=np.zeros((4096, 256), dtype=np.float32),
                        lora_A=np.arange(64, dtype=np.float32).reshape(8, 8))
    add("lora_zeros.npz", buf.getvalue())
    for method, tag in ((zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as zf:
            zf.writestr("a.npy", npy(np.arange(12, dtype=np.int32).reshape(3, 4)))
            zf.writestr("b.npy", npy(np.zeros(1000, dtype=np.float16)))
        add(f"members_{tag}.npz", buf.getvalue())
    path = os.path.join(tmp, "nocrc.pt")
    torch.serialization.set_crc32_options(False)
    try:
        torch.save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, path)
    finally:
        torch.serialization.set_crc32_options(True)
    with open(path, "rb") as f:
        add("crc_off.pt", f.read())
    return out


def corpus(out_dir: str) -> List[Tuple[str, Case]]:
    """Writes every crafted file into `out_dir`; returns (path, case)."""
    os.makedirs(out_dir, exist_ok=True)
    files: Dict[str, Tuple[bytes, Case]] = {}
    files.update(zip_cases())
    files.update(container_cases())
    files.update(seven_zip_cases())
    files.update(benign_cases(out_dir))
    written = []
    for name, (data, case) in sorted(files.items()):
        path = os.path.join(out_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        written.append((path, case))
    return written


if __name__ == "__main__":
    import sys

    for path, case in corpus(sys.argv[1] if len(sys.argv) > 1 else "hostile-containers"):
        print(f"{case.cls:10} {case.expect or '-':8} {path}")
