"""Crafted containers against the real loaders (issue 10, container side).

Every file from `containers.corpus` goes through the differential oracle:
whenever torch.load, np.load, pickle.load or gzip+pickle runs its payload,
`scan` must say dangerous and convert / load_checkpoint must refuse; for
benign files our values must equal the real loader's. On top of that, the
zip differentials must be called *ambiguous archives* by scan and refused
with `UnsafeCheckpointError` by the Python reader, and the benign files
must convert to exactly what the real loader returns.
"""

import base64
import json
import os
import subprocess

import numpy as np
import pytest
import torch

import containers
import oracle
import safeweights
from safeweights._safeweights_rust import zip_members
from safeweights.torch import load_checkpoint

SEVERITY = {"safe": 0, "suspicious": 1, "dangerous": 2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("containers")
    files = containers.corpus(str(out))
    results = oracle.run_loaders([p for p, _ in files])
    return {case.name: (path, case, results[os.path.abspath(path)]) for path, case in files}


BENIGN = ["lora_zeros.npz", "members_bzip2.npz", "members_lzma.npz", "crc_off.pt"]
NAMES = sorted(
    list(containers.zip_cases()) + list(containers.container_cases()) + list(containers.seven_zip_cases()) + BENIGN
)
ZIPS = sorted(
    list(containers.zip_cases()) + BENIGN + ["nested_2.zip", "object_member_bzip2.npz", "object_member_lzma.npz", "inside_zip.zip"]
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
    if case.ambiguous:
        # Refused by every reader, .npz files included (no numpy.load behind
        # safeweights.load), whatever a real loader would have done with it.
        with open(path, "rb") as f:
            zip_first = f.read(4) == b"PK\x03\x04"
        # A file that does not start like a zip (one after a pickle or junk)
        # is read by what it starts with, as torch does, and refused there.
        refusal = safeweights.UnsafeCheckpointError if zip_first else safeweights.SafetensorError
        with pytest.raises(refusal, match="ambiguous zip archive" if zip_first else None):
            safeweights.load(path)
        with pytest.raises(safeweights.SafetensorError):
            load_checkpoint(path)
        assert ours.convert_rc != 0 and not ours.convert_wrote, name
        if name.endswith(".pt") and zip_first:
            with pytest.raises(safeweights.UnsafeCheckpointError, match="ambiguous zip archive"):
                load_checkpoint(path)


@pytest.mark.parametrize("name", ["lora_zeros.npz", "members_bzip2.npz", "members_lzma.npz"])
def test_benign_npz_converts_to_what_np_load_returns(corpus, name, tmp_path):
    # The reference's safe_open, not safetensors.numpy: importing that
    # submodule adds `numpy` to the reference's names, which
    # test_api_names then compares with ours.
    from safetensors import safe_open

    path, _, _ = corpus[name]
    out = tmp_path / "out.safetensors"
    done = subprocess.run([oracle.cli(), "convert", path, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with safe_open(str(out), framework="np") as f:
        ours = {key: f.get_tensor(key) for key in f.keys()}
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


def test_a_7z_that_cannot_be_read_is_suspicious(corpus):
    for name in ("model.7z", "truncated.7z", "encrypted.7z", "encrypted_header.7z"):
        report = scan_json(corpus[name][0])
        assert report["verdict"] == "suspicious", (name, report)
        assert any("cannot be read" in f["reason"] for f in findings(report)), (name, report)


def test_7z_members_are_scanned_like_files(corpus):
    for name in ("pickle_lzma2.7z", "pickle_ppmd.7z", "torch_zip_lzma2.7z", "solid_benign_then_evil.7z", "nested.7z", "inside_zip.zip"):
        report = scan_json(corpus[name][0])
        assert report["verdict"] == "dangerous", (name, report)
        assert any("system" in f["subject"] for f in findings(report)), (name, report)
    for name in ("benign_torch.7z", "benign_arrays.7z"):
        report = scan_json(corpus[name][0])
        assert report["verdict"] == "safe", (name, report)


# ---------------------------------------------------------------- zip property


def _unplain(value):
    """Back from `oracle.plain()` for the JSON the zip views are made of."""
    if isinstance(value, list) and value and value[0] in ("dict", "list", "bytes"):
        kind, body = value
        if kind == "dict":
            return {_unplain(k): _unplain(v) for k, v in body}
        if kind == "list":
            return [_unplain(v) for v in body]
        return base64.b64decode(body)
    return value


@pytest.fixture(scope="module")
def zip_views(corpus):
    paths = [corpus[name][0] for name in ZIPS]
    views = oracle.run_loaders(paths, loaders=[oracle.ZIP_VIEWS])
    return {name: _unplain(views[os.path.abspath(corpus[name][0])][oracle.ZIP_VIEWS].value) for name in ZIPS}


def ours(path):
    """Our member names and data.pkl bytes, or None when we refuse the file."""
    try:
        names, _ = zip_members(path)
        pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        data_pkl = zip_members(path, read=pkl[0])[1] if pkl else None
    except safeweights.SafetensorError:
        return None
    return names, data_pkl


@pytest.mark.parametrize("name", ZIPS)
def test_our_members_are_zipfiles_and_torchs_or_the_file_is_refused(corpus, zip_views, name):
    """The property: whatever our zip reader accepts, Python's zipfile and
    torch's own reader (`torch._C.PyTorchFileReader`, the one torch.load
    uses) see the same members and the same data.pkl; anything else is
    refused as ambiguous."""
    path = corpus[name][0]
    views = zip_views[name]
    assert views is not None, name
    seen = ours(path)
    if seen is None:
        return
    names, data_pkl = seen
    assert views["zipfile"] is not None, f"{name}: we read what zipfile refuses"
    assert set(names) == set(views["zipfile"]), (name, names, views["zipfile"])
    assert data_pkl == views["zipfile_data_pkl"], name
    if views["torch"] is not None:
        prefix = names[0].split("/", 1)[0] + "/" if "/" in names[0] else ""
        assert {n[len(prefix):] for n in names} == set(views["torch"]), (name, names, views["torch"])
        assert data_pkl is None or views["torch_data_pkl"] == data_pkl, name


def test_the_property_splits_real_readers_on_the_crafted_files(corpus, zip_views):
    """The crafted files do make torch's reader and zipfile disagree (so the
    property above is not vacuous), and every such file is one we refuse."""
    def relative(names):
        prefix = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
        return {n[len(prefix):] for n in names}

    split = [
        name for name, v in zip_views.items()
        if v["zipfile"] is not None and v["torch"] is not None
        and (relative(v["zipfile"]) != set(v["torch"]) or v["zipfile_data_pkl"] != v["torch_data_pkl"])
    ]
    one_sided = [name for name, v in zip_views.items() if (v["zipfile"] is None) != (v["torch"] is None) and name.endswith(".pt")]
    assert split and one_sided, zip_views
    for name in split + one_sided:
        assert ours(corpus[name][0]) is None, name
