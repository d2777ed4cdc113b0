"""Every value comes back with its exact type and value through
safeweights.save/load, or is refused when saving, naming where it is and
what to do."""

import argparse
import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import json
import pathlib
import random
import typing
import uuid
import zoneinfo

import numpy as np
import pytest
import torch
from exact import assert_exact

import safeweights


def roundtrip(obj, tmp_path, **load_args):
    path = tmp_path / "ckpt.safetensors"
    safeweights.save(obj, path)
    return safeweights.load(path, **load_args)


def check(obj, tmp_path, **load_args):
    got = roundtrip({"v": obj}, tmp_path, **load_args)["v"]
    assert_exact(got, obj)
    return got


BUILTIN_VALUES = {
    "float": 1.5,
    "negative_zero": -0.0,
    "nan": float("nan"),
    "inf": float("-inf"),
    "big_int": 2**100,
    "bool": True,
    "complex": complex(1.5, float("-inf")),
    "bytes": b"\x00\xffsmall",
    "large_bytes": bytes(range(256)) * 40,
    "bytearray": bytearray(b"abc"),
    "large_bytearray": bytearray(5000),
    "tuple": (1, (2, "x")),
    "set": {1, "a"},
    "frozenset": frozenset({1, 2}),
    "datetime": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456),
    "datetime_utc": datetime.datetime(2024, 5, 6, tzinfo=datetime.timezone.utc),
    "datetime_offset": datetime.datetime(2024, 5, 6, tzinfo=datetime.timezone(datetime.timedelta(hours=-3), "BRT")),
    "datetime_zoneinfo": datetime.datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
    "date": datetime.date(1999, 12, 31),
    "time": datetime.time(23, 59, 59, 1, tzinfo=datetime.timezone(datetime.timedelta(minutes=90))),
    "timedelta": datetime.timedelta(days=-2, seconds=5, microseconds=7),
    "posix_path": pathlib.PosixPath("/tmp/x"),
    "pure_windows_path": pathlib.PureWindowsPath("C:\\data\\x.txt"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": decimal.Decimal("-1.2300E+5"),
    "decimal_nan": decimal.Decimal("sNaN"),
    "fraction": fractions.Fraction(-3, 7),
    "range": range(1, 10, 3),
    "slice": slice(1, None, (2, "x")),
    "counter": collections.Counter({"a": 3, "b": 1}),
    "deque": collections.deque([1, 2, 3], maxlen=5),
    "defaultdict": collections.defaultdict(list, {"k": [1]}),
    "defaultdict_none": collections.defaultdict(None, {1: 2}),
    "int_keys": {0: "a", 1.5: "b", (1, 2): "c", None: "d"},
    "type": int,
}


@pytest.mark.parametrize("name", list(BUILTIN_VALUES))
def test_builtin_values_come_back_exact(name, tmp_path):
    check(BUILTIN_VALUES[name], tmp_path)


def test_ordered_dict_keeps_state_dict_metadata(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    state = model.state_dict()
    got = check(state, tmp_path)
    assert got._metadata == state._metadata
    model.load_state_dict(got)


NUMPY_VALUES = {
    "float64_scalar": np.float64(0.1),
    "float32_scalar": np.float32(1 / 3),
    "float16_scalar": np.float16(2.5),
    "longdouble_scalar": np.longdouble(1) / 3,
    "int64_scalar": np.int64(-7),
    "uint8_scalar": np.uint8(200),
    "bool_scalar": np.bool_(True),
    "complex128_scalar": np.complex128(1 + 2j),
    "str_scalar": np.str_("héllo"),
    "datetime64_scalar": np.datetime64("2024-01-02T03:04:05", "s"),
    "dtype": np.dtype("float32"),
    "big_endian_dtype": np.dtype(">i4"),
    "scalar_type": np.float16,
    "array": np.arange(12, dtype=np.float32).reshape(3, 4),
    "big_endian_array": np.arange(5, dtype=">f8"),
    "fortran_array": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
    "reversed_array": np.arange(6, dtype=np.int32)[::-1],
    "uint32_array": np.arange(7, dtype=np.uint32),
    "complex128_array": np.array([1 + 2j, np.nan], dtype=np.complex128),
    "zero_d_array": np.array(3.5),
    "empty_array": np.zeros((0, 4), dtype=np.int8),
    "string_array": np.array(["a", "bcd"]),
    "datetime_array": np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]"),
    "longdouble_array": np.arange(3, dtype=np.longdouble) / 7,
    "readonly_array": np.frombuffer(b"\x01\x02\x03\x04", dtype=np.uint8),
}


