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
