"""Error parity with the reference `safetensors`: every bad input below goes
through both packages, and our exception must be an instance of the class
the reference raises (`safetensors.SafetensorError` standing for ours).

Ours are often narrower (`InvalidHeaderError`, `TensorNotFoundError`, ...)
and may derive from several classes, so that `except` clauses written for
the reference keep catching them. The few deliberate differences are
listed, with the reason, in `test_documented_differences`.
"""

import pickle
import struct
import types

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

import safeweights
import safeweights.numpy
import safeweights.torch

REFERENCE = types.SimpleNamespace(root=safetensors, torch=safetensors.torch, numpy=safetensors.numpy)
OURS = types.SimpleNamespace(root=safeweights, torch=safeweights.torch, numpy=safeweights.numpy)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")

    def header_file(name, header, data=b""):
        raw = header.encode()
        path = d / name
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
        return str(path)

    good = d / "good.safetensors"
    safetensors.torch.save_file({"a": torch.arange(12.0).reshape(3, 4)}, good)
    truncated = d / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-8])
    huge_header = d / "huge.safetensors"
    huge_header.write_bytes(struct.pack("<Q", 200_000_000) + b"{}")
    empty = d / "empty.safetensors"
    empty.write_bytes(b"")
    (d / "a_directory").mkdir()
    return types.SimpleNamespace(
        dir=d,
        good=str(good),
        missing=str(d / "missing.safetensors"),
        directory=str(d / "a_directory"),
        truncated=str(truncated),
        huge_header=str(huge_header),
        empty=str(empty),
        corrupt=header_file("corrupt.safetensors", '{"a":{"dtype":"F32","shape":[2]'),
        unknown_dtype=header_file(
            "unknown.safetensors", '{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}', b"\x00" * 16
        ),
        bad_offsets=header_file(
            "offsets.safetensors", '{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', b"\x00" * 8
        ),
        metadata_not_str=header_file(
            "metadata.safetensors",
            '{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
            b"\x00" * 4,
        ),
        out=str(d / "out.safetensors"),
    )


def closed_handle_keys(lib, path):
    with lib.root.safe_open(path, "pt") as f:
        pass
    return f.keys()


SHARED = torch.zeros(4)

