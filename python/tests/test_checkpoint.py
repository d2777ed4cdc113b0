"""save_checkpoint / load_checkpoint: exact structure, sharing, resumable training."""

import io
import json
import math
from collections import OrderedDict

import pytest
import safetensors
import safetensors.torch
import torch

import safeweights
from safeweights.torch import load_checkpoint, load_file, save_checkpoint


def make_training(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, steps, start):
    losses = []
    for step in range(start, start + steps):
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(32, 8, generator=generator)
        y = x.sum(dim=1, keepdim=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


def test_resumed_training_is_bit_identical(tmp_path):
    reference = make_training()
    expected = train(*reference, steps=6, start=0)

    model, optimizer, scheduler = make_training()
    first = train(model, optimizer, scheduler, steps=3, start=0)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": 3,
    }
    save_checkpoint(state, tmp_path / "ckpt.safetensors")

    restored = load_checkpoint(tmp_path / "ckpt.safetensors")
    model, optimizer, scheduler = make_training(seed=123)
    model.load_state_dict(restored["model"])
    optimizer.load_state_dict(restored["optimizer"])
    scheduler.load_state_dict(restored["scheduler"])
    assert restored["step"] == 3
    second = train(model, optimizer, scheduler, steps=3, start=3)
    assert first + second == expected


def test_structure_types_survive_exactly(tmp_path):
    inner = OrderedDict(b=1, a=2.0)
    inner._metadata = {"": {"version": 2}}
    obj = {
        "ints": {3: "three", -1: None, 10**30: True},
        "floats": [0.0, -0.0, 1.5, math.inf, -math.inf, 1e300, 7.0],
        "nan": math.nan,
        "tuple": (1, (2.0, "x"), []),
        "ordered": inner,
        "set": {1, 2},
        "dtype": torch.bfloat16,
        "device": torch.device("cpu"),
        "size": torch.Size([2, 3]),
        "text": "é \" \\ \n",
        (1, "a"): "tuple key",
    }
    save_checkpoint(obj, tmp_path / "c.safetensors")
    loaded = load_checkpoint(tmp_path / "c.safetensors")
    assert list(loaded) == list(obj)
    assert math.isnan(loaded.pop("nan")) and math.isnan(obj.pop("nan"))
    assert loaded == obj
    assert [type(v) for v in loaded["floats"]] == [float] * 7
    assert str(loaded["floats"][1]) == "-0.0"
    assert type(loaded["tuple"]) is tuple and type(loaded["tuple"][1]) is tuple
    assert type(loaded["ordered"]) is OrderedDict and loaded["ordered"]._metadata == {"": {"version": 2}}
    assert type(loaded["size"]) is torch.Size
    assert list(loaded["ints"]) == [3, -1, 10**30]


def test_shared_tied_and_overlapping_views(tmp_path):
    base = torch.randn(6, 4)
    obj = {
        "embed": base,
        "lm_head": base,  # tied: same storage, same view
        "row": base[2],  # a view into it
        "transposed": base.t(),  # same storage, different strides
        "tail": base.view(-1)[5:17],  # partially overlapping
        "param": torch.nn.Parameter(torch.ones(3)),
        "alone_strided": torch.arange(30.0).reshape(5, 6)[:, ::3],
        "complex128": torch.randn(3, dtype=torch.complex128),
    }
    path = tmp_path / "shared.safetensors"
    save_checkpoint(obj, path)
    loaded = load_checkpoint(path)
    for name, value in obj.items():
        assert torch.equal(loaded[name], value), name
    ptr = loaded["embed"].untyped_storage().data_ptr()
    for name in ["lm_head", "row", "transposed", "tail"]:
        assert loaded[name].untyped_storage().data_ptr() == ptr, name
    assert loaded["embed"].data_ptr() == loaded["lm_head"].data_ptr()
    assert loaded["transposed"].stride() == (1, 4)
    assert isinstance(loaded["param"], torch.nn.Parameter) and loaded["param"].requires_grad
    assert loaded["alone_strided"].is_contiguous()
    loaded["embed"][0, 0] = 42.0
    assert loaded["lm_head"][0, 0] == 42.0 and loaded["transposed"][0, 0] == 42.0
    # The file stays a valid safetensors file for the reference.
    with safetensors.safe_open(path, "pt") as f:
        assert "safeweights.checkpoint" in f.metadata()
        assert f.get_tensor("embed").numel() == 24


