"""s3:// against a real S3-compatible server (moto in server mode, its own
process, SigV4 and IAM checked), uploaded and inspected with the official
boto3 client; faults injected by our own proxy between client and server."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

import safetensors.torch as reference  # noqa: E402

import safeweights  # noqa: E402
import safeweights.numpy  # noqa: E402
from remote_servers import FaultProxy, start_s3  # noqa: E402
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
