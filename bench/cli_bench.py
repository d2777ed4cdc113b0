"""Benchmarks of the `safeweights` CLI against torch doing the same work, in
the same run, and writes them into BENCHMARKS.md between the
`<!-- cli:start -->` and `<!-- cli:end -->` markers.

- stats on a 2 GiB file vs the same statistics in torch (float64);
- diff of two 2 GiB files vs a torch script computing the same numbers;
- remote inspect over a local nginx vs downloading the whole file (curl).

Usage: python bench/cli_bench.py [--size-gib 2] [--binary PATH] [--no-write]
Build first: cargo build --release -p safeweights-cli
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_common  # noqa: E402


def best_of(runs, fn):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def make_files(directory, size_gib):
    """Two files of `size_gib` GiB of F32 in 64 tensors; B is A with 1% changed."""
    torch.manual_seed(0)
    n_tensors = 64
    per = int(size_gib * (1 << 30)) // 4 // n_tensors
    a, b = {}, {}
    for i in range(n_tensors):
        t = torch.randn(per // 1024, 1024)
        a[f"layer.{i:02d}.weight"] = t
        u = t.clone()
        u[:: 100] += 1e-3
        b[f"layer.{i:02d}.weight"] = u
    pa, pb = os.path.join(directory, "a.safetensors"), os.path.join(directory, "b.safetensors")
    save_file(a, pa)
    save_file(b, pb)
    return pa, pb


def torch_stats(path):
    out = {}
    with safe_open(path, "pt") as f:
        for name in f.keys():
            x = f.get_tensor(name).to(torch.float64)
            finite = x[torch.isfinite(x)]
            out[name] = (finite.min().item(), finite.max().item(), finite.mean().item(),
                         finite.std(correction=0).item(), int(torch.isnan(x).sum()),
                         int(torch.isposinf(x).sum()), int(torch.isneginf(x).sum()), int((x == 0).sum()))
    return out


def torch_diff(pa, pb):
    out = {}
    with safe_open(pa, "pt") as fa, safe_open(pb, "pt") as fb:
        for name in fa.keys():
            x = fa.get_tensor(name).to(torch.float64)
            y = fb.get_tensor(name).to(torch.float64)
            d = (x - y).abs()
            out[name] = (int((~torch.isclose(x, y, rtol=0, atol=0)).sum()), d.max().item(), d.mean().item())
    return out


def cli(binary, *args):
    result = subprocess.run([binary, *args, "--json"], capture_output=True, check=False)
    if result.returncode not in (0, 1):
        sys.exit(f"safeweights {args} failed: {result.stderr.decode()}")
    return json.loads(result.stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remote_bench(binary, directory, path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        return None
    port = free_port()
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; pid {directory}/nginx.pid; error_log {directory}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_temp_path {directory}/b; proxy_temp_path {directory}/p;
  fastcgi_temp_path {directory}/f; uwsgi_temp_path {directory}/u; scgi_temp_path {directory}/s;
  server {{ listen 127.0.0.1:{port}; root {directory}; }} }}""")
    server = subprocess.Popen([nginx, "-p", directory, "-c", conf], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/{os.path.basename(path)}"
        t_inspect, doc = best_of(5, lambda: cli(binary, "inspect", url))
        t_download, _ = best_of(2, lambda: subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True))
        return t_inspect, doc["http"], t_download, os.path.getsize(path)
    finally:
        server.kill()
        server.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/safeweights"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: cargo build --release -p safeweights-cli")
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as directory:
        pa, pb = make_files(directory, args.size_gib)
        # Warm the page cache for both sides.
        for p in (pa, pb):
            with open(p, "rb") as f:
                while f.read(64 << 20):
                    pass
        t_cli_stats, stats = best_of(3, lambda: cli(args.binary, "stats", pa))
        t_torch_stats, ref = best_of(2, lambda: torch_stats(pa))
        for t in stats["tensors"]:
            r = ref[t["name"]]
            assert abs(t["mean"] - r[2]) <= 1e-9 * max(1.0, abs(r[2])) and abs(t["std"] - r[3]) <= 1e-9 * r[3]
        t_cli_diff, diff = best_of(3, lambda: cli(args.binary, "diff", pa, pb))
        t_torch_diff, ref = best_of(2, lambda: torch_diff(pa, pb))
        for t in diff["tensors"]:
            assert t["differing"] == ref[t["name"]][0]
        remote = remote_bench(args.binary, directory, pa)
    size = f"{args.size_gib:g} GiB"
    lines = [
        "## CLI (`bench/cli_bench.py`)",
        "",
        f"F32 checkpoint of {size} in 64 tensors, warm page cache, {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {threads} threads; best of several runs. "
        "Results of both sides are checked against each other.",
        "",
        "| work | safeweights | torch / curl | speedup |",
        "|---|---|---|---|",
        f"| `stats` (min, max, mean, std, NaN/inf/zero counts in f64) | {t_cli_stats:.2f} s | {t_torch_stats:.2f} s | {t_torch_stats / t_cli_stats:.1f}x |",
        f"| `diff` of two {size} files (count, max and mean abs diff in f64) | {t_cli_diff:.2f} s | {t_torch_diff:.2f} s | {t_torch_diff / t_cli_diff:.1f}x |",
    ]
    if remote:
        t_inspect, http, t_download, file_size = remote
        lines.append(
            f"| remote `inspect` over local nginx vs downloading the file | {t_inspect * 1000:.0f} ms, "
            f"{http['requests']} request(s), {http['bytes']:,} bytes | {t_download:.2f} s, {file_size:,} bytes (curl) | "
            f"{file_size / http['bytes']:,.0f}x fewer bytes |"
        )
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        bench_common.write_section("cli", section)


if __name__ == "__main__":
    main()
