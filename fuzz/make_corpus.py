#!/usr/bin/env python3
"""Writes the seed corpus for the fuzz targets: small valid and invalid
safetensors files, plus first bytes of formats often mistaken for one.

Uses only the standard library. Run from anywhere: python3 fuzz/make_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def st(header, data=b"", raw=False):
    """A file: 8-byte length, header (a dict, or raw text when raw=True), data."""
    text = header if raw else json.dumps(header, separators=(",", ":"))
    body = text.encode("utf-8")
    return struct.pack("<Q", len(body)) + body + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


SEEDS = {
    # valid
    "empty": st({}),
    "metadata_only": st({"__metadata__": {"format": "pt", "k\u00e9y": "v\n\"q\""}}),
    "one_f32": st({"w": entry("F32", [2, 2], 0, 16)}, bytes(range(16))),
    "scalar_and_empty": st({"s": entry("F64", [], 0, 8), "e": entry("I32", [0, 3], 8, 8)}, b"\x00" * 8),
    "sub_byte": st({"a": entry("F4", [2, 4], 0, 4), "b": entry("F6_E2M3", [4], 4, 7)}, bytes(7)),
    "many_dtypes": st(
        {
            "__metadata__": {"a": "b"},
            "u64": entry("U64", [1], 0, 8),
            "c64": entry("C64", [1], 8, 16),
            "bf16": entry("BF16", [2], 16, 20),
            "f8": entry("F8_E4M3", [3], 20, 23),
            "bool": entry("BOOL", [1], 23, 24),
        },
        bytes(range(24)),
    ),
    "padded": st('{"t":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}' + " " * 11, b"abc", raw=True),
    "leading_ws": st(' \n{"t":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}', b"z", raw=True),
    "metadata_null": st('{"__metadata__":null,"t":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}', b"z", raw=True),
    "escaped_name": st('{"\\u00e9\\ud83d\\ude00\\n":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}}', b"ab", raw=True),
    "out_of_order": st({"b": entry("U8", [2], 2, 4), "a": entry("U8", [2], 0, 2)}, b"abcd"),
    # invalid
    "truncated": st({"w": entry("F32", [2, 2], 0, 16)}, bytes(10)),
    "trailing": st({"w": entry("U8", [1], 0, 1)}, b"ab"),
    "overlap": st({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 2, 6)}, bytes(6)),
    "hole": st({"a": entry("U8", [2], 0, 2), "b": entry("U8", [2], 3, 5)}, bytes(5)),
    "end_before_begin": st({"a": entry("U8", [0], 4, 2)}, bytes(4)),
    "length_mismatch": st({"a": entry("F32", [3], 0, 8)}, bytes(8)),
    "overflow": st({"a": entry("U8", [2**63, 2], 0, 0)}),
    "partial_byte": st({"a": entry("F4", [3], 0, 2)}, bytes(2)),
    "unknown_dtype": st({"a": entry("f32", [1], 0, 4)}, bytes(4)),
    "negative_dim": st('{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}', raw=True),
    "float_dim": st('{"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}', b"x", raw=True),
    "three_offsets": st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}', b"x", raw=True),
    "dup_tensor": st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x", raw=True),
    "dup_field": st('{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x", raw=True),
    "unknown_field": st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}', b"x", raw=True),
    "bad_metadata": st('{"__metadata__":{"a":1,"b":{"c":"d"},"e":["f"]}}', raw=True),
    "dup_metadata": st('{"__metadata__":{"a":"1","a":"2"}}', raw=True),
    "nested": st("[" * 200 + "]" * 200, raw=True),
    "trailing_garbage": st("{}x", raw=True),
    "not_utf8": struct.pack("<Q", 4) + b"{\xff}" + b" ",
    "huge_length": struct.pack("<Q", 2**62) + b"{}",
    "beyond_file": struct.pack("<Q", 1000) + b"{}",
    "tiny": b"\x02\x00\x00",
    # impostors
    "zip": b"PK\x03\x04\x00\x00\x08\x08\x00\x00archive/data.pkl" + bytes(16),
    "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n",
    "html": b"<!DOCTYPE html><html><body>404</body></html>",
    "pickle": b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.",
    "npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }" + b" " * 8 + bytes(4),
}


def main():
    for target in ("header", "reader"):
        out = os.path.join(HERE, "corpus", target)
        os.makedirs(out, exist_ok=True)
        for name, data in SEEDS.items():
            with open(os.path.join(out, "seed-" + name), "wb") as f:
                f.write(data)
    total = sum(len(d) for d in SEEDS.values()) * 2
    print(f"wrote {len(SEEDS)} seeds per target ({total} bytes)")


if __name__ == "__main__":
    main()
