"""Loading with parallel read-ahead (`_SafeFile.read_ahead`, called by
`load_file` and `get_tensor` on the cpu): a file whose pages were evicted
from the page cache (the cold path) loads exactly what a cached one (the
warm path) and the reference load, through every entry point.

Pages are evicted with `posix_fadvise(DONTNEED)` on the file, which needs
no privileges and leaves the rest of the machine's cache alone (the
benchmarks drop the whole cache instead; tests never do)."""

import ctypes
import mmap
import os

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import safeweights
import safeweights.numpy
import safeweights.torch
from safeweights import safe_open

CHUNK = 8 << 20  # the read-ahead's chunk: tensors below, across and over it


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def evict_range(path, offset, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages stay
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_pages(path):
    """How many of the file's pages are in the page cache, and how many it
    has: `mincore` over a map of it that nothing touches."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = os.path.getsize(path)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    with open(path, "rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as view:
        # The c_char is dropped at once, so the map can close: only its address is kept.
        address = ctypes.addressof(ctypes.c_char.from_buffer(view))
        vector = (ctypes.c_ubyte * pages)()
        assert libc.mincore(ctypes.c_void_p(address), size, vector) == 0, ctypes.get_errno()
    return sum(byte & 1 for byte in vector), pages


@pytest.fixture
def model(tmp_path):
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "big": torch.randn(CHUNK // 4 * 3 + 5, generator=generator),  # several chunks, ragged end
        "mid": torch.randint(-100, 100, (1000, 37), dtype=torch.int32, generator=generator),
        "half": torch.randn(3, 5, generator=generator).to(torch.bfloat16),
        "scalar": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, 4),
        "flags": torch.tensor([True, False, True]),
    }
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(tensors, path)
    return path, tensors


def assert_same(loaded, expected):
    assert list(loaded) == list(expected) or sorted(loaded) == sorted(expected)
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name


def test_cold_and_warm_load_file_are_equal(model):
    path, tensors = model
    evict(path)
    cold = safeweights.torch.load_file(path)
    warm = safeweights.torch.load_file(path)
    assert_same(cold, tensors)
    assert_same(warm, tensors)
    assert_same(cold, safetensors.torch.load_file(path))
    # Still copy-on-write views of the file: writing one leaves the file alone.
    cold["big"][0] = 123.0
    assert torch.equal(safeweights.torch.load_file(path)["big"], tensors["big"])


def test_load_file_reads_a_cold_file_into_the_page_cache(model):
    path, _ = model
    evict(path)
    cached, pages = cached_pages(path)
    if cached == pages:
        pytest.skip("this file system keeps its pages in memory whatever the advice (tmpfs)")
    loaded = safeweights.torch.load_file(path)  # nothing touched
    assert cached_pages(path) == (pages, pages)
    del loaded


def test_a_partly_evicted_file_is_read_where_it_was_evicted(model):
    path, _ = model
    path.read_bytes()  # all in the page cache, no map holding it
    assert cached_pages(path)[0] == cached_pages(path)[1]
    # Evict whole MiBs in the middle of the 24 MiB tensor: the residency
    # check samples one page per MiB, and the chunk holding them is read.
    evict_range(path, 9 << 20, 4 << 20)
    cached, pages = cached_pages(path)
    if cached == pages:
        pytest.skip("this file system keeps its pages in memory whatever the advice (tmpfs)")
    loaded = safeweights.torch.load_file(path)
    assert cached_pages(path) == (pages, pages)
    del loaded


def test_cold_get_tensor_each_equals_the_reference(model):
    path, tensors = model
    evict(path)
    with safe_open(path, framework="pt") as f:
        cold = {name: f.get_tensor(name) for name in f.keys()}
    assert_same(cold, tensors)


def test_read_ahead_of_one_tensor_or_all_changes_no_bytes(model):
    path, tensors = model
    evict(path)
    with safe_open(path, framework="pt") as f:
        assert f._file.read_ahead("mid") is None
        assert torch.equal(f.get_tensor("mid"), tensors["mid"])
        f._file.read_ahead()
        assert_same(f.get_tensors(), tensors)
        with pytest.raises(safeweights.TensorNotFoundError):
            f._file.read_ahead("absent")


def test_numpy_cold_load_equals_the_reference(model):
    path, _ = model
    evict(path)
    ours = safeweights.numpy.load_file(path)
    theirs = safetensors.numpy.load_file(path)
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        if theirs[name].dtype.kind == "V":  # bfloat16 without ml_dtypes in the reference
            continue
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


@pytest.mark.parametrize("backend", ["mmap", "pread"])
def test_both_backends_cold(model, backend):
    path, tensors = model
    evict(path)
    assert_same(safeweights.torch.load_file(path, backend=backend), tensors)


def test_buffers_are_left_alone(model):
    path, tensors = model
    data = path.read_bytes()
    # Nothing to read ahead in memory that is not a file map.
    assert_same(safeweights.torch.load(data), tensors)
    with safe_open(bytearray(data), framework="pt") as f:
        f._file.read_ahead()
        assert_same(f.get_tensors(), tensors)


def test_keys_of_many_tensors_are_those_of_the_reference(tmp_path):
    tensors = {f"layer.{i}.w": torch.full((2,), float(i)) for i in range(3000)}
    path = tmp_path / "many.safetensors"
    safetensors.torch.save_file(tensors, path)
    with safe_open(path, framework="pt") as ours, safetensors.safe_open(path, framework="pt") as theirs:
        assert ours.keys() == theirs.keys() == sorted(tensors)
        assert ours.offset_keys() == theirs.offset_keys()
        assert torch.equal(ours.get_tensor("layer.2999.w"), tensors["layer.2999.w"])


@pytest.mark.parametrize("order", ["reversed", "shuffled", "one"])
def test_cold_get_tensor_in_any_order_equals_warm(tmp_path, order):
    # get_tensor asks for the bytes after each tensor too (a window read
    # ahead): any order of calls, and a single call, load the same bytes.
    generator = torch.Generator().manual_seed(1)
    tensors = {f"t{i:02d}": torch.randn(CHUNK // 4 // 3 + i, generator=generator) for i in range(12)}
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(tensors, path)
    names = sorted(tensors)
    if order == "reversed":
        names.reverse()
    elif order == "shuffled":
        names = [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]
    else:
        names = [names[5]]
    evict(path)
    with safe_open(path, framework="pt") as f:
        cold = {name: f.get_tensor(name) for name in names}
    with safe_open(path, framework="pt") as f:
        warm = {name: f.get_tensor(name) for name in names}
    for name in names:
        assert torch.equal(cold[name], tensors[name]), name
        assert torch.equal(warm[name], tensors[name]), name


def header_file(path, names):
    """U8 tensors of one byte each, in the order of `names`, header
    written directly (a million-tensor header is written the same way by
    bench/cold_bench.py)."""
    parts = [f'"{n}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}' for i, n in enumerate(names)]
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        f.write(bytes(i % 256 for i in range(len(names))))


@pytest.mark.parametrize("layout", ["sorted", "reversed"])
def test_keys_of_a_large_header_are_those_of_the_reference(tmp_path, layout):
    # About 6 MB of header: parsed from the map while its pages are handed
    # back; names sorted in the file come out without a sort.
    names = sorted(f"layer.{i}.weight" for i in range(80_000))
    if layout == "reversed":
        names.reverse()
    path = tmp_path / "many.safetensors"
    header_file(path, names)
    evict(path)
    with safe_open(path, framework="np") as ours, safetensors.safe_open(path, framework="np") as theirs:
        keys = ours.keys()
        assert keys == theirs.keys() == sorted(names)
        assert ours.offset_keys() == names
        for i in (0, 4321, len(names) - 1):
            np.testing.assert_array_equal(ours.get_tensor(names[i]), theirs.get_tensor(names[i]))
            assert ours.get_tensor(names[i]).tolist() == [i % 256]
