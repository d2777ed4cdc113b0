"""Every crafted file of the corpus, through the differential oracle: when
a real loader runs its payload, scan says dangerous and every safeweights
loader refuses; benign files load to the real loader's values."""

import pytest

from corpus import CASES, build_all
from oracle import check, run_loaders


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    built = build_all(tmp_path_factory.mktemp("corpus"))
    results = run_loaders([path for _, path in built])
    return {case.name: (path, results[str(path)]) for case, path in built}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.cls}:{c.name}" for c in CASES])
def test_agrees_with_real_loaders(case, corpus):
    path, results = corpus[case.name]
    check(path, results, expect=case.expect)


def test_every_class_has_several_variants():
    by_class = {}
    for c in CASES:
        by_class.setdefault(c.cls, []).append(c)
    assert set(by_class) == {"no-proto", "proto0-stop", "legacy", "weak-checks", "benign"}
    assert all(len(v) >= 3 for v in by_class.values()), {k: len(v) for k, v in by_class.items()}


def test_pre_0_4_tar_checkpoints_are_refused_with_a_clear_message(tmp_path):
    import subprocess

    import safeweights
    from safeweights.torch import load_checkpoint

    from corpus import tar_benign
    from oracle import cli

    path = tmp_path / "old.pt"
    tar_benign(path)
    with pytest.raises(safeweights.SafetensorError, match="pre-0.4 tar format"):
        load_checkpoint(path)
    convert = subprocess.run([cli(), "convert", str(path), str(tmp_path / "out.safetensors")], capture_output=True, text=True)
    assert convert.returncode != 0 and "pre-0.4 tar format" in convert.stderr
