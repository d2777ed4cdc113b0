"""The differential oracle itself: it must see payloads run, survive
crashing and hanging files, and return the values the real loaders give."""

import os
import pickle

import numpy as np
import torch

from oracle import LOADERS, MARKER, check, payload_ran, plain, run_loaders, touch_payload


class _System:
    def __reduce__(self):
        return (os.system, (touch_payload(),))


class _Exit:
    def __reduce__(self):
        return (os._exit, (3,))


class _Sleep:
    def __reduce__(self):
        import time

        return (time.sleep, (30,))


def test_oracle_sees_payload_and_values_and_survives_crashes(tmp_path):
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({"w": _System()}, protocol=2))
    crash = tmp_path / "crash.pkl"
    crash.write_bytes(pickle.dumps(_Exit()))
    hang = tmp_path / "hang.pkl"
    hang.write_bytes(pickle.dumps(_Sleep()))
    benign = tmp_path / "benign.pt"
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "step": 7}
    torch.save(state, benign)
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(4, dtype=np.int16))

    results = run_loaders([hostile, crash, hang, benign, npy], timeout=8)

    assert payload_ran(results[str(hostile)]) == ["pickle", "pickle_stream", "torch", "numpy"]
    assert not any(os.path.exists(os.path.join(p, MARKER)) for p in (os.getcwd(), tmp_path))
    assert results[str(crash)]["pickle"].error == "crashed"
    assert results[str(hang)]["pickle"].error == "timeout"
    # The worker restarted after the crash and the hang: later files still ran.
    torch_result = results[str(benign)]["torch"]
    assert torch_result.loaded and torch_result.value == plain(state)
    assert results[str(npy)]["numpy"].value == plain(np.arange(4, dtype=np.int16))
    assert set(results[str(npy)]) == set(LOADERS)

    ours = check(hostile, results[str(hostile)], expect="payload")
    assert ours.refused and ours.scan_verdict == "dangerous"
    ours = check(benign, results[str(benign)], expect="benign")
    assert ours.loaded["load_checkpoint"] == plain(state)


def test_plain_spells_torch_and_numpy_alike():
    assert plain(torch.tensor([1.5, -2.0])) == plain(np.array([1.5, -2.0], dtype=np.float32))
    assert plain(torch.nn.Parameter(torch.ones(2))) == plain(torch.ones(2))
    assert plain((1, [2])) != plain([1, [2]])
    assert plain({"a": 1}) != plain({"a": 1.0})