def test_file_objects(tmp_path):
    obj = {"w": torch.randn(3, 3), "n": [1, 2]}
    buffer = io.BytesIO()
    save_checkpoint(obj, buffer)
    buffer.seek(0)
    loaded = load_checkpoint(buffer)
    assert torch.equal(loaded["w"], obj["w"]) and loaded["n"] == [1, 2]
    loaded["w"] += 1  # writable, independent of the buffer
    with open(tmp_path / "f.safetensors", "wb") as f:
        save_checkpoint(obj, f)
    with open(tmp_path / "f.safetensors", "rb") as f:
        assert torch.equal(load_checkpoint(f)["w"], obj["w"])
    assert torch.equal(load_checkpoint(tmp_path / "f.safetensors", mmap=False)["w"], obj["w"])


def test_sharded_round_trip(tmp_path):
    obj = {"layers": [torch.full((256,), float(i)) for i in range(10)], "step": 7}
    directory = tmp_path / "sharded"
    save_checkpoint(obj, directory, max_shard_size=2500)
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    shards = sorted({*index["weight_map"].values()})
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == 10 * 256 * 4
    for source in (directory, directory / "model.safetensors.index.json"):
        loaded = load_checkpoint(source)
        assert loaded["step"] == 7
        assert all(torch.equal(a, b) for a, b in zip(loaded["layers"], obj["layers"]))
    flat = load_file(directory / "model.safetensors.index.json")
    assert set(flat) == set(index["weight_map"])
    with safeweights.safe_open(directory / "model.safetensors.index.json", "pt") as f:
        assert f.keys() == sorted(index["weight_map"])
        assert torch.equal(f.get_slice("layers.3")[:4], torch.full((4,), 3.0))


def test_plain_safetensors_file_loads_as_a_dict(tmp_path):
    safeweights.torch.save_file({"a": torch.ones(2)}, tmp_path / "p.safetensors")
    assert torch.equal(load_checkpoint(tmp_path / "p.safetensors")["a"], torch.ones(2))


