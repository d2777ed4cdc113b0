"""get_slice indexing has numpy's semantics, for both frameworks and backends."""

import itertools

import numpy as np
import pytest
import torch

import safeweights
import safeweights.numpy
import safeweights.torch

ARRAY = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)

INDICES = [
    (),
    0,
    -1,
    3,
    slice(None),
    slice(1, 3),
    slice(-3, None),
    slice(None, -1),
    slice(1, 100),
    slice(-100, 2),
    slice(3, 1),
    slice(None, None, 2),
    slice(1, None, 3),
    slice(None, None, -1),
    slice(3, 0, -2),
    slice(-1, -6, -3),
    (1, 2),
    (-1, slice(1, 4), 2),
    (slice(None), slice(None, None, 2)),
    (slice(None), slice(4, 0, -1), slice(None, None, -2)),
    (Ellipsis, 1),
    (0, Ellipsis),
    (Ellipsis, slice(2, 5, 2)),
    (slice(1, 3), Ellipsis, -2),
    (None, 1),
    (slice(None), None, 2, None),
    (Ellipsis, None),
    (np.int64(2), np.int32(-1)),
]


@pytest.fixture(scope="module")
def data():
    return safeweights.numpy.save({"x": ARRAY, "empty": np.zeros((0, 3), np.int16), "scalar": np.array(7.0)})


@pytest.mark.parametrize("backend", ["mmap", "pread"])
@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_numpy_slices_match_numpy_indexing(index, backend, tmp_path, data):
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    with safeweights.safe_open(path, "np", backend=backend) as f:
        got = f.get_slice("x")[index]
    expected = ARRAY[index]
    assert got.shape == expected.shape and np.array_equal(got, expected)


@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_torch_slices_match_numpy_indexing(index, data):
    with safeweights.safe_open(data, "pt") as f:
        got = f.get_slice("x")[index]
    assert isinstance(got, torch.Tensor)
    assert np.array_equal(got.numpy(), ARRAY[index])


def test_exhaustive_small_slices_on_two_axes(data):
    bounds = [None, -7, -2, 0, 1, 3, 9]
    steps = [None, 1, 2, -1, -3]
    with safeweights.safe_open(data, "np") as f:
        sliced = f.get_slice("x")
        for start, stop, step in itertools.product(bounds, bounds, steps):
            index = (slice(1, None), slice(start, stop, step))
            assert np.array_equal(sliced[index], ARRAY[index]), index


def test_empty_and_scalar_tensors_slice_like_numpy(data):
    with safeweights.safe_open(data, "np") as f:
        assert f.get_slice("empty")[:].shape == (0, 3)
        assert f.get_slice("empty")[:, 1:].shape == (0, 2)
        assert f.get_slice("scalar")[()] == 7.0
        assert f.get_slice("scalar")[...].shape == ()


@pytest.mark.parametrize("index", [10, -5, (0, 0, 0, 0), (Ellipsis, Ellipsis), 1.5, "a", np.bool_(True), [0, 1]], ids=repr)
def test_invalid_indices_raise_invalid_slice_error(index, data):
    with safeweights.safe_open(data, "np") as f:
        with pytest.raises(safeweights.InvalidSliceError):
            f.get_slice("x")[index]


def test_sliced_results_are_independent_writable_copies(data):
    with safeweights.safe_open(bytearray(data), "pt") as f:
        part = f.get_slice("x")[1:3, ::2]
        part += 1
        assert torch.equal(f.get_tensor("x")[1:3, ::2], torch.from_numpy(ARRAY[1:3, ::2]))


def test_bf16_and_f4_slices():
    bf16 = torch.randn(6, 8).to(torch.bfloat16)
    packed = torch.randint(0, 255, (4, 6), dtype=torch.uint8).view(torch.float4_e2m1fn_x2)
    data = safeweights.torch.save({"bf16": bf16, "f4": packed})
    with safeweights.safe_open(data, "pt") as f:
        assert torch.equal(f.get_slice("bf16")[::-2, 1:5], bf16.flip(0)[::2, 1:5])
        f4 = f.get_slice("f4")[1:3, 2:6]
        assert f4.dtype == torch.float4_e2m1fn_x2 and f4.shape == (2, 2)
        assert torch.equal(f4.view(torch.uint8), packed.view(torch.uint8)[1:3, 1:3])
        with pytest.raises(safeweights.InvalidSliceError):
            f.get_slice("f4")[:, 1:4]


# Index kinds beyond integers and slices, checked against the reference:
# its torch slices apply any torch index (booleans, lists, arrays, tensors),
# its numpy slices read booleans as integers and a bare `[]` as `[0:0]`.
REFERENCE_INDICES = [
    True,
    False,
    (True, 0),
    (0, True),
    (True, Ellipsis, True),
    [0, 2],
    [],
    [[0, 1]],
    (slice(None), [1, 3]),
    ([0, 2], [1, 3]),
    [True, False, True, False],
    None,
    (Ellipsis, 0),
    np.int64(1),
    np.int32(-1),
    (1, np.int64(2)),
    np.array([0, 2]),
    np.bool_(True),
    np.float64(1.0),
    torch.tensor(1),
    torch.tensor(True),
    torch.tensor([0, 2]),
    torch.tensor([True, False, True, False]),
    torch.tensor(1.0),
    (torch.tensor(1), torch.tensor(2)),
    slice(np.int64(1), torch.tensor(3)),
    [5],
    np.int64(5),
]


def _outcome(sliced, index):
    try:
        return sliced[index]
    except Exception as error:  # noqa: BLE001 - the outcome may be any error
        return error


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory):
    import safetensors.torch

    path = tmp_path_factory.mktemp("reference") / "r.safetensors"
    tensors = {"m": torch.arange(20.0).reshape(4, 5), "i": torch.arange(4, dtype=torch.int16), "s": torch.tensor(5.0)}
    safetensors.torch.save_file(tensors, path)
    return path


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")
@pytest.mark.parametrize("framework", ["pt", "np"])
@pytest.mark.parametrize("index", REFERENCE_INDICES, ids=repr)
def test_index_kinds_match_the_reference(index, framework, reference_file):
    import safetensors

    for name in ("m", "i", "s"):
        with safetensors.safe_open(reference_file, framework) as f:
            expected = _outcome(f.get_slice(name), index)
        with safeweights.safe_open(reference_file, framework) as f:
            got = _outcome(f.get_slice(name), index)
        if isinstance(expected, Exception):
            if framework == "np" and index is None:
                continue  # ours takes None (numpy's new axis); see test_error_parity
            wanted = safeweights.SafetensorError if isinstance(expected, safetensors.SafetensorError) else type(expected)
            assert isinstance(got, wanted), (name, expected, got)
            continue
        assert not isinstance(got, Exception), (name, expected, got)
        assert type(got) is type(expected) and got.dtype == expected.dtype and got.shape == expected.shape, name
        assert got.tolist() == expected.tolist(), name


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")
def test_torch_indexed_slices_are_writable_copies(reference_file):
    with safeweights.safe_open(reference_file, "pt") as f:
        for index in ([0, 2], True, [slice(0, 2)], (slice(None), [1, 3])):
            part = f.get_slice("m")[index]
            part += 100
        assert torch.equal(f.get_tensor("m"), torch.arange(20.0).reshape(4, 5))
