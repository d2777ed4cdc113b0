#!/usr/bin/env python3
"""Writes the seed corpus of the seven_zip fuzz target: small 7z archives
written by py7zr with every codec it and sevenz-rust2 share (LZMA2, LZMA
with a BCJ filter, copy, bzip2, deflate, PPMd), a solid block of two
members, a nested archive, an encrypted one and an empty file entry.
Needs py7zr.

Run from anywhere: python3 fuzz/make_7z_corpus.py
"""
import io
import os
import pickle

import py7zr

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "seven_zip")

PAYLOAD = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."
BENIGN = pickle.dumps({"w": [1.0, 2.0], "step": 3}, protocol=2)


def archive(members, **kw):
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", **kw) as z:
        for name, data in members:
            z.writestr(data, name)
    return buf.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "lzma2": archive([("model.pkl", PAYLOAD)]),
        "lzma_bcj": archive([("model.pkl", PAYLOAD)], filters=[{"id": py7zr.FILTER_X86}, {"id": py7zr.FILTER_LZMA}]),
        "copy": archive([("model.pkl", BENIGN)], filters=[{"id": py7zr.FILTER_COPY}]),
        "bzip2": archive([("model.pkl", BENIGN)], filters=[{"id": py7zr.FILTER_BZIP2}]),
        "deflate": archive([("model.pkl", BENIGN)], filters=[{"id": py7zr.FILTER_DEFLATE}]),
        "ppmd": archive([("model.pkl", BENIGN)], filters=[{"id": py7zr.FILTER_PPMD}]),
        "solid": archive([("a.pkl", BENIGN), ("b.pkl", PAYLOAD)]),
        "empty_member": archive([("empty.bin", b""), ("a.pkl", BENIGN)]),
        "encrypted": archive([("model.pkl", PAYLOAD)], password="x"),
    }
    seeds["nested"] = archive([("inner.7z", seeds["lzma2"])])
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
