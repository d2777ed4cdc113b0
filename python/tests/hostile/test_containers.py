"""Crafted containers against the real loaders (issue 10, container side).

Every file from `containers.corpus` goes through the differential oracle:
whenever torch.load, np.load, pickle.load or gzip+pickle runs its payload,
`scan` must say dangerous and convert / load_checkpoint must refuse; for
benign files our values must equal the real loader's. On top of that, the
zip differentials must be called *ambiguous archives* by scan and refused
with `UnsafeCheckpointError` by the Python reader, and the benign files
must convert to exactly what the real loader returns.
"""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import containers
import oracle
import safeweights
from safeweights.torch import load_checkpoint

SEVERITY = {"safe": 0, "suspicious": 1, "dangerous": 2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("containers")
    files = containers.corpus(str(out))
    results = oracle.run_loaders([p for p, _ in files])
    return {case.name: (path, case, results[os.path.abspath(path)]) for path, case in files}


NAMES = sorted(
    list(containers.zip_cases()) + list(containers.container_cases()) + ["lora_zeros.npz", "members_bzip2.npz", "members_lzma.npz", "crc_off.pt"]
)


def scan_json(path):
    done = subprocess.run([oracle.cli(), "scan", "--json", path], capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout)


def findings(report):
    """Every finding of a `scan --json` report, wherever the CLI nests them."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "subject" in node and "verdict" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(report)
    return found


@pytest.mark.parametrize("name", NAMES)
def test_real_loaders_and_ours_agree(corpus, name):
    path, case, results = corpus[name]
    ours = oracle.check(path, results, expect=case.expect)
    assert SEVERITY[ours.scan_verdict] >= SEVERITY[case.min_verdict], (name, ours.scan_json)
    subjects = {f["subject"] for f in findings(ours.scan_json)}
    assert ("ambiguous archive" in subjects) == case.ambiguous, (name, subjects)
    if case.ambiguous and name.endswith(".pt"):
        with pytest.raises(safeweights.UnsafeCheckpointError, match="ambiguous zip archive"):
            load_checkpoint(path)


@pytest.mark.parametrize("name", ["lora_zeros.npz", "members_bzip2.npz", "members_lzma.npz"])
def test_benign_npz_converts_to_what_np_load_returns(corpus, name, tmp_path):
    path, _, _ = corpus[name]
    out = tmp_path / "out.safetensors"
    done = subprocess.run([oracle.cli(), "convert", path, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ours = load_file(str(out))
    with np.load(path) as ref:
        assert sorted(ours) == sorted(ref.files)
        for key in ref.files:
            np.testing.assert_array_equal(ours[key], ref[key])
            assert ours[key].dtype == ref[key].dtype


def test_crc_less_torch_checkpoint_loads_like_torch(corpus):
    path, _, results = corpus["crc_off.pt"]
    with open(path, "rb") as f:
        # The file really has CRCs of 0, as torch writes them.
        assert b"\x00\x00\x00\x00" in f.read()
    ref = torch.load(path, weights_only=True)
    ours = load_checkpoint(path)
    assert oracle.plain(ours) == oracle.plain(ref) == results["torch"].value


def test_nested_zips_are_never_safe_however_deep(corpus):
    shallow = scan_json(corpus["nested_2.zip"][0])
    assert shallow["verdict"] == "dangerous"
    deep = scan_json(corpus["nested_12.zip"][0])
    assert deep["verdict"] != "safe"
    assert any("max_archive_depth" in f["reason"] for f in findings(deep))


def test_every_compressed_pickle_is_opened(corpus):
    for name in ("pickle.pkl.gz", "two_members.pkl.gz", "pickle.pkl.bz2", "pickle.pkl.xz", "torch_checkpoint.pt.gz"):
        report = scan_json(corpus[name][0])
        assert report["verdict"] == "dangerous", (name, report)
        assert any("system" in f["subject"] for f in findings(report)), (name, report)


def test_seven_zip_cannot_be_checked_and_is_not_safe(corpus):
    report = scan_json(corpus["model.7z"][0])
    assert report["verdict"] == "suspicious"
    assert any("7z archive: cannot be checked" in f["subject"] for f in findings(report))
