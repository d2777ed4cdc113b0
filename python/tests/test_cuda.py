"""Loading onto a CUDA device (issue 4): values, placement, streams, threads.

The planning tests run everywhere; the others need torch with CUDA and a
GPU, and are skipped without one. Files are written by the reference.
"""

import threading

import pytest
import safetensors.torch
import torch

import safeweights
import safeweights.torch
from conftest import TORCH_DTYPES, random_tensor, same_bits
from safeweights import _cuda, _frameworks

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with CUDA and a GPU")


def plan_of(sizes, buffer="file"):
    plan = _cuda._ArenaPlan()
    offset = 0
    for size in sizes:
        plan.add(buffer, offset, size)
        offset += size
    return plan


def test_plan_merges_aligned_neighbours_into_one_copy():
    plan = plan_of([1024, 4096, 256, 0, 512])
    assert plan.placements == [0, 1024, 5120, 0, 5376]
    [(_, segments)] = plan.sources
    assert [(s.start, s.end, s.arena_start) for s in segments] == [(0, 5888, 0)]


def test_plan_realigns_after_an_odd_sized_tensor():
    plan = plan_of([10, 256, 6, 4])
    assert plan.placements == [0, 256, 512, 768]
    [(_, segments)] = plan.sources
    assert [(s.start, s.end, s.arena_start) for s in segments] == [(0, 10, 0), (10, 272, 256), (272, 276, 768)]
    assert plan.total == 772


def test_plan_starts_a_source_per_buffer_and_when_offsets_go_back():
    plan = _cuda._ArenaPlan()
    plan.add("a", 0, 256)
    plan.add("b", 0, 256)
    plan.add("b", 0, 256)
    assert [buffer for buffer, _ in plan.sources] == ["a", "b", "b"]
    assert plan.placements == [0, 256, 512]


def mixed_tensors():
    """Odd sizes, every dtype, empty and scalar tensors: misaligned offsets."""
    tensors = {}
    for i, dtype in enumerate(TORCH_DTYPES):
        last = 6 if dtype == torch.float4_e2m1fn_x2 else 7
        tensors[f"t{i}.odd"] = random_tensor((3, last), dtype, seed=i)
        tensors[f"t{i}.big"] = random_tensor((64, 33), dtype, seed=100 + i)
    tensors["empty"] = torch.zeros(0, 5)
    tensors["scalar"] = torch.tensor(2.5)
    return tensors


def assert_loaded(loaded, expected, device=torch.device("cuda", 0)):
    assert list(loaded) == list(expected)
    for name, tensor in expected.items():
        assert loaded[name].device == device, name
        assert same_bits(loaded[name].cpu(), tensor), name


@needs_gpu
@pytest.mark.parametrize("chunk", [4099, 64 << 20], ids=["small-chunks", "one-chunk"])
def test_every_dtype_loads_bit_exact_at_aligned_addresses(tmp_path, monkeypatch, chunk):
    # Small chunks, not a multiple of any dtype size, put chunk boundaries
    # everywhere inside and between tensors (few pieces per chunk: copied
    # straight to the arena); one chunk holds every tensor (many pieces:
    # landed on the device and spread out with one batched copy).
    monkeypatch.setattr(_cuda, "_CHUNK", chunk)
    path = tmp_path / "mixed.safetensors"
    safetensors.torch.save_file(mixed_tensors(), path)
    expected = safetensors.torch.load_file(path)
    loaded = safeweights.torch.load_file(path, device="cuda")
    assert_loaded(loaded, expected)
    spans = sorted((t.data_ptr(), t.data_ptr() + t.nbytes) for t in loaded.values() if t.nbytes)
    assert all(start % 256 == 0 for start, _ in spans)
    assert all(end <= following for (_, end), (following, _) in zip(spans, spans[1:]))


@needs_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0", 0, torch.device("cuda", 0)], ids=str)
def test_device_spellings(tmp_path, device):
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({"w": torch.arange(10.0)}, path)
    assert_loaded(safeweights.torch.load_file(path, device=device), {"w": torch.arange(10.0)})


