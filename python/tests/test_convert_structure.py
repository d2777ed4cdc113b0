"""`safeweights convert` keeps a training checkpoint's structure:
safeweights.load of the output is exactly torch.load(weights_only=True) of
the input, nesting, container, key and scalar types included."""

import json
import math
import subprocess
from collections import Counter, OrderedDict

import pytest
import torch

import safeweights
import safeweights.torch
from exact import assert_exact
from frameworks import cli


def training_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(2):
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    weight = torch.arange(12.0).reshape(3, 4)
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "epoch": 3,
        "best": {"loss": 0.125, "nan": math.nan, "inf": -math.inf, "big": 2**63 + 5, "neg": -7},
        "shape": torch.Size([2, 3]),
        "dtype": torch.bfloat16,
        "pair": (1, "a", None, True),
        "tags": {"x", "y"},
        "raw": b"\x00\xff", "buffer": bytearray(b"abc"), "z": 1 + 2j,
        "keys": {1: "one", "two": 2, False: "no", "ünï": "code"},
        "parameter": torch.nn.Parameter(torch.ones(2)),
        "grad": torch.zeros(3).requires_grad_(True),
        "tied_a": weight, "tied_b": weight,
        "transposed": weight.t(), "row": weight[1],
        "empty": OrderedDict(), "nested": [[], {}, ()],
        "device": torch.device("cpu"), "cuda": torch.device("cuda", 1), "counts": Counter({"a": 2, 3: 1}),
    }  # fmt: skip


def convert(source, output):
    done = subprocess.run([cli(), "--json", "convert", str(source), str(output)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # Values the flat metadata cannot hold (NaN, bytes...) are in the structure.
    assert report["structure"] is True and report["skipped"] == [], report


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_converted_training_checkpoint_loads_as_torch_load(tmp_path, legacy):
    source, output = tmp_path / "train.pt", tmp_path / "train.safetensors"
    torch.save(training_state(), source, _use_new_zipfile_serialization=not legacy)
    convert(source, output)
    want = torch.load(source, weights_only=True)
    got = safeweights.load(output)
    # Stored contiguous: same values, strides of its own (exact.py views bytes).
    assert torch.equal(got.pop("transposed"), want.pop("transposed"))
    assert_exact(got, want)
    assert got["model"]._metadata == want["model"]._metadata
    assert got["tied_a"] is got["tied_b"], "tied tensors come back as one"
    # Any safetensors reader still sees every tensor by its dotted name.
    with safeweights.safe_open(output, "pt") as f:
        assert {"model.0.weight", "optimizer.state.0.exp_avg", "rng", "row"} <= set(f.keys())
        structure = json.loads(f.metadata()["safeweights.checkpoint"])
    assert structure["version"] == 2


def test_plain_state_dict_converts_to_an_ordered_dict(tmp_path):
    source, output = tmp_path / "pytorch_model.bin", tmp_path / "model.safetensors"
    torch.save(torch.nn.Linear(2, 2).state_dict(), source)
    convert(source, output)
    assert_exact(safeweights.load(output), torch.load(source, weights_only=True))
    assert safeweights.torch.load_file(output).keys() == {"weight", "bias"}


def test_drop_values_writes_flat_tensors_only(tmp_path):
    source, output = tmp_path / "train.pt", tmp_path / "flat.safetensors"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 1}, source)
    done = subprocess.run([cli(), "convert", "--drop-values", str(source), str(output)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    with safeweights.safe_open(output, "pt") as f:
        assert "safeweights.checkpoint" not in f.metadata()
    assert list(safeweights.load(output)) == ["model.w"]


@pytest.mark.parametrize("outside", ["complex128", "numpy"])
def test_values_the_structure_cannot_hold_leave_a_flat_file_and_say_so(tmp_path, outside):
    import numpy as np

    source, output = tmp_path / "c.pt", tmp_path / "c.safetensors"
    value = torch.ones(2, dtype=torch.complex128) if outside == "complex128" else np.arange(3)
    torch.save({"w": torch.ones(2), "c128": value}, source)
    done = subprocess.run([cli(), "--json", "convert", str(source), str(output)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["structure"] is False
    assert any(item["path"] == "c128" for item in report["skipped"]), report
    assert any(item["path"] == "" and "structure" in item["reason"] for item in report["skipped"]), report
    with safeweights.safe_open(output, "pt") as f:
        assert "safeweights.checkpoint" not in f.metadata()


def test_a_lightning_checkpoint_written_by_torch_save_converts_exactly(tmp_path):
    """A real training checkpoint: Lightning's default TorchCheckpointIO
    (torch.save) with weights, optimizer and scheduler states, loops,
    callbacks and hyperparameters."""
    import lightning
    from test_framework_lightning import Tiny, loader

    lightning.seed_everything(0, verbose=False)
    hparams = dict(lr=0.05, hidden=8, name="tiny", betas=(0.9, 0.99), layers=[8, 4], nesterov=False, note=None, table={1: "one"})
    trainer = lightning.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[lightning.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)],
    )
    trainer.fit(Tiny(**hparams), loader())
    source, output = tmp_path / "ckpts" / "last.ckpt", tmp_path / "last.safetensors"
    convert(source, output)
    got, want = safeweights.load(output), torch.load(source, weights_only=True)
    assert_exact(got, want)
    assert got["hyper_parameters"] == hparams and got["optimizer_states"][0]["state"]