@pytest.mark.parametrize("name", list(NUMPY_VALUES))
def test_numpy_values_come_back_exact(name, tmp_path):
    check(NUMPY_VALUES[name], tmp_path)


def test_numpy_arrays_go_to_the_data_section(tmp_path):
    path = tmp_path / "a.safetensors"
    safeweights.save({"big": np.ones(1000, dtype=np.float64)}, path)
    with safeweights.safe_open(path, "np") as f:
        assert f.keys() == ["big"]
        assert np.array_equal(f.get_tensor("big"), np.ones(1000))


def test_rng_states_come_back_exact(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "numpy_generator": np.random.default_rng(4).bit_generator.state,
        "cpu": torch.get_rng_state(),
    }
    got = check(state, tmp_path)
    random.setstate(got["python"])
    np.random.set_state(got["numpy"])
    torch.set_rng_state(got["cpu"])
    draws = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    assert draws == (random.random(), np.random.rand(), torch.rand(1))


TORCH_VALUES = {
    "size": torch.Size([2, 3]),
    "dtype": torch.bfloat16,
    "device": torch.device("cuda", 1),
    "layout": torch.sparse_csr,
    "memory_format": torch.channels_last,
    "tensor": torch.arange(6.0).reshape(2, 3),
    "requires_grad": torch.ones(3, requires_grad=True),
    "parameter": torch.nn.Parameter(torch.ones(2)),
    "frozen_parameter": torch.nn.Parameter(torch.ones(2), requires_grad=False),
    "complex128": torch.tensor([1 + 2j], dtype=torch.complex128),
    "sparse_coo": torch.tensor([[0.0, 2.0], [3.0, 0.0]]).to_sparse(),
    "sparse_coo_uncoalesced": torch.sparse_coo_tensor([[0, 0], [1, 1]], [1.0, 2.0], (2, 2)),
    "sparse_csr": torch.tensor([[0.0, 2.0], [3.0, 0.0]]).to_sparse_csr(),
    "sparse_csc": torch.tensor([[0.0, 2.0], [3.0, 0.0]]).to_sparse_csc(),
    "sparse_bsr": torch.arange(16.0).reshape(4, 4).to_sparse_bsr((2, 2)),
    "sparse_bsc": torch.arange(16.0).reshape(4, 4).to_sparse_bsc((2, 2)),
}


@pytest.mark.parametrize("name", list(TORCH_VALUES))
def test_torch_values_come_back_exact(name, tmp_path):
    check(TORCH_VALUES[name], tmp_path)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dtype", [torch.qint8, torch.quint8, torch.qint32, torch.quint4x2])
def test_quantized_tensors_keep_scale_and_zero_point(dtype, tmp_path):
    per_tensor = torch.quantize_per_tensor(torch.rand(4, 6), 0.05, 3, dtype)
    check(per_tensor, tmp_path)
    if dtype != torch.quint4x2:
        scales = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
        per_channel = torch.quantize_per_channel(torch.randn(4, 6), scales, torch.tensor([0, 1, 2, 3]), 0, dtype)
        check(per_channel, tmp_path)
        check(per_tensor[1:].transpose(0, 1), tmp_path)


def test_state_dict_of_a_quantized_model(tmp_path):
    model = torch.ao.nn.quantized.Linear(4, 3)
    got = check(model.state_dict(), tmp_path)
    restored = torch.ao.nn.quantized.Linear(4, 3)
    restored.load_state_dict(got)
    x = torch.quantize_per_tensor(torch.rand(2, 4), 0.1, 0, torch.quint8)
    assert torch.equal(restored(x).int_repr(), model(x).int_repr())


# Classes that need allowing.


