"""Legacy torch.save files load like torch.load(weights_only=True), safely."""

import io
import os
import pickle

import pytest
import torch

import safeweights
from safeweights.torch import load_checkpoint


def training_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    tied = torch.randn(3, 3)
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "tied": [tied, tied, tied[1]],
        "dtypes": torch.float16,
        "extra": {"bf16": torch.randn(4).bfloat16(), "i64": torch.arange(5), "empty": torch.zeros(0, 3)},
    }


def assert_same(a, b):
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_values_equal_torch_load_weights_only(zipfile, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(training_state(), path, _use_new_zipfile_serialization=zipfile)
    expected = torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert_same(loaded, expected)
    assert loaded["tied"][0].data_ptr() == loaded["tied"][1].data_ptr()
    with open(path, "rb") as f:
        assert_same(load_checkpoint(io.BytesIO(f.read())), expected)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_malicious_checkpoint_is_refused_and_runs_nothing(zipfile, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.ones(2), "x": Payload(marker)}, path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(safeweights.UnsafeCheckpointError, match="system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_raw_pickle_with_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps({"x": Payload(marker)}, protocol=2))
    with pytest.raises(safeweights.CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_pickle_checkpoint_raises_checkpoint_error(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(10)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(safeweights.CheckpointError):
        load_checkpoint(path)


def test_map_location_moves_tensors(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    assert load_checkpoint(path, map_location="cpu")["w"].device.type == "cpu"


def test_zip_tensors_are_writable_views_that_never_reach_the_file(tmp_path):
    path = tmp_path / "model.pt"
    base = torch.arange(12.0)
    strided = torch.arange(6.0).reshape(2, 3).t()
    state = {"w": base, "tied": base, "part": base[4:8], "strided": strided, "i8": torch.ones(3, dtype=torch.int8)}
    torch.save(state, path)
    before = path.read_bytes()
    loaded = load_checkpoint(path)
    assert loaded["w"] is loaded["tied"]
    # A view of the same record shares its memory, as torch.load's does.
    assert loaded["part"].data_ptr() == loaded["w"].data_ptr() + 4 * 4
    assert torch.equal(loaded["strided"], state["strided"])
    for name in ("w", "strided", "i8"):
        loaded[name] += 1
    assert loaded["part"].tolist() == [5.0, 6.0, 7.0, 8.0]
    assert path.read_bytes() == before
    assert_same(load_checkpoint(path), torch.load(path, weights_only=True))


def test_pre_zip_format_tensors_are_writable_and_never_reach_the_file(tmp_path):
    path = tmp_path / "legacy.bin"
    base = torch.arange(12.0)
    state = {"w": base, "tied": base, "f64": torch.ones(3, dtype=torch.float64)}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    before = path.read_bytes()
    loaded = load_checkpoint(path)
    assert loaded["w"] is loaded["tied"]
    for tensor in loaded.values():
        tensor += 1
    assert path.read_bytes() == before
    assert_same(load_checkpoint(path), torch.load(path, weights_only=True))


def test_deflated_zip_records_are_read(tmp_path):
    import zipfile

    stored, deflated = tmp_path / "stored.pt", tmp_path / "deflated.pt"
    torch.save({"w": torch.arange(100.0), "b": torch.ones(3, dtype=torch.bfloat16)}, stored)
    with zipfile.ZipFile(stored) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert_same(load_checkpoint(deflated), torch.load(stored, weights_only=True))
