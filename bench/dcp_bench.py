"""Distributed checkpoints: `safeweights.dcp` against torch's own DCP
storage layers, side by side in one run (the "dcp" section of
BENCHMARKS.md).

4 cpu ranks (gloo, `torch.multiprocessing` spawn) hold a state of
`--size-mib` MiB in all: `--tensors` float32 tensors sharded on dim 0
(DTensor `Shard(0)`). For each storage layer, interleaved round by round
so that load on the machine hits them all alike:

- save: `dcp.save` with `SafeweightsStorageWriter`, `FileSystemWriter`
  (pickle-based default) and `HuggingFaceStorageWriter(save_distributed=True)`;
- load on the same 4 ranks, and resharded into 2 ranks;
- the peak memory each rank adds during the save and the load (resident
  set high-water mark, reset before each operation);
- consolidation to full tensors: `safeweights.dcp.consolidate` against
  torch's `consolidate_safetensors_files`.

Times are medians over `--rounds` rounds with their spread (min-max).
Files live in a temporary directory removed at the end. Loads read from
the page cache (the files were just written), as a resume on the same
node does.

    python bench/dcp_bench.py --size-mib 2048 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import machine, write_section  # noqa: E402

LAYERS = ("safeweights", "safeweights, checksums=False", "torch FileSystemWriter", "torch HuggingFaceStorageWriter")
OURS = LAYERS[:2]


def _writer(layer: str, path: str) -> Any:
    from torch.distributed.checkpoint import FileSystemWriter, HuggingFaceStorageWriter

    from safeweights.dcp import SafeweightsStorageWriter

    if layer in OURS:
        return SafeweightsStorageWriter(path, checksums=layer == "safeweights")
    if layer == "torch FileSystemWriter":
        return FileSystemWriter(path)
    return HuggingFaceStorageWriter(path, save_distributed=True)


def _reader(layer: str, path: str) -> Any:
    from torch.distributed.checkpoint import FileSystemReader, HuggingFaceStorageReader

    from safeweights.dcp import SafeweightsStorageReader

    if layer in OURS:
        return SafeweightsStorageReader(path)
    if layer == "torch FileSystemWriter":
        return FileSystemReader(path)
    return HuggingFaceStorageReader(path)


def _state(world_size: int, tensors: int, total_bytes: int, fill: bool) -> Dict[str, Any]:
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    mesh = init_device_mesh("cpu", (world_size,))
    columns = 1024
    # A multiple of 4 rows, so that 4 and 2 ranks see the same global shapes.
    rows = max(4, total_bytes // tensors // 4 // columns // 4 * 4)
    local_rows = rows // world_size
    state = {}
    for i in range(tensors):
        # Load destinations are zeroed first, so that their pages are
        # resident and the peak counts only what a load adds.
        local = torch.zeros(local_rows, columns)
        if fill:
            local.fill_(float(i + mesh.get_rank()))
        state[f"layers.{i}.weight"] = DTensor.from_local(local, mesh, [Shard(0)], run_check=False)
    return state


def _reset_peak() -> int:
    """Resets this process's RSS high-water mark; returns the current RSS."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _status("VmRSS")


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _timed(work: Callable[[], None]) -> Dict[str, float]:
    import torch.distributed as dist

    dist.barrier()
    base = _reset_peak()
    start = time.perf_counter()
    work()
    dist.barrier()
    return {"seconds": time.perf_counter() - start, "peak": _status("VmHWM") - base}


def _job(rank: int, world_size: int, port: int, mode: str, root: str, rounds: int, tensors: int, total: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    results: Dict[str, Dict[str, List[Dict[str, float]]]] = {layer: {} for layer in LAYERS}
    try:
        for _ in range(rounds):
            for layer in LAYERS:
                path = os.path.join(root, layer.replace(" ", "_"))
                if mode == "save":
                    state = _state(world_size, tensors, total, fill=True)
                    if rank == 0 and os.path.exists(path):
                        shutil.rmtree(path)
                    dist.barrier()
                    measured = _timed(lambda: dcp.save(state, storage_writer=_writer(layer, path)))
                    results[layer].setdefault("save", []).append(measured)
                    del state
                target = _state(world_size, tensors, total, fill=False)
                measured = _timed(lambda: dcp.load(target, storage_reader=_reader(layer, path)))
                results[layer].setdefault(f"load{world_size}", []).append(measured)
                del target
        with open(os.path.join(root, f"{mode}-{world_size}-rank{rank}.json"), "w") as out:
            json.dump(results, out)
    finally:
        dist.destroy_process_group()


def _spawn(world_size: int, *args: Any) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_job, args=(world_size, port, *args), nprocs=world_size)


