"""Worker functions of the multi-process DCP tests (`test_dcp_distributed.py`).

Each job runs in a process of its own (`torch.multiprocessing.spawn`,
gloo on the cpu): a tiny model sharded with FSDP2's `fully_shard`, trained
with AdamW, saved and loaded through `safeweights.dcp`.
"""

from __future__ import annotations

import os
import traceback
from typing import Any, Callable, Dict, List, Tuple

import torch
import torch.distributed as dist

CONFIG = {"lr": 1e-2, "betas": (0.9, 0.95), "name": "tiny", "schedule": [1, 2, 3]}


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def batch(step: int) -> Tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randn(16, 8, generator=generator), torch.randn(16, 4, generator=generator)


def sharded(world_size: int) -> Tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model and its AdamW, FSDP2-sharded over all ranks (or plain
    without torch.distributed)."""
    model = make_model()
    if world_size:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world_size,))
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    optim = torch.optim.AdamW(model.parameters(), lr=CONFIG["lr"], betas=CONFIG["betas"])
    return model, optim


def train(model: torch.nn.Module, optim: torch.optim.Optimizer, steps: range) -> List[float]:
    losses = []
    for step in steps:
        inputs, targets = batch(step)
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    return losses


def state_of(model: torch.nn.Module, optim: torch.optim.Optimizer) -> Dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optim)
    return {"model": model_state, "optim": optim_state}


def full(value: Any) -> Any:
    """Every DTensor of a state gathered to a full tensor, recursively."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        return value.full_tensor()
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: full(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(full(v) for v in value)
    return value


def flat(value: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(value, dict):
        out: Dict[str, Any] = {}
        for key, item in value.items():
            out.update(flat(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def run(rank: int, world_size: int, port: int, job: Callable[..., None], args: Tuple[Any, ...]) -> None:
    """The spawned entry: joins the gloo group, runs `job(rank, world_size, *args)`."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        job(rank, world_size, *args)
        # Leave together: a rank that tears gloo down while another still
        # talks to it can end that one with "terminate called without an
        # active exception" (SIGABRT), seen once in the 2-rank load.
        dist.barrier()
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        dist.destroy_process_group()


def save_resume_and_fail(rank: int, world_size: int, ckpt: str, async_ckpt: str, failed_ckpt: str, out: str) -> None:
    """The 4-rank job: trains 2 steps, saves (`dcp.save` and
    `dcp.async_save`), records the full state, trains 2 more steps; then a
    fresh model loads the checkpoint and must resume bit-identically; last,
    a save in which one rank raises must raise on every rank, promptly."""
    import safeweights
    import torch.distributed.checkpoint as dcp

    from safeweights.dcp import SafeweightsStorageWriter

    model, optim = sharded(world_size)
    train(model, optim, range(2))
    state = dict(state_of(model, optim), step=2, config=dict(CONFIG))
    dcp.save(state, storage_writer=SafeweightsStorageWriter(ckpt))
    dcp.async_save(state, storage_writer=SafeweightsStorageWriter(async_ckpt)).result()
    expected = full(state_of(model, optim))
    losses = train(model, optim, range(2, 4))
    after = full(state_of(model, optim))
    if rank == 0:
        reference = {"expected": expected, "losses": losses, "after": after}
        safeweights.save(reference, os.path.join(out, "reference.safetensors"))
    dist.barrier()
    load_and_check(rank, world_size, ckpt, out, resume=True)
    save_with_failing_rank(rank, world_size, failed_ckpt, failing_rank=2, out=out)
    save_column_sharded(world_size, os.path.join(out, "columns"))


def column_tensors() -> Dict[str, torch.Tensor]:
    """Full tensors the column-sharded job saves (and the test expects)."""
    return {
        "cols": torch.arange(6 * 8, dtype=torch.float32).reshape(6, 8),
        "blocks": torch.arange(4 * 4 * 3, dtype=torch.int32).reshape(4, 4, 3),
        "rows": torch.arange(8 * 3, dtype=torch.bfloat16).reshape(8, 3),
    }


def save_column_sharded(world_size: int, path: str) -> None:
    """Tensors split along other dimensions than the first (DTensor
    `Shard(1)` on a 1-d mesh, `Shard(0), Shard(1)` on a 2x2 mesh), for
    consolidation (and, saved again by torch's own FileSystemWriter, for
    `safeweights convert`)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from safeweights.dcp import SafeweightsStorageWriter

    flat_mesh = init_device_mesh("cpu", (world_size,))
    grid = init_device_mesh("cpu", (2, world_size // 2))
    full_tensors = column_tensors()
    state = {
        "cols": distribute_tensor(full_tensors["cols"], flat_mesh, [Shard(1)]),
        "blocks": distribute_tensor(full_tensors["blocks"], grid, [Shard(0), Shard(1)]),
        "rows": distribute_tensor(full_tensors["rows"], flat_mesh, [Shard(0)]),
    }
    dcp.save(state, storage_writer=SafeweightsStorageWriter(path))
    # The same in torch's default format, for `safeweights convert`.
    dcp.save(state, checkpoint_id=path + "-torch")


def load_and_check(rank: int, world_size: int, ckpt: str, out: str, resume: bool) -> None:
    """Loads the checkpoint into `world_size` ranks; the full state must
    equal what was saved, bit for bit; with `resume`, 2 more steps must
    give the reference's losses and weights exactly."""
    import safeweights
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    from safeweights.dcp import SafeweightsStorageReader

    reference = safeweights.load(os.path.join(out, "reference.safetensors"))
    model, optim = sharded(world_size)
    state = dict(state_of(model, optim), step=0, config=dict.fromkeys(CONFIG))
    dcp.load(state, storage_reader=SafeweightsStorageReader(ckpt, verify=True))
    set_state_dict(model, optim, model_state_dict=state["model"], optim_state_dict=state["optim"])
    assert state["step"] == 2 and type(state["step"]) is int, state["step"]
    assert state["config"] == CONFIG and type(state["config"]["betas"]) is tuple, state["config"]
    assert_same(full(state_of(model, optim)), reference["expected"], f"rank {rank}/{world_size}")
    if resume:
        losses = train(model, optim, range(2, 4))
        assert losses == reference["losses"], (losses, reference["losses"])
        assert_same(full(state_of(model, optim)), reference["after"], f"resumed rank {rank}/{world_size}")
    if rank == 0:
        with open(os.path.join(out, f"loaded-{world_size}"), "w") as marker:
            marker.write("ok")


def load_plain(ckpt: str, out: str) -> None:
    """Loads into one process with no torch.distributed at all."""
    import safeweights
    import torch.distributed.checkpoint as dcp

    from safeweights.dcp import SafeweightsStorageReader

    reference = safeweights.load(os.path.join(out, "reference.safetensors"))
    model, optim = sharded(0)
    train(model, optim, range(0))
    state = dict(state_of(model, optim), step=0, config=dict.fromkeys(CONFIG))
    dcp.load(state, storage_reader=SafeweightsStorageReader(ckpt), no_dist=True)
    assert state["step"] == 2 and state["config"] == CONFIG
    assert_same(full({"model": state["model"], "optim": state["optim"]}), reference["expected"], "plain process")


def assert_same(actual: Dict[str, Any], expected: Dict[str, Any], where: str) -> None:
    actual_flat, expected_flat = flat(actual), flat(expected)
    assert actual_flat.keys() == expected_flat.keys(), (where, sorted(actual_flat.keys() ^ expected_flat.keys()))
    for key, value in expected_flat.items():
        got = actual_flat[key]
        if isinstance(value, torch.Tensor):
            assert isinstance(got, torch.Tensor) and got.dtype == value.dtype and got.shape == value.shape, (where, key)
            assert torch.equal(got.view(-1).view(torch.uint8) if got.numel() else got, value.view(-1).view(torch.uint8) if value.numel() else value), (where, key)
        else:
            assert got == value and type(got) is type(value), (where, key, got, value)


def save_with_failing_rank(rank: int, world_size: int, ckpt: str, failing_rank: int, out: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    from safeweights.dcp import SafeweightsStorageWriter

    class Failing(SafeweightsStorageWriter):
        def _write(self, plan: Any, planner: Any) -> Any:
            if rank == failing_rank:
                raise OSError(28, "No space left on device (injected)")
            return super()._write(plan, planner)

    model, optim = sharded(world_size)
    train(model, optim, range(1))
    state = dict(state_of(model, optim), step=1)
    try:
        dcp.save(state, storage_writer=Failing(ckpt))
    except CheckpointException as error:
        failures = error.failures
        assert list(failures) == [failing_rank], failures
        with open(os.path.join(out, f"raised-{rank}"), "w") as marker:
            marker.write(repr(failures[failing_rank]))
        return
    raise AssertionError(f"rank {rank}: dcp.save did not raise")
