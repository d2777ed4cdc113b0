"""`safeweights.load` reads `.npy` / `.npz` files with our own readers (the
zip reader that refuses ambiguous archives), never `numpy.load`; what it
returns must be exactly what `np.load` returns: same keys in the same
order, same dtypes (byte order included), same values, same memory order.
"""

import io
import zipfile

import numpy as np
import pytest

import safeweights
from safeweights._safeweights_rust import load_numpy

DTYPES = ["?", "u1", "i1", "<u2", ">i2", "<u4", ">i4", "<u8", "<i8", "<f2", ">f2", "<f4", ">f4", "<f8", ">f8", "<c8"]


def arrays():
    rng = np.random.default_rng(0)
    out = {}
    for i, code in enumerate(DTYPES):
        dtype = np.dtype(code)
        if dtype.kind == "b":
            values = rng.integers(0, 2, size=(3, 5)).astype(dtype)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, size=(3, 5), dtype=dtype.newbyteorder("="), endpoint=True).astype(dtype)
        elif dtype.kind == "c":
            values = (rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))).astype(dtype)
        else:
            values = rng.standard_normal((3, 5)).astype(dtype)
        out[f"a{i}_{code.strip('<>')}"] = values
    out["fortran"] = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    out["fortran_be"] = np.asfortranarray(np.arange(6, dtype=">i8").reshape(2, 3))
    out["scalar"] = np.array(3.5, dtype=np.float64)
    out["empty"] = np.zeros((0, 7), dtype=np.int16)
    out["zeros"] = np.zeros((512, 64), dtype=np.float32)
    return out


def assert_same(ours, ref):
    assert type(ours) is np.ndarray
    assert ours.dtype == ref.dtype and ours.dtype.str == ref.dtype.str, (ours.dtype, ref.dtype)
    assert ours.shape == ref.shape
    assert ours.flags.f_contiguous == ref.flags.f_contiguous
    assert ours.flags.c_contiguous == ref.flags.c_contiguous
    assert ours.tobytes(order="A") == ref.tobytes(order="A")


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_values_dtypes_and_order_equal_numpys(tmp_path, save):
    path = tmp_path / "a.npz"
    save(path, **arrays())
    ours = safeweights.load(path)
    with np.load(path) as ref:
        assert list(ours) == list(ref.files)
        for name in ref.files:
            assert_same(ours[name], ref[name])
    with open(path, "rb") as f:
        from_file = safeweights.load(f)
    assert list(from_file) == list(ours)
    for name in ours:
        assert_same(from_file[name], ours[name])


@pytest.mark.parametrize("name", sorted(arrays()))
def test_npy_values_dtypes_and_order_equal_numpys(tmp_path, name):
    array = arrays()[name]
    path = tmp_path / "a.npy"
    np.save(path, array)
    ref = np.load(path)
    for mmap in (True, False):
        assert_same(safeweights.load(path, mmap=mmap), ref)
    with open(path, "rb") as f:
        assert_same(safeweights.load(f), ref)


def test_a_mapped_npy_is_a_private_writable_view(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(8, dtype=np.float32))
    before = path.read_bytes()
    got = safeweights.load(path)
    got[0] = 42
    assert path.read_bytes() == before
    assert safeweights.load(path)[0] == 0


def test_npz_reader_never_calls_numpy_load(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.arange(3))

    def refuse(*args, **kwargs):
        raise AssertionError("numpy.load called")

    monkeypatch.setattr(np, "load", refuse)
    assert list(safeweights.load(path)) == ["x"]
    assert np.array_equal(safeweights.load(path)["x"], np.arange(3))


def test_a_zip_that_is_no_npz_is_left_to_the_checkpoint_reader(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.npy", b"")
        zf.writestr("notes.txt", b"hello")
    assert load_numpy(buf.getvalue()) is None
    assert load_numpy(_empty_zip()) is None


def _empty_zip():
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    return buf.getvalue()


def test_object_members_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, ok=np.ones(2), o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(safeweights.CheckpointError, match="o.npz"):
        safeweights.load(path)