def _consolidate(root: str, rounds: int) -> Dict[str, List[float]]:
    import torch  # noqa: F401
    from torch.distributed.checkpoint._consolidate_hf_safetensors import consolidate_safetensors_files

    from safeweights.dcp import consolidate

    ours_in = os.path.join(root, LAYERS[0].replace(" ", "_"))
    theirs_in = os.path.join(root, "torch_HuggingFaceStorageWriter")
    with open(os.path.join(ours_in, "safeweights.dcp.json")) as file:
        names = list(json.load(file)["state"])
    times: Dict[str, List[float]] = {"safeweights": [], "torch": []}
    for _ in range(rounds):
        for who in times:
            out = os.path.join(root, f"consolidated-{who}")
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            if who == "safeweights":
                # durable=False: torch's consolidation syncs nothing either.
                consolidate(ours_in, out, max_shard_size="5GB", durable=False)
            else:
                os.makedirs(out)
                consolidate_safetensors_files(theirs_in, out, dict.fromkeys(names, 1))
            times[who].append(time.perf_counter() - start)
            shutil.rmtree(out)
    return times


# Where our time goes, measured once by hand (cProfile of `dcp.save`/`dcp.load`
# with `no_dist=True`, and the native writer alone), kept with the numbers
# because it explains the ratios; rerun those measurements when the writer
# or the reader changes.
PROFILE = (
    "Where the time goes (cProfile of one process with a 64 MiB state, and the native writer alone on 256 MiB,"
    " this machine under load, December 2026): a save spends about 85% of its time in the one native call that"
    " writes the rank's file (`serialize_file_checksummed`), and most of that is the durable `fsync` (256 MiB:"
    " 0.59 s durable, 0.20 s without `fsync`; the XXH3 checksums add about 0.06 s). Starting writeback early"
    " (`sync_file_range` every 16 MiB) did not shorten write plus `fsync` on this disk (0.61 s against 0.59 s,"
    " medians), so a save here is bound by the disk, which FileSystemWriter waits for too: the 1.5x save target"
    " is out of reach on this machine without giving up durability. Loads, profiled per rank (cProfile in each"
    " of 1, 2 and 4 spawned ranks, 256 MiB state, same ranks and resharded 4 to 2, under load 6-7): our own"
    " Python is under 1 ms per rank (metadata, planning 16 items, one `read_ranges_into` per shard file that"
    " preads every run of rows straight into the destination tensors, no intermediate buffer); the native read"
    " is 0.02-0.03 s per 64 MiB, the memcpy out of the page cache. The rest of a 0.05-0.12 s rank load is"
    " torch's own planning and collectives (DTensor offsets, plan scatter, barriers), the same for every storage"
    " layer. HuggingFaceStorageReader also copies each byte once (mmap, then `copy_` into the destination),"
    " so on the load both are bound by memory bandwidth and DCP's fixed cost: at 1 rank 0.046 s against 0.048 s."
    " FileSystemReader copies twice (`readinto`, then `copy_`) and unpickles per item, hence 2-5x slower loads"
    " than ours. The"
    " 1.5x target against HuggingFaceStorageReader would need fewer copies than one, which loading in place"
    " into the caller's tensors rules out. Fixed after profiling: a resharded load read its shard files on a"
    " Python thread pool on top of the native threads (thread start 14 ms and lock waits per rank under load);"
    " files are now read one after the other, each in one native call on its own threads (A/B at 256 MiB"
    " resharded into 2 ranks, interleaved, medians: 0.053 s before, 0.045 s after, a gain near the noise)."
)


