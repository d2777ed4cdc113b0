"""One safe_open handle read from many threads at once."""

import threading

import numpy as np
import torch

import safeweights
import safeweights.torch


def test_concurrent_reads_of_one_handle(tmp_path):
    tensors = {f"t{i}": torch.arange(i * 1000, (i + 1) * 1000, dtype=torch.int64).reshape(10, 100) for i in range(32)}
    path = tmp_path / "m.safetensors"
    safeweights.torch.save_file(tensors, path)
    errors = []
    with safeweights.safe_open(path, "pt") as f:

        def work(seed):
            rng = np.random.default_rng(seed)
            try:
                for _ in range(200):
                    name = f"t{rng.integers(32)}"
                    if rng.integers(2):
                        assert torch.equal(f.get_tensor(name), tensors[name])
                    else:
                        assert torch.equal(f.get_slice(name)[3:7, ::-5], tensors[name][3:7].flip(1)[:, ::5])
            except Exception as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[:3]
