"""Views of one storage in a torch.save file come back sharing memory, as
torch.load gives them (issue 15): same values, strides and storage offsets,
one storage per saved storage, writes through one view seen by the others."""

import io

import pytest
import torch

import safeweights
from safeweights.torch import load_checkpoint


def views() -> dict:
    weight = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    flat = torch.arange(10.0)
    return {
        "weight": weight,
        "row": weight[1],  # a storage offset
        "transposed": weight.t(),  # non-contiguous
        "strided": weight[:, ::2],  # non-contiguous with gaps
        "tail": weight.view(-1)[10:],
        "a": flat,
        "b": flat[2:5],  # overlaps c
        "c": flat.view(2, 5),
        "d": flat[4:9],  # overlaps b and c
        "alone_slice": torch.arange(8, dtype=torch.int64)[3:6],  # the only view of its storage
        "alone_t": torch.arange(6, dtype=torch.float64).reshape(2, 3).t(),
        "param": torch.nn.Parameter(torch.ones(2, 3)),
        "other": torch.ones(3),
        "empty": torch.empty(0),
    }


def same_storage(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()


def save(path, zip_format: bool) -> None:
    state = views()
    state["param_row"] = state["param"].detach()[0]
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("load", [load_checkpoint, safeweights.load], ids=["load_checkpoint", "safeweights.load"])
def test_views_of_one_storage_share_memory_like_torch_load(tmp_path, zip_format, load):
    path = tmp_path / "views.pt"
    save(path, zip_format)
    expected = torch.load(path, weights_only=True)
    loaded = load(path)
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert type(loaded[name]) is type(tensor), name
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name
        assert loaded[name].stride() == tensor.stride(), name
        assert loaded[name].storage_offset() == tensor.storage_offset(), name
        assert loaded[name].is_contiguous() == tensor.is_contiguous(), name
        assert loaded[name].untyped_storage().nbytes() == tensor.untyped_storage().nbytes(), name
    # Which tensors share a storage is exactly torch.load's answer.
    for x in expected:
        for y in expected:
            if expected[x].numel() and expected[y].numel():
                assert same_storage(loaded[x], loaded[y]) == same_storage(expected[x], expected[y]), (x, y)
    assert same_storage(loaded["weight"], loaded["transposed"])
    assert not same_storage(loaded["weight"], loaded["other"])
    # Writes through one view show through the others, as after torch.load.
    for tensors in (loaded, expected):
        tensors["row"][0] = -1.0
        tensors["b"][2] = -2.0  # flat[4]: also c[0, 4] and d[0]
        tensors["param_row"][1] = -3.0
    for name in expected:
        assert torch.equal(loaded[name], expected[name]), name
    assert loaded["transposed"][0, 1] == -1.0
    assert loaded["c"][0, 4] == -2.0 and loaded["d"][0] == -2.0
    assert loaded["param"][0, 1] == -3.0
    # The file is never written: its map is private.
    assert torch.equal(torch.load(path, weights_only=True)["weight"], views()["weight"])


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_views_loaded_from_bytes_share_memory_too(zip_format):
    buffer = io.BytesIO()
    t = torch.arange(10.0)
    torch.save({"a": t, "b": t[2:5], "c": t.view(2, 5)}, buffer, _use_new_zipfile_serialization=zip_format)
    buffer.seek(0)
    loaded = load_checkpoint(buffer)
    loaded["a"][3] = 100.0
    assert loaded["b"][1] == 100.0
    assert loaded["c"][0, 3] == 100.0
    assert loaded["b"].storage_offset() == 2


def test_view_records_name_their_base_and_strides(tmp_path):
    from safeweights._safeweights_rust import load_torch_pickle

    path = tmp_path / "views.pt"
    t = torch.arange(12.0).reshape(3, 4)
    torch.save({"w": t, "t": t.t()[1:], "alone": torch.ones(2)}, path)
    tree, records = load_torch_pickle(str(path))
    w, tt, alone = tree["w"], tree["t"], tree["alone"]
    assert w.base is not None and w.base is tt.base
    assert (w.stride, w.storage_offset) == ((4, 1), 0)
    assert (tt.shape, tt.stride, tt.storage_offset) == ((3, 3), (1, 4), 1)
    assert w.base.shape == (12,) and w.base.base is None and w.base.nbytes == 48
    # A tensor alone on its whole storage is a plain record.
    assert alone.base is None and alone.stride is None and alone.nbytes == 8


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_mmap_false_reads_torch_files_into_memory_views_still_shared(tmp_path, zip_format):
    path = tmp_path / "views.pt"
    save(path, zip_format)
    expected = torch.load(path, weights_only=True)
    loaded = load_checkpoint(path, mmap=False)
    # Nothing views the file any more: cutting it changes nothing loaded.
    path.write_bytes(b"")
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name
        assert loaded[name].stride() == tensor.stride(), name
    assert same_storage(loaded["weight"], loaded["row"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with CUDA and a GPU")
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_views_loaded_onto_a_gpu_share_one_device_storage(tmp_path, zip_format):
    path = tmp_path / "views.pt"
    save(path, zip_format)
    expected = torch.load(path, weights_only=True, map_location="cuda")
    loaded = load_checkpoint(path, map_location="cuda")
    for name, tensor in expected.items():
        assert loaded[name].device == tensor.device, name
        assert torch.equal(loaded[name], tensor), name
        assert loaded[name].stride() == tensor.stride(), name
    loaded["b"][2] = -2.0
    assert loaded["c"][0, 4] == -2.0 and loaded["d"][0] == -2.0
    assert same_storage(loaded["weight"], loaded["transposed"])