@needs_gpu
def test_tensors_larger_than_the_staging_ring(tmp_path, monkeypatch):
    monkeypatch.setattr(_cuda, "_CHUNK", 64 << 10)
    monkeypatch.setattr(_cuda, "PINNED_MIN", 64 << 10)
    tensors = {f"w{i}": torch.randn(100_003 + i) for i in range(5)}
    path = tmp_path / "big.safetensors"
    safetensors.torch.save_file(tensors, path)
    assert_loaded(safeweights.torch.load_file(path, device="cuda"), safetensors.torch.load_file(path))
    with safeweights.safe_open(path, "pt", device="cuda") as f:
        assert torch.equal(f.get_tensor("w3").cpu(), tensors["w3"])  # over PINNED_MIN: through the ring


@needs_gpu
def test_safe_open_on_cuda_tensors_and_slices(tmp_path):
    tensors = {"small": torch.arange(12.0).reshape(3, 4), "large": torch.randn(512, 1024)}
    path = tmp_path / "m.safetensors"
    safetensors.torch.save_file(tensors, path)
    with safeweights.safe_open(path, "pt", device="cuda:0") as f:
        for name, tensor in tensors.items():
            assert f.get_tensor(name).device == torch.device("cuda", 0)
            assert torch.equal(f.get_tensor(name).cpu(), tensor)
        part = f.get_slice("large")[10:20, ::3]
        assert part.device.type == "cuda" and torch.equal(part.cpu(), tensors["large"][10:20, ::3])


@needs_gpu
def test_sharded_pread_and_buffer_sources(tmp_path):
    tensors = mixed_tensors()
    directory = tmp_path / "sharded"
    safeweights.torch.save_checkpoint(tensors, directory, max_shard_size=3000)
    expected = safeweights.torch.load_file(directory / "model.safetensors.index.json")
    assert len(list(directory.glob("*.safetensors"))) > 1
    assert_loaded(safeweights.torch.load_file(directory / "model.safetensors.index.json", device="cuda"), expected)
    path = tmp_path / "one.safetensors"
    safetensors.torch.save_file(tensors, path)
    expected = safetensors.torch.load_file(path)
    assert_loaded(safeweights.torch.load_file(path, device="cuda", backend="pread"), expected)
    with safeweights.safe_open(path.read_bytes(), "pt", device="cuda") as f:
        assert_loaded(f.get_tensors(), expected)


@needs_gpu
def test_loaded_cuda_tensors_save_back_to_the_same_bytes(tmp_path):
    # They share one device allocation without overlapping: neither library
    # may take them for shared tensors.
    path, ours, theirs = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    safetensors.torch.save_file({"a": torch.randn(40), "b": torch.randn(3, 5), "c": torch.arange(7)}, path)
    loaded = safeweights.torch.load_file(path, device="cuda")
    safeweights.torch.save_file(loaded, ours)
    safetensors.torch.save_file(loaded, theirs)
    assert ours.read_bytes() == path.read_bytes() == theirs.read_bytes()


@needs_gpu
def test_load_on_a_busy_side_stream(tmp_path):
    expected = {f"w{i}": torch.randn(256, 1024) for i in range(4)}
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(expected, path)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(3):
            scratch = torch.randn(4096, 4096, device="cuda")
            scratch = scratch @ scratch  # queued work on the memory the load may reuse
            del scratch
            loaded = safeweights.torch.load_file(path, device="cuda")
            sums = {name: float(tensor.double().sum()) for name, tensor in loaded.items()}
            assert sums == {name: float(tensor.double().sum()) for name, tensor in expected.items()}


@needs_gpu
def test_threads_loading_at_once(tmp_path):
    expected = {f"w{i}": torch.randn(300, 700) for i in range(6)}
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(expected, path)
    failures = []

    def load():
        try:
            for _ in range(5):
                loaded = safeweights.torch.load_file(path, device="cuda")
                if not all(torch.equal(loaded[k].cpu(), v) for k, v in expected.items()):
                    failures.append("wrong values")
        except Exception as error:  # reported below, with the thread's error
            failures.append(repr(error))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@needs_gpu
