#!/usr/bin/env python3
"""Fetches real GGUF files, written by llama.cpp's own converter, for the
tests (python/tests/test_gguf_real_files.py): the vocabulary files that
llama-cpp-python's source distribution on PyPI ships in
vendor/llama.cpp/models/ggml-vocab-*.gguf (tokenizer metadata, long string
arrays, chat templates; no tensors). No package on the registries ships a
real GGUF model with tensors small enough for a test suite.

The sdist is found through PyPI's JSON API, checked against the SHA-256 the
index publishes, and only the GGUF members are extracted (plain files with
plain names, nothing else), into target/test-data/llama.cpp-vocab/. Nothing
is run or imported from it. Does nothing when the files are there already.

Usage: scripts/fetch-gguf-fixtures.py [DEST]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

PACKAGE, VERSION = "llama-cpp-python", "0.3.36"
MEMBERS = "/vendor/llama.cpp/models/ggml-vocab-"
ROOT = Path(__file__).resolve().parent.parent
INDEX = os.environ.get("SAFEWEIGHTS_PYPI_JSON", "https://pypi.org/pypi")


def sdist(meta_url: str) -> tuple[str, str]:
    with urllib.request.urlopen(meta_url, timeout=60) as response:
        meta = json.load(response)
    # The project's JSON (some mirrors serve no per-version one): the pinned
    # version's files from its releases, or its current files if it is current.
    files = (meta.get("releases") or {}).get(VERSION) or (
        meta["urls"] if meta["info"]["version"] == VERSION else []
    )
    for file in files:
        if file["packagetype"] == "sdist":
            # Some mirrors answer with URLs relative to the JSON's.
            return urllib.parse.urljoin(meta_url, file["url"]), file["digests"]["sha256"]
    raise SystemExit(f"{PACKAGE} {VERSION} has no source distribution on {INDEX}")


def download(url: str, digest: str, into: Path) -> Path:
    path = into / "sdist.tar.gz"
    sha = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=120) as response, open(path, "wb") as out:
        while chunk := response.read(1 << 20):
            sha.update(chunk)
            out.write(chunk)
    if sha.hexdigest() != digest:
        raise SystemExit(f"{url}: SHA-256 {sha.hexdigest()} is not the index's {digest}")
    return path


def extract(archive: Path, dest: Path) -> int:
    count = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if MEMBERS not in member.name or not member.isfile() or not name.endswith(".gguf"):
                continue
            source = tar.extractfile(member)
            assert source is not None
            (dest / name).write_bytes(source.read())
            count += 1
    return count


def main() -> None:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "test-data" / "llama.cpp-vocab"
    if dest.is_dir() and any(dest.glob("*.gguf")):
        return
    url, digest = sdist(f"{INDEX}/{PACKAGE}/json")
    print(f"==> fetching the GGUF vocabulary files of {PACKAGE} {VERSION} (sdist, {url.rsplit('/', 1)[-1]})")
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch) / "files"
        staging.mkdir()
        count = extract(download(url, digest, Path(scratch)), staging)
        if count == 0:
            raise SystemExit(f"{PACKAGE} {VERSION}: no {MEMBERS}*.gguf in the source distribution")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, dest)  # whole or not at all
    print(f"    {count} files in {dest}")


if __name__ == "__main__":
    main()