@dataclasses.dataclass
class Config:
    lr: float
    name: str = "run"
    tags: tuple = ()


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlots:
    x: int
    y: np.float32


class Point(typing.NamedTuple):
    x: int
    y: float


Pair = collections.namedtuple("Pair", "a b")


class Color(enum.Enum):
    RED = "r"
    BLUE = "b"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Plain:
    def __init__(self):
        raise AssertionError("__init__ must never run on load")


class AttrDict(dict):
    """Like lightning's AttributeDict: a dict subclass with attributes."""


class WithSetState:
    def __setstate__(self, state):
        self.restored = state


ALLOWED = [Config, FrozenSlots, Point, Pair, Color, Level, Plain, AttrDict, WithSetState, argparse.Namespace]


def _plain():
    obj = Plain.__new__(Plain)
    obj.weights = torch.ones(2)
    obj.step = 3
    return obj


def _attr_dict():
    d = AttrDict(a=1, b=torch.zeros(1))
    d.extra = "x"
    return d


def _with_setstate():
    obj = WithSetState.__new__(WithSetState)
    obj.__dict__["value"] = 5
    return obj


CLASS_VALUES = {
    "dataclass": lambda: Config(1e-3, tags=(1, 2)),
    "frozen_slots_dataclass": lambda: FrozenSlots(1, np.float32(2.5)),
    "typed_namedtuple": lambda: Point(1, 2.5),
    "namedtuple": lambda: Pair(torch.ones(1), [1]),
    "enum": lambda: Color.BLUE,
    "int_enum": lambda: Level.HIGH,
    "namespace": lambda: argparse.Namespace(lr=0.1, path=pathlib.PosixPath("/x"), level=Level.LOW),
    "plain_class": _plain,
    "dict_subclass": _attr_dict,
    "class_as_value": lambda: Config,
}


@pytest.mark.parametrize("name", list(CLASS_VALUES))
def test_allowed_classes_come_back_exact(name, tmp_path):
    value = CLASS_VALUES[name]()
    with safeweights.safe_types(ALLOWED):
        got = check(value, tmp_path)
    if isinstance(value, enum.Enum):
        assert got is value


def test_setstate_is_used_when_the_class_defines_it(tmp_path):
    with safeweights.safe_types([WithSetState]):
        got = roundtrip({"v": _with_setstate()}, tmp_path)["v"]
    assert type(got) is WithSetState and got.restored == {"value": 5}


def test_int_enum_is_never_an_int(tmp_path):
    with pytest.raises(safeweights.UnsafeTypeError, match=r"Level at cfg.level"):
        safeweights.save({"cfg": {"level": Level.LOW}}, tmp_path / "x.safetensors")


def test_torch_add_safe_globals_is_honoured(tmp_path):
    with torch.serialization.safe_globals([Config]):
        safeweights.save({"c": Config(0.5)}, tmp_path / "c.safetensors")
        assert safeweights.load(tmp_path / "c.safetensors")["c"] == Config(0.5)
    with pytest.raises(safeweights.UnsafeTypeError):
        safeweights.load(tmp_path / "c.safetensors")


def test_add_safe_types_is_process_wide_and_safe_types_argument_per_call(tmp_path):
    class_name = f"{__name__}.Config"
    with safeweights.safe_types([Config]):
        safeweights.save({"c": Config(0.5)}, tmp_path / "c.safetensors")
    assert safeweights.load(tmp_path / "c.safetensors", safe_types=[Config])["c"] == Config(0.5)
    assert class_name not in safeweights.get_safe_types()
    safeweights.add_safe_types([(Config, "renamed.Config")])
    try:
        safeweights.save({"c": Config(0.5)}, tmp_path / "r.safetensors")
        assert safeweights.load(tmp_path / "r.safetensors")["c"] == Config(0.5)
    finally:
        safeweights._safe_types._process_wide.pop("renamed.Config")


# Refusals name the place and the fix.

