#!/usr/bin/env python3
"""Writes the seed corpus of the zip_differential fuzz target: small real
archives from torch.save (with and without CRCs), np.savez(_compressed)
and zipfile (every method, a comment, zip64 extras). Needs torch and numpy.

Run from anywhere: python3 fuzz/make_zip_corpus.py
"""
import io
import os
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "zip_differential")


def torch_bytes(state, crc=True):
    torch.serialization.set_crc32_options(crc)
    try:
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()
    finally:
        torch.serialization.set_crc32_options(True)


def zf_bytes(method, comment=b"", force_zip64=False):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in (("a.npy", b"x" * 20), ("d/b", bytes(range(40)))):
            with zf.open(name, "w", force_zip64=force_zip64) as f:
                f.write(data)
        zf.comment = comment
    return buf.getvalue()


def npz(fn, **arrays):
    buf = io.BytesIO()
    fn(buf, **arrays)
    return buf.getvalue()


SEEDS = {
    "torch_one": torch_bytes({"w": torch.arange(4, dtype=torch.float32)}),
    "torch_two": torch_bytes({"a": torch.ones(2), "b": torch.zeros(3, dtype=torch.int8), "step": 3}),
    "torch_nocrc": torch_bytes({"w": torch.ones(2)}, crc=False),
    "savez": npz(np.savez, a=np.arange(3), b=np.ones(2, dtype=np.float16)),
    "savez_compressed": npz(np.savez_compressed, a=np.zeros(50)),
    "zip_stored_comment": zf_bytes(zipfile.ZIP_STORED, comment=b"comment"),
    "zip_deflated_zip64": zf_bytes(zipfile.ZIP_DEFLATED, force_zip64=True),
    "zip_bzip2": zf_bytes(zipfile.ZIP_BZIP2),
    "zip_lzma": zf_bytes(zipfile.ZIP_LZMA),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds ({sum(map(len, SEEDS.values()))} bytes) to {OUT}")


if __name__ == "__main__":
    main()
