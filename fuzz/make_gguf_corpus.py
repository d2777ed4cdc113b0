#!/usr/bin/env python3
"""Writes the seed corpus of the gguf fuzz target: small files from the
real `gguf` package's GGUFWriter (every value type, nested arrays, plain,
quantized and raw-block tensors, a custom alignment), version 2, and a few
malformed variants of them.

Needs numpy and gguf (requirements-dev.txt): python fuzz/make_gguf_corpus.py
"""
import os
import struct
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(14)


def written(build, alignment=None):
    """The bytes of a file that `build(writer)` fills."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "seed.gguf")
        writer = gguf.GGUFWriter(path, "llama")
        if alignment:
            writer.add_custom_alignment(alignment)
        build(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(path, "rb") as f:
            return f.read()


def metadata(w):
    w.add_uint8("u8", 1)
    w.add_int8("i8", -1)
    w.add_uint16("u16", 2)
    w.add_int16("i16", -2)
    w.add_uint32("u32", 3)
    w.add_int32("i32", -3)
    w.add_float32("f32", 0.5)
    w.add_bool("b", True)
    w.add_string("s", "\u00e9")
    w.add_uint64("u64", 4)
    w.add_int64("i64", -4)
    w.add_float64("f64", 1.5)
    w.add_array("ints", [1, 2])
    w.add_array("nested", [[1.0], [2.0, 3.0]])
    w.add_token_list(["a", "b", "<s>"])


def tensors(w):
    w.add_tensor("f32", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.add_tensor("f16", np.ones((4,), dtype=np.float16))
    q = gguf.quants.quantize(rng.standard_normal((1, 32), dtype=np.float32), Q.Q8_0)
    w.add_tensor("q8_0", q, raw_shape=q.shape, raw_dtype=Q.Q8_0)
    q = gguf.quants.quantize(rng.standard_normal((2, 32), dtype=np.float32), Q.Q4_0)
    w.add_tensor("q4_0", q, raw_shape=q.shape, raw_dtype=Q.Q4_0)
    raw = rng.integers(0, 256, (1, 210), dtype=np.uint8)
    w.add_tensor("q6_k", raw, raw_shape=raw.shape, raw_dtype=Q.Q6_K)
    raw = rng.integers(0, 256, (1, 17), dtype=np.uint8)
    w.add_tensor("mxfp4", raw, raw_shape=raw.shape, raw_dtype=Q.MXFP4)


def with_version(data, version):
    return data[:4] + struct.pack("<I", version) + data[8:]


full = written(lambda w: (metadata(w), tensors(w)))
SEEDS = {
    "metadata_only": written(metadata),
    "tensors_only": written(tensors),
    "full": full,
    "aligned_64": written(tensors, alignment=64),
    "version2": with_version(written(tensors), 2),
    "huge_tensor_count": full[:8] + struct.pack("<Q", 2**62) + full[16:],
    "truncated": full[: len(full) - 20],
    "big_endian": with_version(full, 0x03000000),
}


path = os.path.join(HERE, "corpus", "gguf")
os.makedirs(path, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(path, "seed-" + name), "wb") as f:
        f.write(data)
total = sum(len(d) for d in SEEDS.values())
print(f"{len(SEEDS)} seeds, {total} bytes")
assert total < 50_000, "keep the committed corpus small"
