"""s3:// against a real S3-compatible server (moto in server mode, its own
process, SigV4 and IAM checked), uploaded and inspected with the official
boto3 client; faults injected by our own proxy between client and server."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

import safetensors.torch as reference  # noqa: E402

import safeweights  # noqa: E402
import safeweights.numpy  # noqa: E402
from remote_servers import FaultProxy, free_port_containing, start_s3  # noqa: E402
from safeweights import safe_open  # noqa: E402
from safeweights.torch import load_file, save_file  # noqa: E402


@pytest.fixture(scope="module")
def s3():
    server = start_s3()
    yield server
    server.stop()


@pytest.fixture
def proxy(s3):
    port = int(s3.endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy(port)
    yield proxy
    proxy.stop()


def tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(256, 64, generator=g),
        "b": torch.arange(64, dtype=torch.int32),
        "h": torch.randn(7, 3, generator=g).to(torch.bfloat16),
    }


def upload(s3, key, data: bytes):
    s3.client().put_object(Bucket="models", Key=key, Body=data)


def assert_same(a, b):
    assert list(a) == list(b) if isinstance(a, list) else sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def test_load_file_and_slices_of_an_object_uploaded_with_boto3(s3):
    expected = tensors()
    upload(s3, "plain/model.safetensors", reference.save(expected, metadata={"k": "v"}))
    url = "s3://models/plain/model.safetensors"
    assert_same(load_file(url, storage_options=s3.options()), expected)
    with safe_open(url, framework="pt", storage_options=s3.options()) as f:
        assert f.metadata() == {"k": "v"}
        assert f.keys() == sorted(expected)
        assert torch.equal(f.get_tensor("b"), expected["b"])
        assert torch.equal(f.get_slice("w")[10:20, ::3], expected["w"][10:20, ::3])
        assert torch.equal(f.get_slice("w")[::-7, 5], expected["w"].flip(0)[::7, 5])
    arrays = safeweights.numpy.load_file(url, storage_options=s3.options())
    assert np.array_equal(arrays["w"], expected["w"].numpy())


def test_credentials_from_the_environment(s3, monkeypatch):
    upload(s3, "env/model.safetensors", reference.save(tensors()))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert_same(load_file("s3://models/env/model.safetensors"), tensors())


def test_sharded_checkpoint_read_through_its_remote_index(s3, tmp_path):
    state = {"model": {f"layer{i}.weight": torch.full((64, 64), float(i)) for i in range(6)}, "step": 7}
    safeweights.save(state, tmp_path / "ckpt", max_shard_size="40KB")
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert len(names) > 2 and "model.safetensors.index.json" in names
    for name in names:
        upload(s3, f"sharded/{name}", (tmp_path / "ckpt" / name).read_bytes())
    loaded = safeweights.load("s3://models/sharded/model.safetensors.index.json", storage_options=s3.options())
    assert loaded["step"] == 7
    for name, tensor in state["model"].items():
        assert torch.equal(loaded["model"][name], tensor)
    with safe_open("s3://models/sharded/model.safetensors.index.json", framework="pt",
                   storage_options=s3.options()) as f:
        assert torch.equal(f.get_tensor("model.layer5.weight"), state["model"]["layer5.weight"])


def test_empty_object_is_a_truncated_file_not_a_missing_one(s3):
    # An empty object answers any Range with 416 Range Not Satisfiable.
    upload(s3, "err/empty.safetensors", b"")
    with pytest.raises(safeweights.InvalidHeaderError, match="0 bytes") as empty:
        load_file("s3://models/err/empty.safetensors", storage_options=s3.options())
    assert "s3://models/err/empty.safetensors" in str(empty.value)


def test_missing_object_on_a_port_containing_416_is_not_found():
    """Regression: a 404 whose message held the endpoint's port 416xx was
    taken for 416 Range Not Satisfiable, so a missing object read as an
    empty file, and a prefix without its trailing slash was never listed."""
    server = start_s3(port=free_port_containing("416"))
    try:
        upload(server, "dir/model.safetensors", reference.save(tensors()))
        with pytest.raises(FileNotFoundError) as missing:
            load_file("s3://models/nothing.safetensors", storage_options=server.options())
        assert missing.value.filename == "s3://models/nothing.safetensors"
        # A prefix named without its slash is listed, not read as an empty object.
        loaded = safeweights.load("s3://models/dir", storage_options=server.options())
        assert sorted(loaded) == sorted(tensors())
    finally:
        server.stop()


def test_errors_are_typed_and_name_the_url(s3):
    upload(s3, "err/model.safetensors", reference.save(tensors()))
    with pytest.raises(FileNotFoundError) as missing:
        load_file("s3://models/err/nothing.safetensors", storage_options=s3.options())
    assert missing.value.filename == "s3://models/err/nothing.safetensors"
    with pytest.raises(FileNotFoundError):
        load_file("s3://no-such-bucket/x.safetensors", storage_options=s3.options())
    # SigV4 is checked: a wrong secret is refused...
    with pytest.raises(PermissionError):
        load_file("s3://models/err/model.safetensors", storage_options=s3.options(secret="wrong"))
    # ... and a valid key whose user may not read is refused too.
    with pytest.raises(PermissionError):
        load_file("s3://models/err/model.safetensors",
                  storage_options=s3.options(key=s3.denied_key, secret=s3.denied_secret))
    with pytest.raises(OSError, match="unknown storage option"):
        load_file("s3://models/err/model.safetensors", storage_options={"colour": "blue"})


def test_save_file_to_s3_is_byte_identical_and_multipart(s3):
    g = torch.Generator().manual_seed(1)
    big = {"a": torch.randn(3 * 1024 * 1024 // 4 * 4, generator=g), "b": torch.arange(10)}  # 12 MiB
    save_file(big, "s3://models/out/model.safetensors", metadata={"m": "1"},
              storage_options=s3.options(part_size=5 * 1024 * 1024))
    body = s3.client().get_object(Bucket="models", Key="out/model.safetensors")["Body"].read()
    assert body == reference.save(big, metadata={"m": "1"})
    # Uploaded in parts: S3 ETags of multipart objects end in -PARTS.
    etag = s3.client().head_object(Bucket="models", Key="out/model.safetensors")["ETag"]
    assert etag.strip('"').endswith("-3"), etag
    state = {"model": tensors(), "epoch": 3}
    safeweights.save(state, "s3://models/out/ckpt.safetensors", storage_options=s3.options())
    loaded = safeweights.load("s3://models/out/ckpt.safetensors", storage_options=s3.options())
    assert loaded["epoch"] == 3
    assert_same(loaded["model"], state["model"])


def test_failed_multipart_upload_leaves_no_object_and_no_parts(s3, proxy):
    g = torch.Generator().manual_seed(2)
    big = {"a": torch.randn(3 * 1024 * 1024, generator=g)}  # 12 MiB: three parts of 5 MiB
    # Every attempt at the second part fails: the upload gives up halfway.
    proxy.faults.status["partNumber=2"] = 500
    options = {"endpoint_url": proxy.endpoint, "key": s3.key, "secret": s3.secret, "region": "us-east-1",
               "part_size": 5 * 1024 * 1024, "retries": 1}
    with pytest.raises(OSError):
        save_file(big, "s3://models/aborted/model.safetensors", storage_options=options)
    assert proxy.faults.count("partNumber=1") >= 1
    client = s3.client()
    listed = client.list_objects_v2(Bucket="models", Prefix="aborted/")
    assert listed.get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket="models").get("Uploads", []) == []


def test_transient_errors_are_retried_and_final_ones_are_not(s3, proxy):
    upload(s3, "faults/model.safetensors", reference.save(tensors()))
    url = "s3://models/faults/model.safetensors"
    options = {"endpoint_url": proxy.endpoint, "key": s3.key, "secret": s3.secret, "region": "us-east-1"}
    # Two 503s, then the real answer: retried with backoff, and it works.
    proxy.faults.status["GET /models/faults"] = 503
    proxy.faults.status_times["GET /models/faults"] = 2
    assert_same(load_file(url, storage_options=options), tensors())
    assert proxy.faults.count(" 503") == 2
    # 403 and 404 are answered once and not retried.
    for status, error in [(403, PermissionError), (404, FileNotFoundError)]:
        proxy.faults.log.clear()
        proxy.faults.status["GET /models/faults"] = status
        proxy.faults.status_times["GET /models/faults"] = 100
        with pytest.raises(error):
            load_file(url, storage_options=options)
        assert proxy.faults.count(f" {status}") == 1, proxy.faults.log
    # A server that keeps failing: a ConnectionError after the retries, in bounded time.
    proxy.faults.log.clear()
    proxy.faults.status["GET /models/faults"] = 500
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        load_file(url, storage_options={**options, "retries": "2"})
    assert proxy.faults.count(" 500") == 3
    assert time.monotonic() - start < 30


def test_connection_dropped_mid_body_is_retried(s3, proxy):
    data = reference.save({"w": torch.randn(512, 512)})  # 1 MiB
    upload(s3, "drop/model.safetensors", data)
    url = "s3://models/drop/model.safetensors"
    options = {"endpoint_url": proxy.endpoint, "key": s3.key, "secret": s3.secret, "region": "us-east-1"}
    with safe_open(url, framework="pt", storage_options=options) as f:
        proxy.faults.drop_mid_body["GET /models/drop"] = 1
        assert torch.equal(f.get_tensor("w"), reference.load(data)["w"])
    # Always dropped: a typed error, never a hang or a short tensor.
    with safe_open(url, framework="pt", storage_options={**options, "retries": "1"}) as f:
        proxy.faults.drop_mid_body["GET /models/drop"] = 100
        with pytest.raises(ConnectionError):
            f.get_tensor("w")


def test_slow_server_times_out(s3, proxy):
    upload(s3, "slow/model.safetensors", reference.save(tensors()))
    options = {"endpoint_url": proxy.endpoint, "key": s3.key, "secret": s3.secret, "region": "us-east-1",
               "timeout": "0.5", "retries": "1"}
    proxy.faults.delay = 3
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        load_file("s3://models/slow/model.safetensors", storage_options=options)
    assert time.monotonic() - start < 15


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "safeweights", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_reads_s3_urls(s3, tmp_path):
    expected = tensors()
    upload(s3, "cli/model.safetensors", reference.save(expected))
    env = dict(os.environ, AWS_ACCESS_KEY_ID=s3.key, AWS_SECRET_ACCESS_KEY=s3.secret,
               AWS_ENDPOINT_URL=s3.endpoint, AWS_REGION="us-east-1")
    url = "s3://models/cli/model.safetensors"
    for command in (["inspect", url, "--json"], ["validate", url], ["stats", url, "--json"],
                    ["checksum", url], ["dump", url, "w", "--slice", "3, 0:4", "--json"]):
        result = cli(*command, env=env)
        assert result.returncode == 0, (command, result.stderr)
    import json

    inspected = json.loads(cli("inspect", url, "--json", env=env).stdout)
    assert inspected["http"]["requests"] == 1
    dumped = json.loads(cli("dump", url, "w", "--slice", "3, 0:4", "--json", env=env).stdout)
    assert np.allclose(dumped["values"], expected["w"][3, 0:4].tolist())
    missing = cli("inspect", "s3://models/cli/none.safetensors", env=env)
    assert missing.returncode == 2 and "not found" in missing.stderr.lower()


def test_cp_uploads_downloads_and_verifies(s3, tmp_path):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=s3.key, AWS_SECRET_ACCESS_KEY=s3.secret,
               AWS_ENDPOINT_URL=s3.endpoint, AWS_REGION="us-east-1")
    local = tmp_path / "model.safetensors"
    reference.save_file(tensors(), str(local))
    url = "s3://models/cp/model.safetensors"
    result = cli("cp", str(local), url, env=env)
    assert result.returncode == 0, result.stderr
    body = s3.client().get_object(Bucket="models", Key="cp/model.safetensors")["Body"].read()
    assert body == local.read_bytes()
    back = tmp_path / "back.safetensors"
    result = cli("cp", url, str(back), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert back.read_bytes() == local.read_bytes()
    # A file that is not valid safetensors is refused before anything is uploaded.
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")  # header runs past the end
    result = cli("cp", str(bad), "s3://models/cp/bad.safetensors", env=env)
    assert result.returncode == 1, result.stderr
    assert s3.client().list_objects_v2(Bucket="models", Prefix="cp/bad").get("KeyCount", 0) == 0


def s3_env(s3, tmp_path):
    """The CLI's environment: credentials and endpoint from AWS_*, and a
    temporary directory of its own, to see that downloads are removed."""
    temp = tmp_path / "cli-tmp"
    temp.mkdir(exist_ok=True)
    return dict(os.environ, AWS_ACCESS_KEY_ID=s3.key, AWS_SECRET_ACCESS_KEY=s3.secret,
                AWS_ENDPOINT_URL=s3.endpoint, AWS_REGION="us-east-1", TMPDIR=str(temp)), temp


def s3_bytes(s3, key):
    return s3.client().get_object(Bucket="models", Key=key)["Body"].read()


def test_scan_reads_urls_through_a_removed_temporary_file(s3, tmp_path):
    import io
    import pickle

    env, temp = s3_env(s3, tmp_path)
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(6.0)}, buffer)
    upload(s3, "scan/pytorch_model.bin", buffer.getvalue())

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    upload(s3, "scan/evil.pkl", pickle.dumps(Payload()))
    safe_url, evil_url = "s3://models/scan/pytorch_model.bin", "s3://models/scan/evil.pkl"
    result = cli("scan", safe_url, "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "safe"
    assert report["files"][0]["path"] == safe_url
    assert report["files"][0]["format"] == "torch zip checkpoint"
    result = cli("scan", safe_url, evil_url, "--json", env=env)
    assert result.returncode == 1, result.stderr
    files = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert files[evil_url]["verdict"] == "dangerous"
    assert any("system" in f["subject"] for f in files[evil_url]["findings"])
    missing = cli("scan", "s3://models/scan/none.bin", env=env)
    assert missing.returncode == 2 and "none.bin" in missing.stderr
    assert list(temp.iterdir()) == []


def test_convert_from_and_to_s3(s3, tmp_path):
    import io

    from safetensors.torch import load as reference_load

    env, temp = s3_env(s3, tmp_path)
    state = {f"layer{i}.weight": torch.full((32, 64), float(i)) for i in range(4)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    upload(s3, "convert/pytorch_model.bin", buffer.getvalue())
    source = "s3://models/convert/pytorch_model.bin"

    # URL in, local file out (default name: the object's, here).
    result = subprocess.run([sys.executable, "-m", "safeweights", "convert", source, "--json"],
                            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["input"] == source
    assert_same(reference_load((tmp_path / "model.safetensors").read_bytes()), state)

    # URL in, s3:// out: one object, written by multipart upload.
    result = cli("convert", source, "s3://models/converted/model.safetensors", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"] == ["s3://models/converted/model.safetensors"]
    assert_same(reference_load(s3_bytes(s3, "converted/model.safetensors")), state)

    # Local in, sharded s3:// out: the shards and the index beside them.
    local = tmp_path / "local.bin"
    local.write_bytes(buffer.getvalue())
    result = cli("convert", str(local), "s3://models/sharded-out/model.safetensors",
                 "--max-shard-size", "10KB", env=env)
    assert result.returncode == 0, result.stderr
    listed = s3.client().list_objects_v2(Bucket="models", Prefix="sharded-out/")["Contents"]
    keys = sorted(o["Key"] for o in listed)
    assert "sharded-out/model.safetensors.index.json" in keys and len(keys) == 5, keys
    loaded = load_file("s3://models/sharded-out/model.safetensors.index.json", storage_options=s3.options())
    assert_same(loaded, state)

    # An unsafe input converts to nothing: no object appears.
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    import pickle

    upload(s3, "convert/evil.bin", pickle.dumps(Payload()))
    result = cli("convert", "s3://models/convert/evil.bin", "s3://models/converted/evil.safetensors", env=env)
    assert result.returncode == 1, result.stderr
    assert "s3://models/convert/evil.bin" in result.stderr
    assert s3.client().list_objects_v2(Bucket="models", Prefix="converted/evil").get("KeyCount", 0) == 0
    assert list(temp.iterdir()) == []


def test_verify_one_tensor_fetches_only_its_bytes(s3, tmp_path):
    env, _ = s3_env(s3, tmp_path)
    path = tmp_path / "model.safetensors"
    big = torch.randn(512, 1024)  # 2 MiB
    small = torch.arange(100, dtype=torch.int32)
    reference.save_file({"big": big, "small": small}, str(path))
    assert cli("checksum", str(path), "--write").returncode == 0
    # Locally too: only the named tensor is checked.
    result = cli("verify", str(path), "--tensor", "small", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["checked"] == 1
    data = bytearray(path.read_bytes())
    upload(s3, "verify/model.safetensors", bytes(data))
    url = "s3://models/verify/model.safetensors"
    result = cli("verify", url, "--tensor", "small", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["checked"] == 1
    # The header's first read, then the tensor's 400 bytes: not the 2 MiB.
    assert report["http"]["requests"] == 2, report
    assert report["http"]["bytes"] <= 64 * 1024 + small.numel() * 4, report
    # A corrupted tensor is found when it is named, and not fetched otherwise.
    data[-(small.numel() * 4) - 10] ^= 0xFF  # a byte of "big", which lies before "small"
    upload(s3, "verify/model.safetensors", bytes(data))
    assert cli("verify", url, "--tensor", "small", env=env).returncode == 0
    result = cli("verify", url, "--tensor", "big", "--json", env=env)
    assert result.returncode == 1
    assert json.loads(result.stdout)["mismatched"] == ["big"]
    result = cli("verify", url, "--tensor", "nope", env=env)
    assert result.returncode == 2 and "nope" in result.stderr


class PresignedHandler(BaseHTTPRequestHandler):
    """A server of one object that, like S3 with a pre-signed URL, answers
    only requests carrying the signature in the query string, and serves
    Range requests (moto's server answers pre-signed URLs with a 500 when
    its authentication is on, so it cannot play this part)."""

    body = b""
    query = "X-Amz-Signature=abc%2Fdef&X-Amz-Expires=600"
    ranges: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        path, _, query = self.path.partition("?")
        if path != "/bucket/model.safetensors" or query != self.query:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, len(self.body) - 1
        header = self.headers.get("Range")
        if header:
            first, last = header.removeprefix("bytes=").split("-")
            start, end = int(first), min(int(last), len(self.body) - 1)
        type(self).ranges.append(header)
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(self.body)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(self.body[start:end + 1])

    def log_message(self, *args):
        pass


def test_presigned_https_urls_are_read_by_ranges():
    import threading

    expected = tensors()
    PresignedHandler.body = reference.save(expected)
    PresignedHandler.ranges = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), PresignedHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/bucket/model.safetensors"
        url = f"{base}?{PresignedHandler.query}"
        with safe_open(url, framework="pt") as f:
            assert torch.equal(f.get_slice("w")[3:5], expected["w"][3:5])
        assert all(r and r.startswith("bytes=") for r in PresignedHandler.ranges), PresignedHandler.ranges
        assert_same(load_file(url), expected)
        inspected = cli("inspect", url, "--json")
        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)["http"]["requests"] == 1
        # Without its signature (or with another) the URL is refused, not read.
        for bad in (base, f"{base}?X-Amz-Signature=0"):
            result = cli("inspect", bad)
            assert result.returncode == 2 and "model.safetensors" in result.stderr, result.stderr
    finally:
        server.shutdown()
