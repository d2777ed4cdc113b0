#!/usr/bin/env python3
"""Writes the seed corpus of the pickle_vm and zip_reader fuzz targets:
tiny real torch checkpoints (zip and legacy), their pickles, plain and
malicious pickles, and .npz archives. Nothing here is ever unpickled.

Needs torch and numpy: .venv/bin/python fuzz/make_pickle_corpus.py
"""
import io
import os
import pickle
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


class Reduce:
    """Pickles as a call of `fn(*args)`; used only to write bytes."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def torch_bytes(obj, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def data_pkl(zip_bytes):
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))


def zipped(members, compression=zipfile.ZIP_STORED, **kw):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression, **kw) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def zip64(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open(name, "w", force_zip64=True) as f:
        f.write(data)
    return buf.getvalue()


def npz(compressed, **arrays):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
state = {"w": w, "t": w.t(), "b": torch.tensor([1, 2], dtype=torch.int16), "tied": w}
zip_ckpt = torch_bytes(state)
legacy = torch_bytes(state, _use_new_zipfile_serialization=False)

PICKLE_SEEDS = {
    "torch_data_pkl": data_pkl(zip_ckpt),
    "torch_data_pkl_p4": data_pkl(torch_bytes(state, pickle_protocol=4)),
    "legacy_checkpoint": legacy,
    "legacy_bfloat16_view": torch_bytes({"v": torch.ones(4).bfloat16()[1:]}, _use_new_zipfile_serialization=False),
    "literals_p2": pickle.dumps({"a": [1, -2.5, "x", b"y", None, True, (3, 2**70)], "s": {1, 2}}, protocol=2),
    "literals_p4": pickle.dumps({"k" * 40: list(range(20))}, protocol=4),
    "memo_shared": pickle.dumps([[1, 2]] * 3, protocol=2),
    "os_system": pickle.dumps(Reduce(os.system, "true"), protocol=2),
    "eval_p4": pickle.dumps(Reduce(eval, "1"), protocol=4),
    "protocol0_inst": b"(S'true'\nios\nsystem\np0\n.",
    "pop_hides_call": b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R0N.",
}

ZIP_SEEDS = {
    "torch_zip": zip_ckpt,
    "torch_zip_scalar": torch_bytes(torch.tensor(1.5)),
    "torchscript_like": zipped({"a/data.pkl": data_pkl(zip_ckpt), "a/constants.pkl": b"\x80\x02)."}),
    "npz": npz(False, a=np.arange(3, dtype=np.float32), f=np.asfortranarray(np.eye(2, 3)), b=np.array(True)),
    "npz_deflated": npz(True, x=np.arange(8, dtype=">i4").reshape(2, 4)),
    "zip64": zip64("a.npy", b"\x93NUMPY\x01\x00" + b"x" * 8),
    "deflated_member": zipped({"archive/data.pkl": data_pkl(zip_ckpt), "archive/data/0": bytes(24)},
                              zipfile.ZIP_DEFLATED),
}


def write(target, seeds):
    path = os.path.join(HERE, "corpus", target)
    os.makedirs(path, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(path, "seed-" + name), "wb") as f:
            f.write(data)
    return sum(len(d) for d in seeds.values())


total = write("pickle_vm", PICKLE_SEEDS) + write("zip_reader", ZIP_SEEDS)
print(f"{len(PICKLE_SEEDS) + len(ZIP_SEEDS)} seeds, {total} bytes")
assert total < 50_000, "keep the committed corpus small"
