"""No bare crashes (issue 15): a file truncated under a reader gives an
exception or a message naming it, never a bare SIGBUS; buffers that cannot
be allocated are MemoryError, never an abort; errors carry real errnos.
Each case runs in a subprocess, since some of them end it."""

import errno
import os
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

import safeweights


def sparse_file(path, tensor_bytes: int) -> None:
    """One U8 tensor of `tensor_bytes` zero bytes, stored sparse."""
    header = ('{"w":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (tensor_bytes, tensor_bytes)).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + tensor_bytes)


def run_python(code: str, *args) -> subprocess.CompletedProcess:
    # No faulthandler in the child: the message must come from safeweights.
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("framework", ["np", "pt"])
def test_a_zero_copy_tensor_of_a_truncated_file_ends_with_a_message_naming_it(tmp_path, framework):
    path = tmp_path / "model.safetensors"
    sparse_file(path, 1 << 20)
    done = run_python(
        """
        import os, sys
        from safeweights import safe_open
        with safe_open(sys.argv[1], framework=sys.argv[2]) as f:
            w = f.get_tensor("w")
        os.truncate(sys.argv[1], 4096)
        print(int(w[-1]))
        """,
        path,
        framework,
    )
    assert done.returncode == -signal.SIGBUS
    assert f"safeweights: fatal: {path}: the file was truncated" in done.stderr, done.stderr
    assert 'backend="pread"' in done.stderr


def test_a_pread_load_of_a_truncated_file_raises_a_safetensor_error_with_errno_eio(tmp_path):
    path = tmp_path / "model.safetensors"
    sparse_file(path, 1 << 20)
    with safeweights.safe_open(path, framework="np", backend="pread") as f:
        os.truncate(path, 4096)
        with pytest.raises(safeweights.SafetensorError) as raised:
            f.get_tensor("w")
    assert isinstance(raised.value, OSError)
    assert raised.value.errno == errno.EIO
    assert raised.value.filename == str(path)
    assert "shorter" in str(raised.value)


LOAD_UNDER_LIMIT = """
import resource, sys
import numpy
from safeweights.numpy import load_file
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
limit = used + (256 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    load_file(sys.argv[1], backend=sys.argv[2])
except MemoryError as error:
    print("MemoryError", error)
    sys.exit(0)
print("loaded")
sys.exit(3)
"""


@pytest.mark.parametrize("backend", ["pread", "mmap"])
def test_a_load_over_the_address_space_limit_is_a_memory_error(tmp_path, backend):
    path = tmp_path / "big.safetensors"
    sparse_file(path, 1 << 30)
    done = run_python(LOAD_UNDER_LIMIT, path, backend)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert "MemoryError" in done.stdout


def test_running_out_of_file_descriptors_is_an_os_error_with_errno(tmp_path):
    path = tmp_path / "model.safetensors"
    sparse_file(path, 64)
    done = run_python(
        """
        import errno, resource, sys
        from safeweights import safe_open
        with safe_open(sys.argv[1], framework="np") as f:  # imports everything first
            f.get_tensor("w")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, hard))
        keep = []
        try:
            while True:
                keep.append(open(sys.argv[1], "rb"))
        except OSError:
            pass
        try:
            safe_open(sys.argv[1], framework="np")
        except OSError as error:
            print(type(error).__name__, error.errno == errno.EMFILE, error.filename)
        """,
        path,
    )
    assert done.stdout.split() == ["OSError", "True", str(path)], done.stderr


def assert_truncation_error(error: BaseException, path) -> None:
    """What every copy path raises for a file cut under it: a
    SafetensorError that is an OSError with errno EIO, naming the file."""
    assert isinstance(error, safeweights.SafetensorError), repr(error)
    assert isinstance(error, OSError)
    assert error.errno == errno.EIO
    assert error.filename == str(path)
    assert "shorter" in str(error)


@pytest.mark.parametrize("framework", ["np", "pt"])
def test_a_slice_of_a_mapped_file_truncated_under_it_raises(tmp_path, framework):
    path = tmp_path / "model.safetensors"
    sparse_file(path, 1 << 20)
    with safeweights.safe_open(path, framework=framework) as f:
        window = f.get_slice("w")
        assert len(window[:8]) == 8
        os.truncate(path, 4096)
        with pytest.raises(safeweights.SafetensorError) as raised:
            window[-8:]
    assert_truncation_error(raised.value, path)


def test_the_cuda_staging_path_raises_for_a_file_truncated_under_its_map(tmp_path):
    # The staging copy (`_cuda._copy_sources`) reads each chunk through
    # `_PageCache.read_now` before copying it out of the map; that check
    # runs on the cpu, so it is tested here without a GPU.
    from safeweights._cuda import _CHUNK, _PageCache
    from safeweights._safeweights_rust import _SafeFile

    path = tmp_path / "model.safetensors"
    sparse_file(path, 3 * _CHUNK // 2)
    record = _SafeFile.open(str(path)).tensor("w")
    end = record.offset + record.nbytes
    pages = _PageCache(record.storage, end)
    pages.read_now(record.offset, _CHUNK)
    os.truncate(path, record.offset + _CHUNK)
    pages.read_now(record.offset, _CHUNK)  # still in the file
    with pytest.raises(safeweights.SafetensorError) as raised:
        pages.read_now(record.offset + _CHUNK, end - record.offset - _CHUNK)
    assert_truncation_error(raised.value, path)


def test_a_copy_to_another_device_checks_the_map_first(tmp_path):
    # TorchConverter copies out of the map for every device but the cpu
    # (`tensor.to(device)`); the check before the copy raises. The meta
    # device stands in for a GPU: the copy itself never runs.
    import torch

    from safeweights._frameworks import TorchConverter
    from safeweights._safeweights_rust import _SafeFile

    path = tmp_path / "model.safetensors"
    sparse_file(path, 1 << 20)
    record = _SafeFile.open(str(path)).tensor("w")
    os.truncate(path, 4096)
    with pytest.raises(safeweights.SafetensorError) as raised:
        TorchConverter(torch.device("meta")).tensor(record)
    assert_truncation_error(raised.value, path)


LEGACY_TRUNCATED_WHILE_LOADING = """
import os, sys, threading
import torch
from safeweights.torch import load_checkpoint

path = sys.argv[1]
size = os.path.getsize(path)

def cut_when_mapped():
    # As soon as the reader has mapped the file, cut it to one page.
    while True:
        with open("/proc/self/maps") as maps:
            if path in maps.read():
                os.truncate(path, 4096)
                return

cutter = threading.Thread(target=cut_when_mapped)
cutter.start()
try:
    state = load_checkpoint(path)
except OSError as error:
    cutter.join()
    print("raised", type(error).__name__, error.errno, error.filename)
    sys.exit(0)
cutter.join()
print("loaded", flush=True)
float(state["w"].sum())  # zero-copy: must end with the named-file message
"""


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_torch_file_truncated_while_it_loads_raises_or_names_the_file(tmp_path, zip_format):
    import torch

    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(16 << 20, dtype=torch.uint8)}, path, _use_new_zipfile_serialization=zip_format)
    done = run_python(LEGACY_TRUNCATED_WHILE_LOADING, path)
    if done.stdout.startswith("raised"):
        # Seen by the reader (its own map, read under the bus-error guard).
        assert done.returncode == 0, done.stderr
        name, number, filename = done.stdout.split()[1:]
        assert number == str(errno.EIO) and filename == str(path), done.stdout
    else:
        # Cut after the load: the tensors are zero-copy views of the file.
        assert done.stdout.startswith("loaded"), (done.stdout, done.stderr)
        assert done.returncode == -signal.SIGBUS
        assert f"safeweights: fatal: {path}: the file was truncated" in done.stderr, done.stderr


def test_python_m_safeweights_convert_of_a_file_truncated_while_it_runs_is_an_error(tmp_path):
    # The CLI inside the wheel: convert copies out of a map of its input
    # under the bus-error guard, so the cut is an error (exit 2), not SIGBUS.
    import time

    path = tmp_path / "big.npy"
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d,), }" % (4 << 30)
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.truncate(f.tell() + (4 << 30))
    output = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-m", "safeweights", "convert", str(path), str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Cut once the converter has mapped its input (and copies out of it).
    deadline = time.monotonic() + 60
    while str(path) not in open(f"/proc/{child.pid}/maps").read():
        assert child.poll() is None and time.monotonic() < deadline, "the converter never mapped its input"
        time.sleep(0.01)
    time.sleep(0.1)
    os.truncate(path, 4096)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 2, stderr
    assert str(path) in stderr and "became shorter" in stderr, stderr
    assert not output.exists() or os.listdir(output) == []
