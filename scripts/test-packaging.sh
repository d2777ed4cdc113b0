#!/usr/bin/env bash
# Checks what users install, the way they install it (called by scripts/test.sh):
#   1. `cargo package --list` of each publishable crate: no warning, the
#      README and licence files in, no tests, fixtures, venvs or build output;
#      one declared rust-version, no older than any locked dependency needs,
#      and named in README.md;
#   2. the CLI's build.rs records the git commit in a checkout and nothing
#      elsewhere; `cargo install --path crates/safeweights-cli` gives a
#      working binary;
#   3. `maturin sdist` holds the sources the wheel needs and nothing else;
#   4. the abi3 wheel from `maturin build --release`, installed into a fresh
#      virtual environment with no Rust toolchain on PATH and none of the
#      repository's packages, runs `safeweights --version`, `inspect` and
#      `scan`, and `python -m safeweights --version`.
# Builds reuse ./target, so after scripts/setup.sh they are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
work=$(mktemp -d)
untracked="$root/target/packaging-untracked-crate"
trap 'rm -rf "$work" "$untracked"' EXIT
fail() { echo "test-packaging: $*" >&2; exit 1; }

echo "==> cargo package --list (publishable crates)"
crates=$(cargo metadata --no-deps --format-version 1 --locked | .venv/bin/python -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["publish"] != []:
        print(p["name"])')
[ -n "$crates" ] || fail "no publishable crate found"
for crate in $crates; do
    # --allow-dirty: the check is about the file list, also before a commit.
    cargo package --list --allow-dirty --locked -p "$crate" >"$work/list" 2>"$work/err" ||
        { cat "$work/err" >&2; fail "$crate: cargo package failed"; }
    if grep -qiE "warning|error" "$work/err"; then cat "$work/err" >&2; fail "$crate: cargo package warns"; fi
    for needed in Cargo.toml README.md LICENSE-MIT LICENSE-APACHE; do
        grep -qx "$needed" "$work/list" || fail "$crate: $needed missing from the package"
    done
    if grep -E '^(tests|target|benches|fuzz|\.venv)/|\.(py|so|pt|bin|safetensors|npz?)$' "$work/list"; then
        fail "$crate: the package holds files that are not sources (above)"
    fi
    echo "    $crate: $(wc -l <"$work/list") files"
done

echo "==> rust-version: every crate declares the workspace's, which no dependency exceeds"
# What `cargo install` promises users: the declared minimum must be enough
# for every locked dependency, and the README must name the same version.
cargo metadata --format-version 1 --locked >"$work/metadata.json"
.venv/bin/python - "$work/metadata.json" <<'PY' || fail "rust-version (above)"
import json, sys
packages = json.load(open(sys.argv[1]))["packages"]
declared = {p["rust_version"] for p in packages if p["source"] is None}
assert len(declared) == 1 and None not in declared, f"the crates declare different rust-versions: {declared}"
minimum = declared.pop()
version = lambda v: tuple(int(x) for x in v.split("."))
needing_more = [f"{p['name']} {p['version']} needs {p['rust_version']}" for p in packages
                if p["rust_version"] and version(p["rust_version"]) > version(minimum)]
assert not needing_more, f"rust-version {minimum} is too old: " + ", ".join(needing_more)
assert f"Rust {minimum} or newer" in open("README.md").read(), f"README.md does not say: Rust {minimum} or newer"
print(f"    rust-version {minimum}")
PY

echo "==> the CLI's build.rs: the commit from a checkout, nothing (and no failure) elsewhere"
rustc --edition 2021 --crate-type bin -o "$work/build-script" crates/safeweights-cli/build.rs
run_build_script() { (cd "$work" && CARGO_MANIFEST_DIR="$1" TARGET=test-target "$work/build-script"); }
mkdir -p "$work/no-git" "$untracked"
run_build_script "$work/no-git" >"$work/out" || fail "build.rs fails outside git"
if grep GIT "$work/out"; then fail "build.rs outside git reports a commit (above)"; fi
# Like `cargo package`'s copy: inside the repository, but not tracked there.
run_build_script "$untracked" >"$work/out" || fail "build.rs fails"
if grep GIT "$work/out"; then fail "build.rs reports a commit for untracked files (above)"; fi
if git ls-files --error-unmatch crates/safeweights-cli/build.rs >/dev/null 2>&1; then
    run_build_script "$root/crates/safeweights-cli" >"$work/out" || fail "build.rs fails in the checkout"
    grep -qx "cargo:rustc-env=SAFEWEIGHTS_GIT_COMMIT=$(git rev-parse --short=9 HEAD)" "$work/out" ||
        fail "build.rs in the checkout: $(cat "$work/out")"
fi

echo "==> cargo install --path crates/safeweights-cli"
cargo install --quiet --locked --path crates/safeweights-cli --root "$work/cargo" --target-dir target
version=$(cargo pkgid -p safeweights-cli | sed 's/.*[#@]//')
"$work/cargo/bin/safeweights" --version | head -1 | grep -qE "^safeweights $version( |$)" ||
    fail "cargo-installed binary: --version is not $version: $("$work/cargo/bin/safeweights" --version)"

echo "==> maturin sdist"
# maturin reports on stderr; shown only when it fails.
(cd python && ../.venv/bin/maturin sdist --out "$work/dist" >"$work/log" 2>&1) ||
    { cat "$work/log" >&2; fail "maturin sdist failed"; }
sdist=$(ls "$work"/dist/safeweights-*.tar.gz)
tar -tzf "$sdist" | sed 's,^[^/]*/,,' >"$work/sdist-list"
for needed in pyproject.toml Cargo.lock python/README.md safeweights/__main__.py safeweights/py.typed \
    crates/safeweights-cli/src/lib.rs crates/safeweights-cli/build.rs crates/safeweights/src/lib.rs; do
    grep -qx "$needed" "$work/sdist-list" || fail "sdist: $needed missing"
done
# Only what building needs: no tests or their data, build output, environments.
if grep -E '(^|/)(target|\.venv|__pycache__|tests)/|\.(so|pyc|pt|bin|safetensors|npz?)$' "$work/sdist-list"; then
    fail "sdist: holds tests, build output or data files (above)"
fi

echo "==> maturin build --release (abi3 wheel)"
(cd python && VIRTUAL_ENV="$root/.venv" PATH="$root/.venv/bin:$PATH" \
    maturin build --release --out "$work/dist" >"$work/log" 2>&1) ||
    { cat "$work/log" >&2; fail "maturin build failed"; }
wheel=$(ls "$work"/dist/safeweights-*-abi3-*.whl)
.venv/bin/python - "$wheel" <<'PY'
import re, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
metadata = zipfile.ZipFile(sys.argv[1]).read(f"{dist_info}/METADATA").decode()
entry_points = zipfile.ZipFile(sys.argv[1]).read(f"{dist_info}/entry_points.txt").decode()
for needed in ["safeweights/__main__.py", "safeweights/py.typed", "safeweights/__init__.pyi"]:
    assert needed in names, f"wheel: {needed} missing"
assert sum(n.startswith("safeweights/_safeweights_rust") and n.endswith(".so") for n in names) == 1, names
assert re.search(r"^safeweights\s*=\s*safeweights\.__main__:main$", entry_points, re.M), entry_points
for needed in ["Classifier: Typing :: Typed", "Project-URL: Changelog", "Provides-Extra: torch",
               "Description-Content-Type: text/markdown", "pip install safeweights"]:
    assert needed in metadata, f"wheel METADATA: {needed!r} missing"
assert any("LICENSE-APACHE" in n for n in names), "wheel: licence files missing"
PY

echo "==> the wheel in a fresh virtual environment, without a Rust toolchain"
.venv/bin/python -m venv --without-pip "$work/venv"
.venv/bin/python -m pip --python "$work/venv/bin/python" install --quiet --no-deps --no-index \
    --disable-pip-version-check "$wheel"
# Only the new environment and the system's basic tools: no cargo, no rustc,
# no ./.venv; run from an empty directory so nothing is imported from here.
mkdir "$work/run"
cd "$work/run"
export PATH="$work/venv/bin:/usr/bin:/bin"
unset VIRTUAL_ENV PYTHONPATH CARGO_HOME RUSTUP_HOME
for tool in cargo rustc rustup maturin; do
    if command -v "$tool" >/dev/null; then fail "$tool is on PATH ($(command -v "$tool"))"; fi
done
[ "$(command -v safeweights)" = "$work/venv/bin/safeweights" ] || fail "safeweights is not the venv's script"
python - <<'PY'
# A safetensors file (written by hand: the new environment has no numpy) and
# a pickle whose loading would run a shell command (made, never loaded).
import json, os, pickle, struct
data = struct.pack("<4f", 1, 2, 3, 4)
header = json.dumps({"weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
header += b" " * (-len(header) % 8)
with open("model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + data)
class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))
with open("evil.pkl", "wb") as f:
    pickle.dump({"weight": [1.0], "extra": Payload()}, f)
import sys, safeweights
assert safeweights.__file__.startswith(sys.prefix), f"imported from {safeweights.__file__}"
# The test-only crash points (feature fault-injection) are not in a release.
from safeweights import _safeweights_rust
assert _safeweights_rust._FAULT_INJECTION is False, "the release wheel has fault injection built in"
PY
safeweights --version >version.txt
grep -q "^safeweights [0-9]" version.txt || fail "--version: $(cat version.txt)"
grep -qx "remote: s3, http, https (rustls)" version.txt || fail "--version: $(cat version.txt)"
grep -q "^python: 3\." version.txt || fail "--version has no python line: $(cat version.txt)"
grep -qx "torch: not installed" version.txt || fail "--version: $(cat version.txt)"
python -m safeweights --version | cmp -s - version.txt || fail "python -m safeweights --version differs"
safeweights inspect model.safetensors | grep -E "^weight +F32 +\[2, 2\]" >/dev/null ||
    fail "inspect: $(safeweights inspect model.safetensors)"
safeweights scan model.safetensors >/dev/null || fail "scan of a safetensors file: exit $?"
status=0
safeweights scan evil.pkl >scan.txt || status=$?
[ "$status" = 1 ] && grep -q "dangerous" scan.txt || fail "scan evil.pkl: exit $status: $(cat scan.txt)"
[ ! -e PWNED ] || fail "the payload ran"
echo "    wheel: $(basename "$wheel"), installed and run in $((SECONDS - start)) s in all"
