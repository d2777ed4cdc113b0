"""The `gguf` package's quants module as the oracle for every ggml type.

Writes, into the directory argv[1]:
- types.gguf (by GGUFWriter): one tensor per type gguf.quants can
  dequantize; the data comes from gguf.quants.quantize where it can
  quantize, random blocks otherwise (so scales include NaN and infinity),
  plus an F16 tensor of all 65536 bit patterns;
- <name>.f32: gguf.quants.dequantize of each tensor, raw little-endian f32,
  and <name>.f16: the same rounded by numpy's astype(np.float16), what a
  conversion to F16 safetensors must give;
- sweep.f32 and sweep.f16: every 4099th f32 bit pattern and numpy's halves;
- quantize_input.f32 and quantize_<TYPE>.bin: values with ties, zeros,
  constant and wide blocks, and gguf.quants.quantize of them per type.
"""
import os
import sys

import numpy as np
import gguf
np.seterr(all="ignore")  # random blocks hold NaN and infinite scales on purpose
from gguf import GGMLQuantizationType as Q
from gguf import quants

out = sys.argv[1]
rng = np.random.default_rng(1414)
writer = gguf.GGUFWriter(os.path.join(out, "types.gguf"), "llama")
QUANTIZABLE = [Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]
DEQUANTIZABLE = [
    Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K,
    Q.Q6_K, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.IQ3_XXS, Q.IQ3_S, Q.IQ1_S, Q.IQ1_M, Q.IQ4_NL,
    Q.IQ4_XS, Q.TQ1_0, Q.TQ2_0, Q.MXFP4,
]
names = []
for qtype in DEQUANTIZABLE:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    shape = (3, 2 * max(block, 32))
    if qtype in QUANTIZABLE:
        values = (rng.standard_normal(shape) * 3).astype(np.float32)
        data = quants.quantize(values, qtype)
        names.append((f"q.{qtype.name}", qtype, data))
    rows = rng.integers(0, 256, size=(64, 4 * size), dtype=np.uint8)
    names.append((f"r.{qtype.name}", qtype, rows))
names.append(("all.F16", Q.F16, np.arange(65536, dtype=np.uint16).view(np.uint8).reshape(256, 512)))
for name, qtype, data in names:
    writer.add_tensor(name, data, raw_dtype=qtype)
    expected = quants.dequantize(data, qtype).astype(np.float32, copy=False)
    expected.tofile(os.path.join(out, name + ".f32"))
    expected.astype(np.float16).tofile(os.path.join(out, name + ".f16"))
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()

# Quantization: blocks of 32 (Q*_0/1) covering the awkward cases.
blocks = [
    np.zeros(32),
    np.full(32, 2.5),
    np.full(32, -2.5),
    np.linspace(-1, 1, 32),
    np.arange(32) - 15.5,  # ties after scaling
    np.r_[8.0, -8.0, np.arange(30) * 0.5],  # equal magnitudes, sign of the first wins
    np.r_[-8.0, 8.0, np.arange(30) * 0.5],
    rng.standard_normal(32) * 1e-6,
    rng.standard_normal(32) * 1e4,
    np.r_[1e-30, np.zeros(31)],  # subnormal half scale
    np.r_[65504.0 * 127, np.zeros(31)],  # scale at the top of f16
]
values = np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks])
values = np.concatenate([values, (rng.standard_normal(32 * 64) * 2).astype(np.float32)])
values.astype(np.float32).tofile(os.path.join(out, "quantize_input.f32"))
for qtype in QUANTIZABLE + [Q.F16]:
    quants.quantize(values.reshape(-1, 32), qtype).tofile(os.path.join(out, f"quantize_{qtype.name}.bin"))

# f32 to half over the whole f32 range, as numpy rounds it.
sweep = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
sweep.tofile(os.path.join(out, "sweep.f32"))
sweep.astype(np.float16).tofile(os.path.join(out, "sweep.f16"))