def test_checkpoints_keep_devices_and_sharing(tmp_path):
    weight = torch.randn(8, 8, device="cuda")
    state = {"model": {"embed": weight, "head": weight, "half": weight[:4]}, "step": 3, "cpu": torch.ones(2)}
    path = tmp_path / "ckpt.safetensors"
    safeweights.torch.save_checkpoint(state, path)
    loaded = safeweights.torch.load_checkpoint(path)
    model = loaded["model"]
    assert model["embed"].device.type == "cuda" and loaded["cpu"].device.type == "cpu"
    assert model["embed"] is model["head"] or model["embed"].data_ptr() == model["head"].data_ptr()
    assert model["half"].untyped_storage().data_ptr() == model["embed"].untyped_storage().data_ptr()
    assert torch.equal(model["embed"], weight) and loaded["step"] == 3
    on_cpu = safeweights.torch.load_checkpoint(path, map_location="cpu")
    assert on_cpu["model"]["embed"].device.type == "cpu" and torch.equal(on_cpu["model"]["embed"], weight.cpu())
    on_gpu = safeweights.torch.load_checkpoint(path, map_location="cuda:0")
    assert on_gpu["cpu"].device == torch.device("cuda", 0)


@needs_gpu
def test_saving_cuda_tensors_matches_the_reference():
    tensors = {"a": torch.randn(5, 3, device="cuda"), "b": torch.arange(4, device="cuda")[::2]}
    tensors["b"] = tensors["b"].contiguous()
    assert safeweights.torch.save(tensors) == safetensors.torch.save(tensors)


@needs_gpu
def test_checkpoint_views_on_cuda_stay_inside_their_entry(tmp_path):
    # Onto a GPU all entries share one allocation: a view record that would
    # reach from "a" into "b" must still be refused.
    path = tmp_path / "v.safetensors"
    structure = '{"version":1,"root":{"$view":"a","dtype":"float32","offset":12,"shape":[2,4],"stride":[4,1]}}'
    safeweights.torch.save_file({"a": torch.arange(16.0), "b": torch.ones(64)}, path, metadata={"safeweights.checkpoint": structure})
    with pytest.raises(safeweights.CheckpointError, match="view"):
        safeweights.torch.load_checkpoint(path, map_location="cuda")


def test_prefetch_hints_are_harmless_anywhere(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({"w": torch.arange(3000.0)}, path)
    captured = []
    monkeypatch.setattr(_frameworks.TorchConverter, "tensors", lambda self, records: captured.extend(records) or [])
    with safeweights.safe_open(path, "pt") as f:
        f.get_tensors()
    [record] = captured
    storage = record.storage
    assert "file map" in repr(storage)
    end = record.offset + record.nbytes
    pages = _cuda._PageCache(storage, end)
    for start, length in [(0, 1 << 40), (record.offset, record.nbytes), (end - 1, 1), (end, 10), (end + 4096, 1), (7, 0)]:
        pages.read_ahead(start, length)
        pages.read_now(start, length)
    storage.prefetch(1 << 62, 1 << 62)
    storage.populate(1 << 62, 1 << 62)
    buffer = _frameworks.byte_array(storage, record.offset, record.nbytes)
    assert torch.equal(torch.frombuffer(buffer, dtype=torch.float32), torch.arange(3000.0))
    not_a_map = _cuda._PageCache(object(), 10)
    not_a_map.read_ahead(0, 10)
    not_a_map.read_now(0, 10)


@needs_gpu
@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_pickle_checkpoints_load_onto_cuda_like_torch_load(tmp_path, zipfile):
    from test_legacy import assert_same, training_state

    path = tmp_path / "model.pt"
    torch.save(training_state(), path, _use_new_zipfile_serialization=zipfile)
    expected = torch.load(path, map_location="cuda", weights_only=True)
    loaded = safeweights.torch.load_checkpoint(path, map_location="cuda")
    assert_same(loaded, expected)
    assert loaded["model"]["0.weight"].device.type == "cuda"
    assert loaded["tied"][0] is loaded["tied"][1]


def test_pickle_records_are_listed_once_each(tmp_path):
    shared = torch.randn(3)
    path = tmp_path / "model.pt"
    torch.save({"a": [shared, shared], "b": {"c": shared, "d": torch.ones(2)}, "e": (torch.zeros(1),)}, path)
    for source in (str(path), path.read_bytes(), bytearray(path.read_bytes())):
        tree, records = safeweights._safeweights_rust.load_torch_pickle(source)
        assert len(records) == 3
        assert tree["a"][0] is tree["a"][1] is tree["b"]["c"]
        for record in (tree["a"][0], tree["b"]["d"], tree["e"][0]):
            assert sum(listed is record for listed in records) == 1
        assert [(r.dtype, r.shape, r.nbytes) for r in records] == [("float32", (3,), 12), ("float32", (2,), 8), ("float32", (1,), 4)]