REFUSED = {
    "object": (object(), r"cannot save a builtins.object at cfg.x: .*add_safe_types\(\[builtins.object\]\)"),
    "dataclass": (Config(1.0), r"cannot save a test_types.Config at cfg.x: .*safeweights.add_safe_types\(\[test_types.Config\]\)"),
    "namedtuple": (Pair(1, 2), r"test_types.Pair at cfg.x"),
    "int_enum": (Level.LOW, r"test_types.Level at cfg.x"),
    "namespace": (argparse.Namespace(a=1), r"argparse.Namespace at cfg.x: .*add_safe_types\(\[argparse.Namespace\]\)"),
    "local_class": (type("Local", (), {"__qualname__": "f.<locals>.Local"})(), r"defined inside a function"),
    "object_array": (np.array([1, "a"], dtype=object), r"numpy array at cfg.x: dtype object"),
    "structured_array": (np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), r"no exact string form"),
    "memmap_subclass": (np.ma.masked_array([1, 2]), r"numpy.asarray"),
    "tensor_subclass": (torch.ones(1).as_subclass(type("T", (torch.Tensor,), {})), r"as_subclass"),
    "defaultdict_lambda": (collections.defaultdict(lambda: 0), r"cfg.x.default_factory"),
    "self_containing": (None, r"cfg.x.0: it contains itself"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refusals_name_the_path_and_the_fix(name, tmp_path):
    value, message = REFUSED[name]
    if name == "self_containing":
        value = []
        value.append(value)
    with pytest.raises(TypeError, match=message):
        safeweights.save({"cfg": {"x": value}}, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_loading_a_class_not_allowed_names_it_where_it_is_and_the_fix(tmp_path):
    with safeweights.safe_types([Config]):
        safeweights.save({"trainer": {"args": Config(1.0)}}, tmp_path / "c.safetensors")
    with pytest.raises(safeweights.UnsafeTypeError) as error:
        safeweights.load(tmp_path / "c.safetensors")
    message = str(error.value)
    assert "test_types.Config at trainer.args" in message
    assert "safeweights.add_safe_types([test_types.Config])" in message


def test_no_code_named_in_a_file_is_ever_imported_or_called(tmp_path):
    """A hand-written structure naming os.system as a class or type is refused."""
    for root in [{"$object": "os.system", "args": ["touch /tmp/pwned"]}, {"$type": "os.system"},
                 {"$enum": "subprocess.Popen", "value": "x"}, {"$defaultdict": [], "factory": {"$type": "os.getcwd"}}]:
        path = tmp_path / "evil.safetensors"
        structure = json.dumps({"version": 2, "root": root})
        safeweights.torch.save_file({"a": torch.ones(1)}, path, metadata={"safeweights.checkpoint": structure})
        with pytest.raises(safeweights.UnsafeTypeError, match="os.system|os.getcwd|subprocess.Popen"):
            safeweights.load(path)


def test_version_1_files_written_by_the_first_format_still_load():
    import math
    import os

    got = safeweights.load(os.path.join(os.path.dirname(__file__), "data", "checkpoint-v1.safetensors"))
    assert type(got["model"]) is collections.OrderedDict
    assert got["model"]._metadata == collections.OrderedDict([("", {"version": 1}), ("fc", {"version": 1})])
    assert got["model"]["tied"].data_ptr() == got["model"]["fc.weight"].data_ptr()
    assert got["opt"]["state"][0]["exp_avg"].data_ptr() == got["model"]["fc.weight"].data_ptr()
    assert torch.equal(got["model"]["fc.weight"], torch.arange(6.0).reshape(2, 3))
    assert got["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert list(got["opt"]["state"]) == [0]
    assert got["epoch"] == 3 and got["best"] == math.inf and math.isnan(got["nan"])
    assert got["flags"] == {True, None} and got["size"] == torch.Size([2, 3])
    assert got["dtype"] is torch.bfloat16 and got["device"] == torch.device("cpu")
    assert got["c128"].dtype == torch.complex128 and type(got["p"]) is torch.nn.Parameter


def test_a_whole_training_state_round_trips(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sched.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
        "best_loss": np.float64(0.25),
        "history": collections.deque([1.0, 0.5], maxlen=10),
        "started": datetime.datetime.now(datetime.timezone.utc),
    }
    got = roundtrip(state, tmp_path)
    assert_exact(got, state)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(got["optimizer"])
