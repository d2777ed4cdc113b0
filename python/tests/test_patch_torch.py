"""safeweights.patch_torch(): torch.save/torch.load through safeweights."""

import io
import inspect
import os
import pickle
import threading

import pytest
import torch
import torch.serialization

import safeweights
from frameworks import scan

ORIGINAL_SAVE = torch.save
ORIGINAL_LOAD = torch.load


@pytest.fixture(autouse=True)
def originals_restored():
    yield
    assert torch.save is ORIGINAL_SAVE and torch.serialization.save is ORIGINAL_SAVE
    assert torch.load is ORIGINAL_LOAD and torch.serialization.load is ORIGINAL_LOAD


def state():
    return {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": 7, "lr": [0.1, 0.01], "name": "run"}


def assert_state(loaded):
    assert loaded["step"] == 7 and loaded["lr"] == [0.1, 0.01] and loaded["name"] == "run"
    assert torch.equal(loaded["model"]["w"], torch.arange(6.0).reshape(2, 3))


def test_context_manager_writes_safetensors_and_restores_originals(tmp_path):
    with safeweights.patch_torch() as patch:
        assert patch.active
        assert torch.save is not ORIGINAL_SAVE and torch.serialization.load is torch.load
        torch.save(state(), tmp_path / "ckpt.pt")
        assert_state(torch.load(tmp_path / "ckpt.pt"))
    assert not patch.active
    assert scan(tmp_path)["ckpt.pt"]["format"] == "safetensors"
    # What the patch wrote is a checkpoint safeweights reads without it.
    assert_state(safeweights.torch.load_checkpoint(tmp_path / "ckpt.pt"))


def test_plain_call_returns_an_undo_handle(tmp_path):
    patch = safeweights.patch_torch()
    try:
        torch.save(state(), str(tmp_path / "a.pt"))
    finally:
        patch.undo()
    patch.undo()  # twice is harmless
    assert scan(tmp_path)["a.pt"]["format"] == "safetensors"
    torch.save(state(), tmp_path / "b.pt")
    assert scan(tmp_path)["b.pt"]["format"] == "torch zip checkpoint"


def test_nested_patches_undone_in_any_order():
    outer = safeweights.patch_torch()
    inner = safeweights.patch_torch()
    patched = torch.save
    outer.undo()
    assert torch.save is patched, "an inner patch still active keeps torch patched"
    inner.undo()
    assert torch.save is ORIGINAL_SAVE
    with safeweights.patch_torch():
        with safeweights.patch_torch():
            pass
        assert torch.save is not ORIGINAL_SAVE


def test_concurrent_patching_from_threads_ends_with_the_originals(tmp_path):
    errors = []
    barrier = threading.Barrier(8)

    def worker(index):
        try:
            barrier.wait()
            for round_ in range(20):
                with safeweights.patch_torch():
                    path = tmp_path / f"{index}-{round_}.pt"
                    torch.save({"i": index, "t": torch.full((2,), float(round_))}, path)
                    loaded = torch.load(path)
                    assert loaded["i"] == index and loaded["t"].tolist() == [float(round_)] * 2
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    formats = {f["format"] for f in scan(tmp_path).values()}
    assert formats == {"safetensors"}


def test_load_accepts_torch_loads_whole_signature(tmp_path):
    path = tmp_path / "ckpt.pt"
    with safeweights.patch_torch():
        torch.save(state(), path)
        assert inspect.signature(torch.load) == inspect.signature(ORIGINAL_LOAD)
        assert_state(torch.load(path, "cpu", pickle, weights_only=False, mmap=True, encoding="latin1"))
        assert_state(torch.load(str(path), map_location=torch.device("cpu"), weights_only=True, mmap=False))
        with open(path, "rb") as file:
            assert_state(torch.load(file, map_location=None))
        assert_state(torch.load(io.BytesIO(path.read_bytes())))
        with pytest.raises(TypeError):
            torch.load(path, "cpu", pickle, "positional weights_only")


def test_save_accepts_torch_saves_signature_and_file_objects(tmp_path):
    buffer = io.BytesIO()
    with safeweights.patch_torch():
        torch.save(state(), buffer, pickle, 2, _use_new_zipfile_serialization=False)
        assert buffer.getvalue()[8:9] == b"{", "a safetensors header follows the length"
        buffer.seek(0)
        assert_state(torch.load(buffer))
        with pytest.raises(TypeError):
            torch.save(state())


def test_reads_pickle_checkpoints_written_before_the_patch(tmp_path):
    torch.save(state(), tmp_path / "old.pt")
    with safeweights.patch_torch():
        assert_state(torch.load(tmp_path / "old.pt", weights_only=False))


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = ""


@pytest.mark.parametrize("writer", ["torch_zip", "torch_legacy", "bare_pickle"])
def test_malicious_files_are_refused_and_never_run(tmp_path, writer):
    global MARKER
    marker = tmp_path / "pwned"
    MARKER = str(marker)
    path = tmp_path / "evil.pt"
    payload = {"model": {"w": torch.ones(2)}, "x": Payload()}
    if writer == "torch_zip":
        torch.save(payload, path)
    elif writer == "torch_legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload))
    assert not marker.exists()
    # A torch checkpoint is refused for the global it would call; a bare
    # pickle is not a checkpoint at all.
    refused = safeweights.UnsafeCheckpointError if writer != "bare_pickle" else safeweights.CheckpointError
    match = "system" if writer != "bare_pickle" else "pickle"
    with safeweights.patch_torch():
        for weights_only in (False, True, None):
            with pytest.raises(refused, match=match):
                torch.load(path, weights_only=weights_only)
            with open(path, "rb") as file, pytest.raises(refused, match=match):
                torch.load(file, map_location="cpu", weights_only=weights_only)
    assert not marker.exists(), "the payload ran"


def test_a_patch_applied_over_ours_is_left_in_place():
    patch = safeweights.patch_torch()
    ours = torch.save
    calls = []

    def theirs(*args, **kwargs):
        calls.append(args[1])
        return ours(*args, **kwargs)

    torch.save = theirs
    try:
        patch.undo()
        assert torch.save is theirs, "undo must not clobber a patch made after ours"
        buffer = io.BytesIO()
        torch.save({"a": torch.ones(1)}, buffer)
        # Ours, still reachable through theirs, now behaves as torch.save.
        assert buffer.getvalue()[:2] == b"PK" and calls == [buffer]
    finally:
        torch.save = ORIGINAL_SAVE
        torch.serialization.save = ORIGINAL_SAVE


def test_unsupported_objects_are_refused_at_save_time_without_pickle(tmp_path):
    class Opaque:
        pass

    with safeweights.patch_torch():
        with pytest.raises(TypeError, match="Opaque"):
            torch.save({"cfg": Opaque()}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


class Colour:
    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return type(other) is Colour and other.name == self.name


def test_safe_types_apply_while_the_patch_is_active(tmp_path):
    path = tmp_path / "c.pt"
    with safeweights.patch_torch():
        with pytest.raises(safeweights.UnsafeTypeError, match="add_safe_types"):
            torch.save({"c": Colour("red")}, path)
    with safeweights.patch_torch(safe_types=[Colour]):
        torch.save({"c": Colour("red")}, path)
        assert torch.load(path) == {"c": Colour("red")}
    with safeweights.patch_torch():
        with pytest.raises(safeweights.UnsafeTypeError, match="Colour"):
            torch.load(path)
        # torch's own allow-list is honoured, as torch.load would.
        with torch.serialization.safe_globals([Colour]):
            assert torch.load(path)["c"] == Colour("red")


def test_framework_types_only_when_asked_and_never_imported():
    import sys

    from safeweights import _patch

    with safeweights.patch_torch():
        allowed = _patch._active_safe_types()
    with safeweights.patch_torch(framework_types=False):
        assert _patch._active_safe_types() == ()
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in allowed}
    assert names <= set(_patch.FRAMEWORK_TYPES)
    imported = {name for name in _patch.FRAMEWORK_TYPES if name.rpartition(".")[0] in sys.modules}
    assert names == imported


class SavesWhileSaved:
    """Its state is taken with torch.save itself: a re-entrant call."""

    def __init__(self, value):
        self.value = value

    def __getstate__(self):
        buffer = io.BytesIO()
        torch.save({"inner": torch.tensor([self.value])}, buffer)
        return {"value": self.value, "inner": buffer.getvalue()}


def test_reentrant_save_and_load_go_through_safeweights_too():
    buffer = io.BytesIO()
    with safeweights.patch_torch(safe_types=[SavesWhileSaved]):
        torch.save({"obj": SavesWhileSaved(5)}, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer)["obj"]
        assert type(loaded) is SavesWhileSaved and loaded.value == 5
        # The nested torch.save wrote safetensors, read back by the nested load.
        assert loaded.inner[8:9] == b"{"
        assert torch.load(io.BytesIO(loaded.inner))["inner"].tolist() == [5]
