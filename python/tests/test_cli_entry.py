"""The `safeweights` command the Python package installs (`python -m
safeweights` and the console script): the Rust CLI run inside Python must
behave like the native binary: same output and exit codes, colour only on a
terminal, quiet exit on a closed pipe, and Ctrl-C ends it.

The wheel itself, installed into a fresh environment without a Rust
toolchain, is tested by scripts/test-wheel.sh.
"""

import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import safeweights

MODULE = [sys.executable, "-m", "safeweights"]
SCRIPT = [str(Path(sys.executable).parent / "safeweights")]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A file with enough tensors that `inspect` prints well over a pipe's
    64 KiB buffer."""
    # The reference's top-level serializer: importing safetensors.numpy would
    # add a `numpy` attribute to `safetensors`, which test_api_names would
    # then expect on `safeweights` too.
    import safetensors

    path = tmp_path_factory.mktemp("cli") / "model.safetensors"
    arrays = {f"layer.{i}.weight": np.full((2, 3), i, dtype=np.float32) for i in range(4000)}
    specs = {
        name: safetensors.TensorSpec(
            dtype="float32", shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes
        )
        for name, a in arrays.items()
    }
    safetensors.serialize_file(specs, str(path), metadata={"format": "np"})
    return path


def run(command, *args, **kwargs):
    return subprocess.run(
        [*command, *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=60, **kwargs
    )


@pytest.mark.parametrize("command", [MODULE, SCRIPT], ids=["python -m", "console script"])
def test_version_names_the_build_and_the_python_side(command):
    result = run(command, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(f"safeweights {safeweights.__version__}"), lines
    assert "remote: s3, http, https (rustls)" in lines
    assert f"python: {platform.python_version()} ({platform.python_implementation()})" in lines
    assert "torch: installed" in lines
    short = run(command, "-V")
    assert short.stdout.decode() == lines[0] + "\n"


def test_inspect_prints_the_table_and_exits_0(model):
    result = run(MODULE, "--json", "inspect", str(model))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    doc = json.loads(result.stdout)
    assert len(doc["tensors"]) == 4000
    assert doc["metadata"] == {"format": "np"}


def test_exit_codes_match_the_binarys_contract(tmp_path, model):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(model.read_bytes()[:1000])
    invalid = run(MODULE, "validate", str(corrupt))
    assert invalid.returncode == 1
    assert b"safeweights: error:" in invalid.stderr and str(corrupt).encode() in invalid.stderr
    missing = run(MODULE, "validate", str(tmp_path / "missing.safetensors"))
    assert missing.returncode == 2
    usage = run(SCRIPT, "inspect")
    assert usage.returncode == 2
    assert b"Usage: safeweights inspect <FILE>" in usage.stderr
    assert run(SCRIPT, "--help").returncode == 0


def test_closed_pipe_exits_quietly_with_0(model):
    # `safeweights inspect model | head -1`: the reader goes away after one line.
    process = subprocess.Popen(
        [*MODULE, "inspect", str(model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout.readline().startswith(b"name")
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert stderr == b"", stderr


def test_ctrl_c_ends_the_command():
    # A server that accepts the connection and never answers keeps the CLI
    # waiting inside Rust code, where Python's own SIGINT handler would never
    # run: Ctrl-C must still end the process, by the signal, as it ends the
    # native binary.
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(30)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/model.safetensors"
        process = subprocess.Popen(
            [*MODULE, "inspect", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        connection, _ = server.accept()
        with connection:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            finally:
                process.kill()
    # Killed by the signal (the default action), or exit code 130 should the
    # CLI come to handle SIGINT itself (cleaning up, then exiting as shells do).
    assert process.returncode in (-signal.SIGINT, 128 + signal.SIGINT), process.returncode


def test_colour_only_on_a_terminal_and_never_with_no_color(model):
    # `script` (util-linux, from scripts/install-test-deps.sh) gives the
    # command a pseudo-terminal.
    if shutil.which("script") is None:
        pytest.skip("needs dependency `script` (bsdutils): run scripts/install-test-deps.sh")
    command = shlex.join([*MODULE, "validate", str(model)])

    def on_terminal(no_color):
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        if no_color:
            env["NO_COLOR"] = "1"
        result = subprocess.run(
            ["script", "-qec", command, "/dev/null"], capture_output=True, env=env, timeout=60
        )
        assert result.returncode == 0, result
        return result.stdout

    assert b"\x1b[" in on_terminal(no_color=False)
    assert b"\x1b[" not in on_terminal(no_color=True)
    piped = run(MODULE, "validate", str(model), env={**os.environ, "NO_COLOR": ""})
    assert b"\x1b[" not in piped.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names are bytes")
def test_file_names_that_are_not_utf8_reach_the_cli_unchanged(tmp_path, model):
    directory = os.fsencode(tmp_path)
    name = os.path.join(directory, b"model-\xff.safetensors")
    shutil.copyfile(model, name)
    result = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"safeweights", b"validate", name],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert b"valid" in result.stdout
