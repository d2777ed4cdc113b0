"""`map_location` sees the location a `torch.save` file saved each storage
from, as `torch.load` does.

The files are written by the real `torch.save` (zip and legacy formats) on
the cpu, with torch's own `location_tag` patched so that the persistent ids
say `cuda:1` / `cuda:0`, exactly as a save from those GPUs writes them. The
oracle is `torch.load` with the same `map_location`: a callable that
records what it is passed, and dicts that map those locations.
"""

from __future__ import annotations

import collections

import pytest
import torch

import safeweights

# Saved location of each tensor of the state, by name.
LOCATIONS = {"a": "cuda:1", "b": "cuda:0", "c": "cpu"}
FORMATS = {"zip": True, "legacy": False}


def _state():
    return {
        "a": torch.arange(6.0).reshape(2, 3),
        "b": torch.arange(4, dtype=torch.int64),
        "nested": {"c": torch.ones(3, dtype=torch.float16)},
    }


def _tensors(state):
    return {"a": state["a"], "b": state["b"], "c": state["nested"]["c"]}


def _save_with_locations(path, zip_format, monkeypatch):
    """`torch.save` whose persistent ids carry LOCATIONS' tags."""
    state = _state()
    tags = {t.untyped_storage().data_ptr(): LOCATIONS[name] for name, t in _tensors(state).items()}
    original = torch.serialization.location_tag

    def location_tag(storage):
        return tags.get(storage.data_ptr(), original(storage))

    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", location_tag)
        torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    return state


def _recorder():
    seen = []

    def record(storage, location):
        seen.append((type(storage).__name__, location, storage.nbytes()))
        return storage

    return record, seen


def _assert_same(got, expected):
    for name, tensor in _tensors(expected).items():
        loaded = _tensors(got)[name]
        assert loaded.device == torch.device("cpu"), name
        assert loaded.dtype == tensor.dtype and torch.equal(loaded, tensor), name


@pytest.mark.parametrize("kind", list(FORMATS))
def test_a_callable_gets_the_saved_locations_as_torch_load_gives_them(tmp_path, kind, monkeypatch):
    path = tmp_path / f"{kind}.pt"
    state = _save_with_locations(path, FORMATS[kind], monkeypatch)
    ours, ours_seen = _recorder()
    theirs, theirs_seen = _recorder()
    got = safeweights.load(path, ours)
    expected = torch.load(path, theirs, weights_only=True)
    assert sorted(ours_seen) == sorted(theirs_seen)
    assert sorted(location for _, location, _ in ours_seen) == ["cpu", "cuda:0", "cuda:1"]
    _assert_same(got, state)
    _assert_same(expected, state)


@pytest.mark.parametrize("kind", list(FORMATS))
def test_a_file_object_carries_the_saved_locations_too(tmp_path, kind, monkeypatch):
    path = tmp_path / f"{kind}.pt"
    _save_with_locations(path, FORMATS[kind], monkeypatch)
    ours, seen = _recorder()
    with open(path, "rb") as f:
        safeweights.load(f, ours)
    assert sorted(location for _, location, _ in seen) == ["cpu", "cuda:0", "cuda:1"]


@pytest.mark.parametrize("kind", list(FORMATS))
def test_a_dict_maps_the_saved_locations(tmp_path, kind, monkeypatch):
    path = tmp_path / f"{kind}.pt"
    state = _save_with_locations(path, FORMATS[kind], monkeypatch)
    mapping = {"cuda:1": "cpu", "cuda:0": "cpu"}
    _assert_same(safeweights.load(path, mapping), state)
    _assert_same(torch.load(path, mapping, weights_only=True), state)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")
@pytest.mark.parametrize("kind", list(FORMATS))
def test_an_unmapped_cuda_location_is_refused_without_cuda_as_torch_refuses_it(tmp_path, kind, monkeypatch):
    path = tmp_path / f"{kind}.pt"
    _save_with_locations(path, FORMATS[kind], monkeypatch)
    for map_location in (None, {"cuda:1": "cpu"}):
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, map_location, weights_only=True)
        with pytest.raises(safeweights.CheckpointError, match=r"cuda:\d.*CUDA is not available.*map_location='cpu'"):
            safeweights.load(path, map_location)


@pytest.mark.parametrize("kind", list(FORMATS))
def test_a_callable_returning_none_keeps_the_saved_location(tmp_path, kind, monkeypatch):
    path = tmp_path / f"{kind}.pt"
    state = _save_with_locations(path, FORMATS[kind], monkeypatch)

    def only_gpus(storage, location):
        return storage if location.startswith("cuda") else None

    _assert_same(safeweights.load(path, only_gpus), state)
    _assert_same(torch.load(path, only_gpus, weights_only=True), state)


@pytest.mark.parametrize("kind", list(FORMATS))
def test_a_location_that_is_no_device_is_a_clear_error(tmp_path, kind, monkeypatch):
    path = tmp_path / f"{kind}.pt"
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "nowhere:3")
        torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=FORMATS[kind])
    with pytest.raises(safeweights.CheckpointError, match="'nowhere:3'.*map_location"):
        safeweights.load(path)
    got = safeweights.load(path, {"nowhere:3": "cpu"})
    assert torch.equal(got["w"], torch.ones(2))