def test_unsupported_values_raise_type_error(tmp_path):
    with pytest.raises(TypeError, match="at x.1"):
        save_checkpoint({"x": [1, object()]}, tmp_path / "bad.safetensors")
    with pytest.raises(TypeError, match="meta tensor at x"):
        save_checkpoint({"x": torch.zeros(2, device="meta")}, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_corrupt_structure_raises_checkpoint_error(tmp_path):
    for structure in ["not json", '{"version": 99}', '{"version": 1, "root": {"$tensor": "missing"}}',
                      '{"version": 1, "root": {"$dtype": "load"}}', '{"version": 1, "root": {"$nope": 1}}']:
        path = tmp_path / "c.safetensors"
        safeweights.torch.save_file({"a": torch.ones(1)}, path, metadata={"safeweights.checkpoint": structure})
        with pytest.raises(safeweights.CheckpointError):
            load_checkpoint(path)


def converted_file(path, tensors, aliases, values=None):
    """A file as `safeweights convert` (and the reference's convert) writes
    it: `format: pt`, tied weights once with `alias: kept` in the metadata,
    optionally the plain values as JSON."""
    metadata = {"format": "pt", **aliases}
    if values is not None:
        metadata["safeweights.values"] = json.dumps(values)
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    return path


def test_converted_file_restores_tied_weights_as_one_tensor(tmp_path):
    embed = torch.randn(10, 4)
    path = converted_file(
        tmp_path / "model.safetensors",
        {"embed.weight": embed, "fc.bias": torch.zeros(3)},
        {"lm_head.weight": "embed.weight", "note": "not a tensor name"},
        values={"epoch": 3, "lr": 0.1},
    )
    state = load_checkpoint(path)
    assert list(state) == ["embed.weight", "fc.bias", "lm_head.weight"]
    assert state["lm_head.weight"] is state["embed.weight"]
    assert torch.equal(state["embed.weight"], embed)
    # Same tensors as load_file, which does not restore aliases.
    plain = load_file(path)
    assert set(plain) == {"embed.weight", "fc.bias"}
    assert all(torch.equal(plain[k], state[k]) for k in plain)
    # Loads into a tied model.
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(10, 4)
    model.lm_head = torch.nn.Linear(4, 10, bias=False)
    model.lm_head.weight = model.embed.weight
    model.load_state_dict({k: v for k, v in state.items() if k != "fc.bias"})
    assert torch.equal(model.lm_head.weight, embed)


def test_alias_rules(tmp_path):
    # A key that is itself a tensor is never an alias; "format" and the
    # safeweights.* keys never are either, even when their value names a tensor.
    path = converted_file(
        tmp_path / "model.safetensors",
        {"a": torch.ones(2), "b": torch.zeros(2), "pt": torch.ones(1)},
        {"b": "a", "safeweights.x": "a", "c": "missing", "d": "a"},
    )
    state = load_checkpoint(path, mmap=False)
    assert set(state) == {"a", "b", "pt", "d"}
    assert state["d"] is state["a"] and state["b"] is not state["a"]
    assert torch.equal(state["b"], torch.zeros(2))


def test_plain_file_without_metadata_matches_load_file(tmp_path):
    path = tmp_path / "plain.safetensors"
    tensors = {"x": torch.randn(3, 3), "y": torch.arange(5)}
    safetensors.torch.save_file(tensors, path)
    state = load_checkpoint(path)
    assert list(state) == list(load_file(path)) and all(torch.equal(state[k], tensors[k]) for k in tensors)
    with open(path, "rb") as f:
        assert set(load_checkpoint(f)) == {"x", "y"}


def test_sharded_converted_checkpoint_restores_aliases_of_every_shard(tmp_path):
    first, second = torch.randn(4), torch.randn(6)
    converted_file(tmp_path / "model-00001-of-00002.safetensors", {"a": first}, {"a_tied": "a"})
    converted_file(tmp_path / "model-00002-of-00002.safetensors", {"b": second}, {"b_tied": "b"})
    index = {
        "metadata": {"total_size": 40},
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        },
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    for source in (tmp_path, tmp_path / "model.safetensors.index.json"):
        state = load_checkpoint(source)
        assert set(state) == {"a", "b", "a_tied", "b_tied"}
        assert state["a_tied"] is state["a"] and state["b_tied"] is state["b"]
        assert torch.equal(state["b"], second)


@pytest.mark.parametrize(
    "view",
    [
        '"offset":12,"shape":[2,4],"stride":[4,1]',
        '"offset":0,"shape":[5],"stride":[4]',
        '"offset":-1,"shape":[1],"stride":[1]',
        '"offset":0,"shape":[2],"stride":[-1]',
    ],
)
def test_view_records_cannot_reach_outside_their_entry(tmp_path, view):
    # Checked against the entry, not the storage behind it: on a GPU every
    # entry of a load is a view of one shared allocation.
    path = tmp_path / "v.safetensors"
    structure = '{"version":1,"root":{"$view":"a","dtype":"float32",' + view + "}}"
    safeweights.torch.save_file({"a": torch.arange(16.0), "b": torch.ones(64)}, path, metadata={"safeweights.checkpoint": structure})
    with pytest.raises(safeweights.CheckpointError, match="view"):
        load_checkpoint(path)
