"""Writes the CLI test fixtures into OUTDIR with the reference `safetensors`
package and torch, plus `expected.json` holding statistics and diffs
computed independently with torch in float64.

Usage: python fixtures.py OUTDIR
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from safetensors.numpy import save_file as np_save
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
expected = {}

FLOAT8 = {
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz,
    "F8_E5M2FNUZ": torch.float8_e5m2fnuz,
    "F8_E8M0": torch.float8_e8m0fnu,
}


def path(name):
    return os.path.join(out, name)


def all_dtypes():
    base = torch.randn(6, 7, dtype=torch.float64) * 3
    base[0, 0] = 0.0
    t = {
        "f64": base.clone(),
        "f32": base.to(torch.float32),
        "f16": base.to(torch.float16),
        "bf16": base.to(torch.bfloat16),
        "i64": (base * 1000).to(torch.int64),
        "i32": (base * 100).to(torch.int32),
        "i16": (base * 100).to(torch.int16),
        "i8": (base * 10).to(torch.int8),
        "u8": (base.abs() * 10).to(torch.uint8),
        "u16": (base.abs() * 100).to(torch.int32).to(torch.uint16),
        "u32": (base.abs() * 100).to(torch.int64).to(torch.uint32),
        "bool": base > 0,
        "nonfinite": torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 0.0, -2.5]),
        "f16_inf": torch.tensor([70000.0, -1.0, 0.5], dtype=torch.float32).to(torch.float16),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(2, 0),
        "big_f32": torch.randn(1000, 257) * 1e3 + 1e4,
    }
    for name, dtype in FLOAT8.items():
        source = base.abs() + 0.01 if name == "F8_E8M0" else base
        t[name.lower()] = source.to(dtype)
    return t


def torch_stats(x):
    v = x.to(torch.float64).flatten()
    finite = v[torch.isfinite(v)]
    stat = {
        "count": v.numel(),
        "nan": int(torch.isnan(v).sum()),
        "pos_inf": int((v == float("inf")).sum()),
        "neg_inf": int((v == -float("inf")).sum()),
        "zeros": int((v == 0).sum()),
        "min": None, "max": None, "mean": None, "std": None,
    }
    if finite.numel():
        stat.update(min=finite.min().item(), max=finite.max().item(),
                    mean=finite.mean().item(), std=finite.std(correction=0).item())
    return stat


# --- every dtype, written by safetensors.torch -------------------------------
tensors = all_dtypes()
save_file(tensors, path("all.safetensors"), metadata={"format": "pt", "note": "fixture"})
expected["stats"] = {name: torch_stats(t) for name, t in tensors.items()}
expected["f32_values"] = tensors["f32"].flatten().tolist()
expected["f16_values"] = tensors["f16"].to(torch.float64).flatten().tolist()

# --- sub-byte floats, written by hand (torch cannot convert them) -------------
F4 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
F4 = F4 + [-v for v in F4]


def minifloat(bits, exp_bits, man_bits, bias):
    sign = -1.0 if bits >> (exp_bits + man_bits) & 1 else 1.0
    e = bits >> man_bits & ((1 << exp_bits) - 1)
    m = bits & ((1 << man_bits) - 1)
    if e == 0:
        return sign * m / (1 << man_bits) * 2.0 ** (1 - bias)
    return sign * (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)


rng = np.random.default_rng(1)
f4_codes = rng.integers(0, 16, size=64)
f4_bytes = bytes(int(f4_codes[2 * i]) | int(f4_codes[2 * i + 1]) << 4 for i in range(32))
f6_codes = rng.integers(0, 64, size=32)
f6_bytes = b""
for i in range(0, 32, 4):
    word = sum(int(f6_codes[i + k]) << (6 * k) for k in range(4))
    f6_bytes += word.to_bytes(3, "little")
header = {
    "f4": {"dtype": "F4", "shape": [8, 8], "data_offsets": [0, 32]},
    "f6_e2m3": {"dtype": "F6_E2M3", "shape": [32], "data_offsets": [32, 56]},
    "f6_e3m2": {"dtype": "F6_E3M2", "shape": [32], "data_offsets": [56, 80]},
}
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-(8 + len(text)) % 8)
with open(path("subbyte.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + f4_bytes + f6_bytes + f6_bytes)
sub = {
    "f4": torch.tensor([F4[c] for c in f4_codes], dtype=torch.float64),
    "f6_e2m3": torch.tensor([minifloat(int(c), 2, 3, 1) for c in f6_codes], dtype=torch.float64),
    "f6_e3m2": torch.tensor([minifloat(int(c), 3, 2, 3) for c in f6_codes], dtype=torch.float64),
}
expected["subbyte_stats"] = {n: torch_stats(t) for n, t in sub.items()}
expected["f4_values"] = sub["f4"].tolist()

# --- two checkpoints to diff ---------------------------------------------------
a = {k: v for k, v in all_dtypes().items() if k not in ("big_f32",)}
b = {k: v.clone() for k, v in a.items()}
b["f32"][1, 2] += 0.5
b["f32"][3, 3] -= 1e-7
b["bf16"][0, 1:4] += 1
b["f64"][5, 6] = float("nan")
b["nonfinite"] = a["nonfinite"].clone()  # NaN in both: equal only with --equal-nan
b["nonfinite"][0] = 1.0 + 1e-6
for name, dtype in FLOAT8.items():
    key = name.lower()
    b[key] = (a[key].to(torch.float32) * 2).to(dtype)
b["i64"][0, 0] += 7
b["only_b"] = torch.ones(2)
a["only_a"] = torch.ones(3)
b["i8"] = a["i8"].to(torch.int16)
b["u8"] = a["u8"].reshape(7, 6)
save_file(a, path("diff_a.safetensors"), metadata={"format": "pt", "step": "1"})
save_file(b, path("diff_b.safetensors"), metadata={"format": "pt", "step": "2", "extra": "x"})


def torch_diff(x, y, atol, rtol, equal_nan):
    x = x.to(torch.float64).flatten()
    y = y.to(torch.float64).flatten()
    close = torch.isclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan)
    both = torch.isfinite(x) & torch.isfinite(y)
    d = (x - y).abs()[both]
    return {
        "differing": int((~close).sum()),
        "max_abs_diff": d.max().item() if d.numel() else 0.0,
        "mean_abs_diff": d.mean().item() if d.numel() else 0.0,
        "identical": bool(x.numel() == 0 or torch.equal(x, y) and not torch.isnan(x).any()),
    }


diffs = {}
for atol, rtol, equal_nan in [(0.0, 0.0, False), (1e-6, 1e-5, True), (0.6, 0.0, False)]:
    key = f"{atol}/{rtol}/{equal_nan}"
    diffs[key] = {
        n: torch_diff(a[n], b[n], atol, rtol, equal_nan)
        # Across dtypes too (i8 against its int16 copy): values are compared.
        for n in a if n in b and a[n].shape == b[n].shape
    }
expected["diff"] = diffs

# --- a sharded checkpoint (Hugging Face layout), written shard by shard -------
os.makedirs(path("sharded"), exist_ok=True)
layers = {f"layer.{i}.weight": torch.randn(16, 16) for i in range(5)}
layers["embed"] = torch.randn(10, 16).to(torch.bfloat16)
names = sorted(layers)
groups = [names[0:2], names[2:4], names[4:]]
weight_map = {}
for i, group in enumerate(groups):
    fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
    save_file({n: layers[n] for n in group}, path(f"sharded/{fname}"), metadata={"format": "pt"})
    weight_map.update({n: fname for n in group})
total = sum(t.numel() * t.element_size() for t in layers.values())
with open(path("sharded/model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
expected["sharded_stats"] = {n: torch_stats(t) for n, t in layers.items()}

# --- numpy-written file, and a large one for pipes ------------------------------
np_save({"x": np.arange(12, dtype=np.int32).reshape(3, 4), "y": np.linspace(0, 1, 5)}, path("numpy.safetensors"))
save_file({f"t{i:05d}": torch.zeros(1) for i in range(6000)}, path("many.safetensors"))
save_file({"w": torch.randn(4096, 1024)}, path("remote.safetensors"), metadata={"source": "remote"})
save_file({f"tensor.with.a.fairly.long.name.{i:05d}": torch.zeros(2) for i in range(2000)}, path("bighdr.safetensors"))

# --- broken files -----------------------------------------------------------------
good = open(path("numpy.safetensors"), "rb").read()
broken = {
    "truncated.safetensors": good[:-5],
    "trailing.safetensors": good + b"\0\0\0",
    "empty.safetensors": b"",
    "tiny.safetensors": b"\x01\x02",
    "lfs.safetensors": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",
    "html.safetensors": b"<!DOCTYPE html><html><body>404</body></html>",
    "badjson.safetensors": struct.pack("<Q", 8) + b"{nope!!}",
    "huge_header.safetensors": struct.pack("<Q", 1 << 60) + b"{}",
}
for name, data in broken.items():
    with open(path(name), "wb") as f:
        f.write(data)

with open(path("expected.json"), "w") as f:
    json.dump(expected, f)
