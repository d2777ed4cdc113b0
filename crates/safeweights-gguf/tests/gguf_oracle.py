"""Writes a GGUF file with the real `gguf` package's GGUFWriter, reads it
back with its GGUFReader, and prints what the reader sees as JSON, for
tests/oracle.rs to compare with safeweights-gguf's view of the same file.

Usage: python gguf_oracle.py OUT.gguf
"""
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

path = sys.argv[1]
rng = np.random.default_rng(14)
writer = gguf.GGUFWriter(path, "llama")
writer.add_uint8("t.u8", 200)
writer.add_int8("t.i8", -100)
writer.add_uint16("t.u16", 60000)
writer.add_int16("t.i16", -30000)
writer.add_uint32("t.u32", 4_000_000_000)
writer.add_int32("t.i32", -2_000_000_000)
writer.add_float32("t.f32", 0.1)
writer.add_bool("t.bool", True)
writer.add_string("t.str", "h\u00e9llo \u2603")
writer.add_uint64("t.u64", 2**64 - 1)
writer.add_int64("t.i64", -(2**63))
writer.add_float64("t.f64", -1.0e300)
writer.add_array("t.ints", [1, -2, 3])
writer.add_array("t.floats", [0.5, -1.25])
writer.add_array("t.bools", [True, False, True])
writer.add_array("t.nested", [[1, 2], [3]])
writer.add_array("t.nested_str", [["a", "b"], ["\u00e9"]])
writer.add_token_list([f"tok{i}" for i in range(300)] + ["", "\u2581the", "<|im_end|>"])
writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")

writer.add_tensor("f32", rng.standard_normal((3, 5), dtype=np.float32))
writer.add_tensor("f16", rng.standard_normal((2, 4)).astype(np.float16))
writer.add_tensor("f64", rng.standard_normal((7,)))
writer.add_tensor("i8", rng.integers(-128, 127, (2, 3, 4), dtype=np.int8))
writer.add_tensor("i32", rng.integers(-1000, 1000, (1, 2, 2, 3), dtype=np.int32))
for name, qtype in [("bf16", Q.BF16), ("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0), ("q5_1", Q.Q5_1)]:
    data = rng.standard_normal((4, 64), dtype=np.float32)
    quantized = gguf.quants.quantize(data, qtype)
    writer.add_tensor(name, quantized, raw_shape=quantized.shape, raw_dtype=qtype)
# Types gguf can only dequantize: random blocks of the right size.
for name, qtype in [("q6_k", Q.Q6_K), ("iq2_xxs", Q.IQ2_XXS), ("mxfp4", Q.MXFP4), ("tq1_0", Q.TQ1_0)]:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (2, 512 // block * size), dtype=np.uint8)
    writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()

reader = gguf.GGUFReader(path)
TYPE_NAMES = {t: t.name for t in gguf.GGUFValueType}


def plain(value):
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return {"float": value}
    return value



metadata = {}
for key, field in reader.fields.items():
    if key.startswith("GGUF."):
        continue  # the reader's pseudo-fields for the header
    types = [TYPE_NAMES[t] for t in field.types]
    metadata[key] = {"types": types, "value": plain(field.contents())}

with open(path, "rb") as f:
    raw = f.read()
tensors = [
    {
        "name": t.name,
        "type": int(t.tensor_type),
        "dims": [int(d) for d in t.shape],
        "offset": int(t.data_offset),
        "bytes": raw[t.data_offset : t.data_offset + int(t.n_bytes)].hex(),
        "reader_bytes": np.ascontiguousarray(t.data).tobytes().hex(),
    }
    for t in reader.tensors
]
json.dump({"metadata": metadata, "tensors": tensors}, sys.stdout)