def test_patched_torch_load_passes_the_saved_locations_on(tmp_path, monkeypatch):
    path = tmp_path / "zip.pt"
    state = _save_with_locations(path, True, monkeypatch)
    ours, seen = _recorder()
    with safeweights.patch_torch():
        got = torch.load(path, map_location=ours, weights_only=True)
    assert sorted(location for _, location, _ in seen) == ["cpu", "cuda:0", "cuda:1"]
    _assert_same(got, state)


def test_containers_keep_their_types_when_a_dict_maps_locations(tmp_path, monkeypatch):
    path = tmp_path / "sd.pt"
    state = {"model": torch.nn.BatchNorm1d(2).state_dict(), "counts": collections.Counter(a=1)}
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:2")
        torch.save(state, path)
    got = safeweights.load(path, {"cuda:2": "cpu"})
    assert type(got["model"]) is collections.OrderedDict and got["model"]._metadata == state["model"]._metadata
    assert all(torch.equal(got["model"][k], v) for k, v in state["model"].items())
    assert got["counts"] == state["counts"]


def test_meta_as_a_string_is_taken_as_torch_load_takes_it(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(3)}, path)
    for where in ("meta", torch.device("meta"), {"cpu": "meta"}):
        got = safeweights.load(path, where)
        assert got["w"].device.type == "meta" and got["w"].shape == torch.load(path, map_location=where)["w"].shape


def test_a_safeweights_checkpoint_records_the_device_its_tensors_were_on(tmp_path):
    """What `safeweights.save` records for a non-cpu tensor (the device as
    torch names it), as map_location then sees it; the meta device stands
    in for a GPU on machines without one and is refused with a clear
    message, so the record is checked through the planner itself."""
    from safeweights._checkpoint import _describe

    record: dict = {}
    _describe(torch.empty(2, device="meta"), record)
    assert record == {"device": "meta"}
    if torch.cuda.is_available():
        path = tmp_path / "gpu.safetensors"
        safeweights.save({"w": torch.ones(2, device="cuda:0")}, path)
        ours, seen = _recorder()
        got = safeweights.load(path, ours)
        assert [location for _, location, _ in seen] == ["cuda:0"]
        assert got["w"].device == torch.device("cpu")
        assert safeweights.load(path, {"cuda:0": "cpu"})["w"].device == torch.device("cpu")


# Quantized tensors: torch rebuilds them on their storage's device, so
# map_location reaches them too (regression: they stayed on the cpu whatever
# map_location said, and a callable never saw their storages).


def _quantized_state():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantized creation functions
        per_tensor = torch.quantize_per_tensor(torch.arange(6.0), 0.5, 2, torch.qint8)
        per_channel = torch.quantize_per_channel(
            torch.arange(6.0).reshape(2, 3), torch.tensor([0.5, 0.25]), torch.tensor([1, 0]), 0, torch.quint8
        )
    return {"q": per_tensor, "pc": per_channel, "w": torch.ones(2)}


def _quantized_files(tmp_path):
    state = _quantized_state()
    for name, zip_format in FORMATS.items():
        torch.save(state, tmp_path / f"{name}.pt", _use_new_zipfile_serialization=zip_format)
    safeweights.save(state, tmp_path / "ours.safetensors")
    return [tmp_path / "zip.pt", tmp_path / "legacy.pt", tmp_path / "ours.safetensors"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_callable_sees_quantized_storages_as_torch_load_shows_them(tmp_path):
    zip_file, legacy_file, ours = _quantized_files(tmp_path)
    for path in (zip_file, legacy_file):
        expected_record, expected = _recorder()
        torch.load(path, map_location=expected_record, weights_only=True)
        record, seen = _recorder()
        got = safeweights.load(path, record)
        assert collections.Counter(seen) == collections.Counter(expected), path.name
        for key, value in _quantized_state().items():
            assert torch.equal(got[key].int_repr() if value.is_quantized else got[key], value.int_repr() if value.is_quantized else value)
    record, seen = _recorder()
    got = safeweights.load(ours, record)
    # Every storage of the state, quantized ones included, went through the callable.
    assert len(seen) == 5 and {location for _, location, _ in seen} == {"cpu"}
    assert got["pc"].q_per_channel_axis() == 0 and torch.equal(got["pc"].dequantize(), _quantized_state()["pc"].dequantize())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quantized_tensors_go_where_map_location_says_as_torch_load_sends_them(tmp_path):
    # No GPU here: `meta` is a device every torch has, and torch has no
    # quantized kernels for it. torch.load fails on it; a loader that left
    # quantized tensors on the cpu would quietly succeed.
    for path in _quantized_files(tmp_path):
        if path.suffix == ".pt":
            with pytest.raises(NotImplementedError):
                torch.load(path, map_location="meta", weights_only=True)
        with pytest.raises(NotImplementedError, match="Quantized"):
            safeweights.load(path, torch.device("meta"))
        with pytest.raises(NotImplementedError, match="Quantized"):
            safeweights.load(path, {"cpu": "meta"})
        with pytest.raises(NotImplementedError, match="Quantized"):
            safeweights.load(path, "meta")
        got = safeweights.load(path, {"cpu": "cpu"})
        assert got["q"].device == torch.device("cpu") and got["q"].q_scale() == 0.5
