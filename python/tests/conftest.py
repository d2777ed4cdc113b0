"""Shared helpers for the safeweights Python tests.

Under `SAFEWEIGHTS_REQUIRE_ALL=1` (set by scripts/test.sh, so in CI) a test
skipped for a missing dependency (`pytest.importorskip`, or a skip whose
reason starts with "needs dependency") fails instead: a CI that lost a test
dependency must not stay green. Skips for missing hardware (a GPU) or
privileges stay skips.
"""

import os

import numpy as np
import pytest
import torch

REQUIRE_ALL = os.environ.get("SAFEWEIGHTS_REQUIRE_ALL") == "1"
# How pytest.importorskip words its skip, and how our tests word theirs.
_MISSING_DEPENDENCY = ("could not import", "needs dependency")


def _fail_missing_dependency(report):
    """Turns `report`, a skip for a missing dependency, into a failure
    under `SAFEWEIGHTS_REQUIRE_ALL=1`."""
    if not (REQUIRE_ALL and report.skipped and isinstance(report.longrepr, tuple)):
        return
    reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    if reason.startswith(_MISSING_DEPENDENCY):
        report.outcome = "failed"
        report.longrepr = f"SAFEWEIGHTS_REQUIRE_ALL=1: a test dependency is missing ({reason})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_dependency(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_missing_dependency(outcome.get_result())


# Every torch dtype the format can store, with a way to make test values.
TORCH_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.uint16,
    torch.int32,
    torch.uint32,
    torch.int64,
    torch.uint64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.float8_e4m3fnuz,
    torch.float8_e5m2fnuz,
    torch.float8_e8m0fnu,
    torch.float4_e2m1fn_x2,
]

NUMPY_DTYPES = [
    np.bool_,
    np.uint8,
    np.int8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
]


def random_tensor(shape, dtype, seed=0):
    """Random bytes reinterpreted as `dtype` (covers every bit pattern)."""
    generator = torch.Generator().manual_seed(seed)
    numel = 1
    for n in shape:
        numel *= n
    raw = torch.randint(0, 256, (numel * dtype.itemsize,), dtype=torch.uint8, generator=generator)
    if dtype == torch.bool:
        raw = raw % 2
    return raw.view(dtype).reshape(shape)


def same_bits(a, b):
    """Bitwise equality (NaN-safe, works for dtypes without comparisons)."""
    assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape), (a.dtype, b.dtype, a.shape, b.shape)
    return a.contiguous().reshape(-1).view(torch.uint8).tolist() == b.contiguous().reshape(-1).view(torch.uint8).tolist()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "model.safetensors"