def _summary(values: List[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def _merge(root: str, mode: str, world_size: int) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Per layer and operation: the slowest rank's time per round, and the
    largest peak any rank reached."""
    ranks = []
    for rank in range(world_size):
        with open(os.path.join(root, f"{mode}-{world_size}-rank{rank}.json")) as file:
            ranks.append(json.load(file))
    merged: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for layer in LAYERS:
        for operation in ranks[0][layer]:
            per_round = list(zip(*(r[layer][operation] for r in ranks)))
            merged.setdefault(layer, {})[operation] = {
                "seconds": [max(m["seconds"] for m in round_) for round_ in per_round],
                "peak": max(m["peak"] for round_ in per_round for m in round_),
            }
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048, help="the whole state, all ranks together")
    parser.add_argument("--tensors", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = parser.parse_args()
    total = args.size_mib << 20
    load_before = os.getloadavg()[0]
    root = tempfile.mkdtemp(prefix="dcp-bench-")
    try:
        _spawn(4, "save", root, args.rounds, args.tensors, total)
        _spawn(2, "reshard", root, args.rounds, args.tensors, total)
        four, two = _merge(root, "save", 4), _merge(root, "reshard", 2)
        consolidation = _consolidate(root, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    share = total // 4
    lines = [
        f"4 cpu ranks (gloo), a {args.size_mib} MiB float32 state ({args.tensors} tensors sharded on dim 0,"
        f" {share >> 20} MiB per rank); medians of {args.rounds} interleaved rounds (min-max), each the slowest"
        f" rank's time. Peak: the most any rank's resident set grew during the operation. {machine()};"
        f" load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after (other work on the machine).",
        "",
        "| storage layer | save | load, 4 ranks | load resharded 4 to 2 | peak per rank: save | load (4) |",
        "|---|---|---|---|---|---|",
    ]
    for layer in LAYERS:
        save, load4, load2 = four[layer]["save"], four[layer]["load4"], two[layer]["load2"]
        lines.append(
            f"| {layer} | {_summary(save['seconds'])} | {_summary(load4['seconds'])} | {_summary(load2['seconds'])}"
            f" | {save['peak'] >> 20} MiB | {load4['peak'] >> 20} MiB |"
        )
    theirs = LAYERS[len(OURS):]
    best_save = min(statistics.median(four[layer]["save"]["seconds"]) for layer in theirs)
    best_load = min(statistics.median(four[layer]["load4"]["seconds"]) for layer in theirs)
    best_reshard = min(statistics.median(two[layer]["load2"]["seconds"]) for layer in theirs)
    ours = four["safeweights"]
    lines += [
        "",
        f"Against the faster of torch's two: save {best_save / statistics.median(ours['save']['seconds']):.2f}x"
        f" ({best_save / statistics.median(four[OURS[1]]['save']['seconds']):.2f}x without checksums),"
        f" load {best_load / statistics.median(ours['load4']['seconds']):.2f}x,"
        f" resharded load {best_reshard / statistics.median(two['safeweights']['load2']['seconds']):.2f}x"
        " (target 1.5x each).",
        "",
        f"Consolidation to full tensors: safeweights.dcp.consolidate {_summary(consolidation['safeweights'])},"
        f" torch's consolidate_safetensors_files {_summary(consolidation['torch'])}"
        f" ({statistics.median(consolidation['torch']) / statistics.median(consolidation['safeweights']):.2f}x;"
        " ours with durable=False, as torch's syncs nothing). Saves are durable on both sides: FileSystemWriter"
        " fsyncs by default, as SafeweightsStorageWriter does; HuggingFaceStorageWriter does too (it is a FileSystemWriter).",
        "",
        PROFILE,
        "",
        f"Reproduce: `python bench/dcp_bench.py --size-mib {args.size_mib} --rounds {args.rounds}`.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("dcp", "## Distributed checkpoints (torch.distributed.checkpoint)\n\n" + text)


if __name__ == "__main__":
    main()
