"""Under SAFEWEIGHTS_REQUIRE_ALL=1 a missing test dependency fails the run
(issue 9): run a small suite with our conftest, with and without it."""

import os
import pathlib
import shutil
import subprocess
import sys

SUITE = '''
import pytest

missing_at_import = None


def test_missing_dependency():
    pytest.importorskip("safeweights_no_such_module")


def test_declared_missing_dependency():
    pytest.skip("needs dependency nginx on PATH")


def test_missing_hardware():
    pytest.skip("needs torch with CUDA and a GPU")
'''

MODULE_LEVEL = '''
import pytest

pytest.importorskip("safeweights_no_such_module")


def test_never_runs():
    pass
'''


def run_suite(tmp_path, require_all, *files):
    shutil.copy(pathlib.Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "test_module_level.py").write_text(MODULE_LEVEL)
    (tmp_path / "pytest.ini").write_text("")
    env = dict(os.environ)
    env.pop("SAFEWEIGHTS_REQUIRE_ALL", None)
    if require_all:
        env["SAFEWEIGHTS_REQUIRE_ALL"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *files]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_missing_dependencies_are_skips_by_default(tmp_path):
    result = run_suite(tmp_path, False, "test_suite.py", "test_module_level.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 skipped" in result.stdout, result.stdout


def test_missing_dependencies_fail_under_require_all(tmp_path):
    result = run_suite(tmp_path, True, "test_suite.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED test_suite.py::test_missing_dependency" in result.stdout, result.stdout
    assert "FAILED test_suite.py::test_declared_missing_dependency" in result.stdout, result.stdout
    assert "SKIPPED [1] test_suite.py" in result.stdout, "a missing GPU stays a skip"
    assert "2 failed, 1 skipped" in result.stdout, result.stdout


def test_a_module_skipped_for_a_dependency_fails_under_require_all(tmp_path):
    result = run_suite(tmp_path, True, "test_module_level.py")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "ERROR test_module_level.py - SAFEWEIGHTS_REQUIRE_ALL=1" in result.stdout, result.stdout
