"""Real GGUF files written by llama.cpp's own converter: the vocabulary
files (tokenizer metadata with arrays of up to 280,000 strings, chat
templates, a GGUF v2 file; no tensors) that llama-cpp-python's source
distribution on PyPI ships, fetched by scripts/fetch-gguf-fixtures.py
(run by scripts/install-test-deps.sh). The `gguf` package's GGUFReader is
the oracle for the metadata; every file goes through the CLI too."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import safeweights.gguf

gguf = pytest.importorskip("gguf")  # conftest's policy turns skips into failures in CI

VOCAB = Path(__file__).resolve().parents[2] / "target" / "test-data" / "llama.cpp-vocab"
# GGUFReader takes 1 to 22 s a file here: the oracle reads the smaller files,
# the v2 one (aquila) among them; the CLI reads all of them.
ORACLE_FILES = ["aquila", "baichuan", "bert-bge", "deepseek-coder", "gpt-neox", "llama-spm", "phi-3"]
WITH_CHAT_TEMPLATE = ["command-r", "gemma-4", "phi-3", "qwen2", "qwen35"]


def real_files():
    files = sorted(VOCAB.glob("ggml-vocab-*.gguf"))
    if not files:
        pytest.skip(
            "needs dependency: llama.cpp's GGUF vocabulary files in target/test-data/llama.cpp-vocab "
            "(scripts/fetch-gguf-fixtures.py, run by scripts/install-test-deps.sh)"
        )
    return files


def name(path):
    return path.name.removeprefix("ggml-vocab-").removesuffix(".gguf")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "safeweights", *args], capture_output=True, text=True,
                          timeout=120)


def test_metadata_equals_gguf_py_on_files_llama_cpp_wrote():
    files = {name(path): path for path in real_files()}
    assert set(ORACLE_FILES) <= set(files), sorted(files)
    versions = set()
    for label in ORACLE_FILES:
        reader = gguf.GGUFReader(str(files[label]))
        with safeweights.gguf.open(files[label]) as f:
            keys = [k for k in reader.fields if not k.startswith("GGUF.")]
            assert list(f.metadata) == keys, label
            for key in keys:
                assert f.metadata[key] == reader.fields[key].contents(), (label, key)
            assert f.tensor_names() == [t.name for t in reader.tensors] == [], label
            versions.add(f.version)
    assert versions == {2, 3}  # aquila is a GGUF v2 file


def test_cli_validates_scans_and_inspects_every_file_llama_cpp_wrote():
    for path in real_files():
        label = name(path)
        result = cli("validate", str(path))
        assert result.returncode == 0, (label, result.stderr)
        result = cli("scan", "--all", "--json", str(path))
        assert result.returncode == 0, (label, result.stderr)
        report = json.loads(result.stdout)["files"][0]
        assert report["verdict"] == "safe" and report["format"] == "GGUF (llama.cpp)", (label, report)
        templates = [f for f in report["findings"] if f["subject"].startswith("tokenizer.chat_template")]
        if label in WITH_CHAT_TEMPLATE:
            # A chat template is reported as what it is: data, never code.
            assert templates and all("never code" in f["reason"] for f in templates), (label, report)
        else:
            assert not templates, (label, report)
        result = cli("inspect", "--json", str(path))
        assert result.returncode == 0, (label, result.stderr)
        document = json.loads(result.stdout)
        assert document["tensors"] == [] and "tokenizer.ggml.tokens" in document["metadata"], label
        with safeweights.gguf.open(path) as f:
            assert sorted(document["metadata"]) == sorted(f.metadata), label
