"""The `safeweights` command (`python -m safeweights`, or the `safeweights`
script that pip installs): the Rust CLI, compiled into the native module and
run in this process. Same commands, output, colours and exit codes as the
binary that `cargo install` builds.
"""

from __future__ import annotations

import importlib.util
import platform
import signal
import sys
from typing import List, NoReturn, Optional, Sequence

from ._safeweights_rust import run_cli


def _version_lines() -> List[str]:
    """What the Python side adds to `--version`. Whether torch is installed
    decides the `device="cuda"` load path; it is looked up, not imported
    (importing torch takes seconds)."""
    torch = "installed" if importlib.util.find_spec("torch") is not None else "not installed"
    return [
        f"python: {platform.python_version()} ({platform.python_implementation()})",
        f"torch: {torch}",
    ]


def _behave_like_a_native_binary() -> None:
    """Signal dispositions of a Rust program rather than of Python.

    Ctrl-C: Python's handler only sets a flag that Python code would check,
    and none runs while the CLI works, so the default action (end the
    process) is restored. SIGPIPE: ignored, as the Rust runtime does at
    startup; a write to a closed pipe (`safeweights inspect f | head -1`)
    then fails with EPIPE and the CLI exits quietly with code 0.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Runs the command line `argv` (default: `sys.argv[1:]`) and exits
    with its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    _behave_like_a_native_binary()
    # The CLI writes to the file descriptors directly: nothing Python has
    # buffered may come after its output.
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(run_cli(["safeweights", *args], _version_lines()))


if __name__ == "__main__":
    main()