# (id, function of (lib, files) that must raise in both packages)
CASES = [
    # Reading files.
    ("safe_open missing file", lambda lib, f: lib.root.safe_open(f.missing, "pt")),
    ("torch.load_file missing file", lambda lib, f: lib.torch.load_file(f.missing)),
    ("numpy.load_file missing file", lambda lib, f: lib.numpy.load_file(f.missing)),
    ("safe_open directory", lambda lib, f: lib.root.safe_open(f.directory, "pt")),
    ("torch.load_file directory", lambda lib, f: lib.torch.load_file(f.directory)),
    ("numpy.load_file directory", lambda lib, f: lib.numpy.load_file(f.directory)),
    ("corrupt header", lambda lib, f: lib.torch.load_file(f.corrupt)),
    ("empty file", lambda lib, f: lib.torch.load_file(f.empty)),
    ("truncated file", lambda lib, f: lib.torch.load_file(f.truncated)),
    ("header too large", lambda lib, f: lib.torch.load_file(f.huge_header)),
    ("unknown dtype in header", lambda lib, f: lib.torch.load_file(f.unknown_dtype)),
    ("data offsets disagree with shape", lambda lib, f: lib.numpy.load_file(f.bad_offsets)),
    ("metadata value not a string in file", lambda lib, f: lib.torch.load_file(f.metadata_not_str)),
    ("torch.load garbage bytes", lambda lib, f: lib.torch.load(b"garbage")),
    ("torch.load str", lambda lib, f: lib.torch.load("garbage")),
    ("numpy.load garbage bytes", lambda lib, f: lib.numpy.load(b"\xff" * 16)),
    ("deserialize garbage", lambda lib, f: lib.root.deserialize(b"garbage")),
    ("deserialize str", lambda lib, f: lib.root.deserialize("garbage")),
    ("safe_open int", lambda lib, f: lib.root.safe_open(123, "pt")),
    ("safe_open None", lambda lib, f: lib.root.safe_open(None, "pt")),
    ("bad framework", lambda lib, f: lib.root.safe_open(f.good, "tensorflow2")),
    ("bad device string", lambda lib, f: lib.root.safe_open(f.good, "pt", device="nonsense")),
    ("negative device index", lambda lib, f: lib.root.safe_open(f.good, "pt", device=-1)),
    ("numpy on a gpu device", lambda lib, f: lib.root.safe_open(f.good, "np", device="cuda:0")),
    # Handles.
    ("get_tensor missing key", lambda lib, f: lib.root.safe_open(f.good, "pt").get_tensor("nope")),
    ("get_slice missing key", lambda lib, f: lib.root.safe_open(f.good, "np").get_slice("nope")),
    ("keys after close", lambda lib, f: closed_handle_keys(lib, f.good)),
    ("pt slice index out of range", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[5]),
    ("pt slice negative index out of range", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[-4]),
    ("pt slice second dim out of range", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[:, 7]),
    ("pt slice too many indices", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[0, 0, 0]),
    ("pt slice float index", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[1.5]),
    ("pt slice str index", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")["x"]),
    ("pt slice zero step", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[::0]),
    ("pt slice float bound", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[1.5:2]),
    ("pt slice list index out of range", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[[0, 5]]),
    ("pt slice float tensor index", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[torch.tensor([1.0])]),
    ("pt slice numpy bool index", lambda lib, f: lib.root.safe_open(f.good, "pt").get_slice("a")[np.bool_(True)]),
    ("np slice index out of range", lambda lib, f: lib.root.safe_open(f.good, "np").get_slice("a")[5]),
    ("np slice too many indices", lambda lib, f: lib.root.safe_open(f.good, "np").get_slice("a")[0, 0, 0]),
    ("np slice two ellipses", lambda lib, f: lib.root.safe_open(f.good, "np").get_slice("a")[..., ...]),
    ("np slice str index", lambda lib, f: lib.root.safe_open(f.good, "np").get_slice("a")["x"]),
    ("np slice numpy bool index", lambda lib, f: lib.root.safe_open(f.good, "np").get_slice("a")[np.bool_(True)]),
    ("np slice tensor index", lambda lib, f: lib.root.safe_open(f.good, "np").get_slice("a")[torch.tensor([0, 1])]),
    ("np slice list index", lambda lib, f: lib.root.safe_open(f.good, "np").get_slice("a")[[0, 1]]),
    # Saving with torch.
    ("save_file list instead of dict", lambda lib, f: lib.torch.save_file([torch.zeros(1)], f.out)),
    ("save_file non-tensor value", lambda lib, f: lib.torch.save_file({"a": 1}, f.out)),
    ("save_file non-str key", lambda lib, f: lib.torch.save_file({1: torch.zeros(1)}, f.out)),
    ("save non-str key", lambda lib, f: lib.torch.save({1: torch.zeros(1)})),
    ("save_file sparse tensor", lambda lib, f: lib.torch.save_file({"a": torch.eye(2).to_sparse()}, f.out)),
    ("save_file non-contiguous", lambda lib, f: lib.torch.save_file({"a": torch.zeros(4)[::2]}, f.out)),
    ("save_file shared tensors", lambda lib, f: lib.torch.save_file({"a": SHARED, "b": SHARED}, f.out)),
    ("save_file complex128", lambda lib, f: lib.torch.save_file({"a": torch.zeros(2, dtype=torch.complex128)}, f.out)),
    ("save complex128", lambda lib, f: lib.torch.save({"a": torch.zeros(2, dtype=torch.complex128)})),
    ("save_file into a missing directory", lambda lib, f: lib.torch.save_file({"a": torch.zeros(1)}, "/nonexistent/dir/x.safetensors")),
    ("save_file onto a directory", lambda lib, f: lib.torch.save_file({"a": torch.zeros(1)}, f.directory)),
    ("save_file metadata value not str", lambda lib, f: lib.torch.save_file({"a": torch.zeros(1)}, f.out, metadata={"k": 1})),
    ("save_file metadata key not str", lambda lib, f: lib.torch.save_file({"a": torch.zeros(1)}, f.out, metadata={1: "v"})),
    ("save_file metadata not a dict", lambda lib, f: lib.torch.save_file({"a": torch.zeros(1)}, f.out, metadata=[("k", "v")])),
    ("save metadata value not str", lambda lib, f: lib.torch.save({"a": torch.zeros(1)}, metadata={"k": None})),
    ("save_model non-contiguous", lambda lib, f: lib.torch.save_model(_NonContiguous(), f.out, force_contiguous=False)),
    ("save_model complex128", lambda lib, f: lib.torch.save_model(_Complex(), f.out)),
    ("load_model missing file", lambda lib, f: lib.torch.load_model(torch.nn.Linear(1, 1), f.missing)),
    ("load_model missing keys", lambda lib, f: lib.torch.load_model(torch.nn.Linear(1, 1), f.good)),
    # Saving with numpy.
    ("numpy.save_file list instead of dict", lambda lib, f: lib.numpy.save_file([np.zeros(1)], f.out)),
    ("numpy.save_file non-array value", lambda lib, f: lib.numpy.save_file({"a": 1}, f.out)),
    ("numpy.save_file non-str key", lambda lib, f: lib.numpy.save_file({1: np.zeros(1)}, f.out)),
    ("numpy.save_file object dtype", lambda lib, f: lib.numpy.save_file({"a": np.array([object()])}, f.out)),
    ("numpy.save_file complex128", lambda lib, f: lib.numpy.save_file({"a": np.zeros(2, dtype=np.complex128)}, f.out)),
    ("numpy.save_file str dtype", lambda lib, f: lib.numpy.save_file({"a": np.array(["x"])}, f.out)),
    ("numpy.save_file into a missing directory", lambda lib, f: lib.numpy.save_file({"a": np.zeros(1)}, "/nonexistent/dir/x.safetensors")),
    ("numpy.save metadata value not str", lambda lib, f: lib.numpy.save({"a": np.zeros(1)}, metadata={"k": 1})),
    # The low-level writer.
    ("serialize value not a TensorSpec", lambda lib, f: lib.root.serialize({"a": 1})),
    ("TensorSpec unknown dtype", lambda lib, f: lib.root.TensorSpec(dtype="F128", shape=[1], data_ptr=0, data_len=16)),
    (
        "serialize data_len disagrees with shape",
        lambda lib, f: lib.root.serialize(
            {"a": lib.root.TensorSpec(dtype="float32", shape=[5], data_ptr=SHARED.data_ptr(), data_len=16)}
        ),
    ),
]


class _NonContiguous(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.zeros(4, 4).t())


class _Complex(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.zeros(2, dtype=torch.complex128))


def raised(function, lib, files):
    try:
        function(lib, files)
    except Exception as error:  # noqa: BLE001 - the point is to catch anything
        return error
    return None


def expected_class(error):
    """The class ours must be an instance of: the reference's, with its
    SafetensorError standing for ours."""
    cls = type(error)
    if cls is safetensors.SafetensorError:
        return safeweights.SafetensorError
    assert cls.__module__ == "builtins", f"unexpected reference class {cls}"
    return cls


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")
@pytest.mark.parametrize("function", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_our_error_is_an_instance_of_the_reference_error(function, files):
    reference = raised(function, REFERENCE, files)
    assert reference is not None, "the reference accepts this input: the case is wrong"
    ours = raised(function, OURS, files)
    assert ours is not None, f"the reference raises {type(reference).__name__}: {reference}, ours accepts"
    assert isinstance(ours, expected_class(reference)), (
        f"reference raises {type(reference).__name__} ({reference}); ours raises "
        f"{type(ours).__name__} [{', '.join(c.__name__ for c in type(ours).__mro__)}] ({ours})"
    )
    # Ours are SafetensorErrors only where the reference's is, or where ours
    # wraps a problem the reference reports as a built-in (never for a
    # missing file, which code catches as FileNotFoundError alone).
    if isinstance(reference, FileNotFoundError):
        assert not isinstance(ours, safeweights.SafetensorError)


def test_failed_writes_are_safetensor_errors_and_os_errors(tmp_path):
    target = tmp_path / "missing" / "x.safetensors"
    for save in (
        lambda: safeweights.torch.save_file({"a": torch.ones(1)}, target),
        lambda: safeweights.numpy.save_file({"a": np.ones(1)}, target),
        lambda: safeweights.serialize_file({}, target),
    ):
        with pytest.raises(safeweights.SafetensorError) as caught:
            save()
        error = caught.value
        assert isinstance(error, FileNotFoundError) and isinstance(error, safeweights.SafetensorOSError)
        assert type(error) is safeweights.SafetensorFileNotFoundError
        assert error.errno == 2 and error.strerror == "No such file or directory"
        assert error.filename == str(target)
        with pytest.raises(FileNotFoundError):  # what `except FileNotFoundError` catches
            save()
    with pytest.raises(IsADirectoryError) as caught:
        safeweights.torch.save_file({"a": torch.ones(1)}, tmp_path)
    assert isinstance(caught.value, safeweights.SafetensorError) and caught.value.errno == 21


def test_missing_files_on_read_stay_plain_file_not_found_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        safeweights.torch.load_file(tmp_path / "nope.safetensors")
    assert type(caught.value) is FileNotFoundError
    assert caught.value.errno == 2 and caught.value.filename == str(tmp_path / "nope.safetensors")


def test_unsupported_dtype_error_is_a_key_error_and_a_value_error():
    with pytest.raises(safeweights.UnsupportedDtypeError) as caught:
        safeweights.torch.save({"a": torch.zeros(2, dtype=torch.complex128)})
    error = caught.value
    for cls in (safeweights.SafetensorError, KeyError, LookupError, ValueError):
        assert isinstance(error, cls)
    # Printed as a message, not quoted as KeyError prints its key.
    assert str(error).startswith("Tensor `a` has dtype torch.complex128")
    with pytest.raises(KeyError):
        safeweights.TensorSpec(dtype="complex128", shape=[1], data_ptr=0, data_len=16)


def test_slice_errors_are_index_and_type_errors(tmp_path):
    data = safeweights.torch.save({"a": torch.zeros(3, 4)})
    with safeweights.safe_open(data, "pt") as f:
        with pytest.raises(IndexError) as caught:
            f.get_slice("a")[3]
        assert isinstance(caught.value, safeweights.InvalidSliceError)
        with pytest.raises(TypeError) as caught:
            f.get_slice("a")["x"]
        assert isinstance(caught.value, safeweights.UnsupportedIndexError)
        assert isinstance(caught.value, safeweights.InvalidSliceError)


def test_a_directory_without_shards_is_a_shard_error_and_an_os_error(tmp_path):
    with pytest.raises(safeweights.ShardDirectoryError) as caught:
        safeweights.torch.load_file(tmp_path)
    assert isinstance(caught.value, safeweights.ShardError)
    assert isinstance(caught.value, IsADirectoryError)


@pytest.mark.parametrize(
    "make",
    [
        lambda: safeweights.UnsupportedDtypeError("dtype"),
        lambda: safeweights.InvalidSliceError("slice"),
        lambda: safeweights.UnsupportedIndexError("index"),
        lambda: safeweights.SafetensorFileNotFoundError(2, "No such file or directory", "/x"),
        lambda: safeweights.ShardDirectoryError("directory"),
        lambda: safeweights.DeviceUnavailableError("device"),
    ],
)
def test_new_classes_pickle_and_print(make):
    error = make()
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and copy.args == error.args
    assert type(error).__module__ == "safeweights" and getattr(safeweights, type(error).__name__) is type(error)


def test_documented_differences(tmp_path):
    """Where we deliberately differ from the reference, and why."""
    # 1. A tensor named "__metadata__": the reference writes a file that no
    #    reader (itself included) can read; we refuse to write it.
    with pytest.raises(safetensors.SafetensorError):
        safetensors.torch.load(safetensors.torch.save({"__metadata__": torch.zeros(1)}))
    with pytest.raises(safeweights.InvalidTensorError, match="reserved"):
        safeweights.torch.save({"__metadata__": torch.zeros(1)})
    # 2. Negative slice steps: numpy semantics here; the reference raises.
    data = safeweights.torch.save({"a": torch.arange(4.0)})
    with safeweights.safe_open(data, "pt") as f:
        assert f.get_slice("a")[::-1].tolist() == [3.0, 2.0, 1.0, 0.0]
    # 3. `None` (a new axis) in numpy get_slice: numpy semantics here; the
    #    reference's numpy slices raise. (Boolean, list, array and tensor
    #    indices give what the reference's do: see test_slicing.py.)
    (tmp_path / "file").mkdir()
    path = tmp_path / "file" / "a.safetensors"
    path.write_bytes(data)
    with safetensors.safe_open(path, "np") as f:
        with pytest.raises(safetensors.SafetensorError):
            f.get_slice("a")[None]
    with safeweights.safe_open(path, "np") as f:
        assert f.get_slice("a")[None].shape == (1, 4)
    # 4. A directory: the reference fails with OSError(ENODEV); ours reads a
    #    sharded checkpoint from it, so one that holds none is a ShardError
    #    (and an IsADirectoryError, so `except OSError` still works).
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError) as reference:
        safetensors.safe_open(str(empty), "pt")
    assert not isinstance(reference.value, safetensors.SafetensorError)
    with pytest.raises(safeweights.ShardDirectoryError, match="empty") as ours:
        safeweights.safe_open(str(empty), "pt")
    assert isinstance(ours.value, safeweights.ShardError) and isinstance(ours.value, IsADirectoryError)
