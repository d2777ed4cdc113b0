"""Views of one storage in a torch.save file come back sharing memory from
load_checkpoint, as torch.load gives them (issue 15)."""

import pytest
import torch

from safeweights.torch import load_checkpoint


def views() -> dict:
    weight = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "weight": weight,
        "row": weight[1],
        "transposed": weight.t(),
        "strided": weight[:, ::2],
        "tail": weight.view(-1)[10:],
        "other": torch.ones(3),
    }


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_views_of_one_storage_share_memory_like_torch_load(tmp_path, zip_format):
    path = tmp_path / "views.pt"
    torch.save(views(), path, _use_new_zipfile_serialization=zip_format)
    expected = torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name
        assert loaded[name].stride() == tensor.stride(), name
        assert loaded[name].storage_offset() == tensor.storage_offset(), name
    storage = loaded["weight"].untyped_storage().data_ptr()
    for name in ("row", "transposed", "strided", "tail"):
        assert loaded[name].untyped_storage().data_ptr() == storage, name
    assert loaded["other"].untyped_storage().data_ptr() != storage
    # Writes through one view show through the others, as after torch.load.
    loaded["row"][0] = -1.0
    assert loaded["weight"][1, 0] == -1.0
    assert loaded["transposed"][0, 1] == -1.0
    # The file is never written: its map is private.
    assert torch.equal(torch.load(path, weights_only=True)["weight"], views()["weight"])
