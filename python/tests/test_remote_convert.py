"""`convert`, `cp` and `safeweights.load` with sharded checkpoints and
model directories in a real S3-compatible server (moto in server mode,
its own process, SigV4 checked), and the `--force` rule for objects."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

import safetensors.torch as reference  # noqa: E402

import safeweights  # noqa: E402
from remote_servers import start_s3  # noqa: E402


@pytest.fixture(scope="module")
def s3():
    server = start_s3()
    yield server
    server.stop()


def cli(s3, *args, cwd=None):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=s3.key, AWS_SECRET_ACCESS_KEY=s3.secret,
               AWS_ENDPOINT_URL=s3.endpoint, AWS_REGION="us-east-1")
    return subprocess.run([sys.executable, "-m", "safeweights", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=cwd)


def upload(s3, key, data: bytes):
    s3.client().put_object(Bucket="models", Key=key, Body=data)


def download(s3, key) -> bytes:
    return s3.client().get_object(Bucket="models", Key=key)["Body"].read()


def keys(s3, prefix):
    listed = s3.client().list_objects_v2(Bucket="models", Prefix=prefix).get("Contents", [])
    return sorted(o["Key"][len(prefix):] for o in listed)


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def torch_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def sharded_state():
    g = torch.Generator().manual_seed(1)
    return [{"a.weight": torch.randn(16, 8, generator=g), "a.bias": torch.randn(8, generator=g)},
            {"b.weight": torch.randn(8, 4, generator=g).to(torch.bfloat16)}]


def upload_torch_shards(s3, prefix):
    """A Hugging Face sharded torch checkpoint: two torch.save shards and
    pytorch_model.bin.index.json naming them, as transformers writes it."""
    shards = sharded_state()
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        upload(s3, f"{prefix}{name}", torch_bytes(shard))
        weight_map.update({tensor: name for tensor in shard})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    upload(s3, f"{prefix}pytorch_model.bin.index.json", json.dumps(index).encode())
    return {k: v for shard in shards for k, v in shard.items()}


def upload_safetensors_shards(s3, prefix):
    shards = sharded_state()
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        upload(s3, f"{prefix}{name}", reference.save(shard))
        weight_map.update({tensor: name for tensor in shard})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    upload(s3, f"{prefix}model.safetensors.index.json", json.dumps(index).encode())
    return {k: v for shard in shards for k, v in shard.items()}


def test_convert_a_remote_sharded_torch_checkpoint_to_s3(s3):
    expected = upload_torch_shards(s3, "hf-bin/")
    result = cli(s3, "convert", "s3://models/hf-bin/pytorch_model.bin.index.json",
                 "s3://models/hf-bin-out/model.safetensors", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["input_files"] == 2 and report["verified"]
    assert keys(s3, "hf-bin-out/") == ["model-00001-of-00002.safetensors",
                                       "model-00002-of-00002.safetensors",
                                       "model.safetensors.index.json"]
    loaded = safeweights.load("s3://models/hf-bin-out/model.safetensors.index.json",
                              storage_options=s3.options())
    assert_same(loaded, expected)


def test_convert_a_remote_directory(s3, tmp_path):
    expected = upload_torch_shards(s3, "hf-dir/")
    upload(s3, "hf-dir/config.json", b"{}")
    # A prefix with its slash, to a prefix: Hugging Face's names under it.
    result = cli(s3, "convert", "s3://models/hf-dir/", "s3://models/hf-dir-out/", "--json")
    assert result.returncode == 0, result.stderr
    conversions = json.loads(result.stdout)["conversions"]
    assert [c["input"] for c in conversions] == ["s3://models/hf-dir/pytorch_model.bin.index.json"]
    assert "model.safetensors.index.json" in keys(s3, "hf-dir-out/")
    assert_same(safeweights.load("s3://models/hf-dir-out/", storage_options=s3.options()), expected)
    # Without its slash, to a local directory.
    result = cli(s3, "convert", "s3://models/hf-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert_same(safeweights.load(str(tmp_path / "out")), expected)
    # A prefix holding no checkpoint says what it looked for.
    upload(s3, "empty-dir/readme.md", b"nothing")
    result = cli(s3, "convert", "s3://models/empty-dir/", str(tmp_path / "none"))
    assert result.returncode == 2 and "pytorch_model.bin" in result.stderr, result.stderr


def test_remote_safetensors_index_streams_to_gguf_on_s3(s3, tmp_path):
    gguf = pytest.importorskip("gguf")
    expected = upload_safetensors_shards(s3, "st/")
    result = cli(s3, "convert", "s3://models/st/model.safetensors.index.json",
                 "s3://models/gguf-out/model.gguf", "--outtype", "f32", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"] == ["s3://models/gguf-out/model.gguf"]
    head = s3.client().head_object(Bucket="models", Key="gguf-out/model.gguf")
    assert head["ETag"].strip('"').endswith("-1"), head["ETag"]  # a multipart upload's ETag
    local = tmp_path / "model.gguf"
    local.write_bytes(download(s3, "gguf-out/model.gguf"))
    reader = gguf.GGUFReader(str(local))
    got = {t.name: torch.from_numpy(t.data.copy()) for t in reader.tensors}
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        # GGUF lists dimensions innermost first; the data is row-major as ours.
        assert torch.equal(got[name].reshape(tensor.shape), tensor.float()), name
    # The same model, from its prefix (the index in it is chosen).
    result = cli(s3, "convert", "s3://models/st/", "s3://models/gguf-out/from-dir.gguf", "--outtype", "f32")
    assert result.returncode == 0, result.stderr
    assert download(s3, "gguf-out/from-dir.gguf") == download(s3, "gguf-out/model.gguf")
    # Python reads the prefix as a directory too.
    assert_same(safeweights.load("s3://models/st", storage_options=s3.options()), expected)


def test_existing_objects_are_replaced_only_with_force(s3, tmp_path):
    local = tmp_path / "model.safetensors"
    reference.save_file({"x": torch.ones(3)}, str(local))
    upload(s3, "force/model.safetensors", b"old object")
    url = "s3://models/force/model.safetensors"
    result = cli(s3, "cp", str(local), url)
    assert result.returncode == 2 and "--force" in result.stderr and url in result.stderr, result.stderr
    assert download(s3, "force/model.safetensors") == b"old object"
    result = cli(s3, "cp", str(local), url, "--force")
    assert result.returncode == 0, result.stderr
    assert download(s3, "force/model.safetensors") == local.read_bytes()
    # Downloads follow the same rule for local files.
    existing = tmp_path / "existing.safetensors"
    existing.write_bytes(b"keep me")
    result = cli(s3, "cp", url, str(existing))
    assert result.returncode == 2 and "--force" in result.stderr, result.stderr
    assert existing.read_bytes() == b"keep me"
    assert cli(s3, "cp", url, str(existing), "--force").returncode == 0
    assert existing.read_bytes() == local.read_bytes()
    # convert, to safetensors and to GGUF.
    upload(s3, "force/state.bin", torch_bytes({"y": torch.zeros(4)}))
    result = cli(s3, "convert", "s3://models/force/state.bin", url)
    assert result.returncode == 2 and "--force" in result.stderr, result.stderr
    assert download(s3, "force/model.safetensors") == local.read_bytes()
    result = cli(s3, "convert", "s3://models/force/state.bin", url, "--force")
    assert result.returncode == 0, result.stderr
    assert list(reference.load(download(s3, "force/model.safetensors"))) == ["y"]
    upload(s3, "force/model.gguf", b"old gguf")
    result = cli(s3, "convert", url, "s3://models/force/model.gguf")
    assert result.returncode == 2 and "--force" in result.stderr, result.stderr
    assert download(s3, "force/model.gguf") == b"old gguf"
    assert cli(s3, "convert", url, "s3://models/force/model.gguf", "--force").returncode == 0
    assert download(s3, "force/model.gguf").startswith(b"GGUF")


def test_load_reads_remote_torch_checkpoints_whole_and_sharded(s3):
    expected = upload_torch_shards(s3, "load-bin/")
    options = s3.options()
    assert_same(safeweights.load("s3://models/load-bin/pytorch_model.bin.index.json",
                                 storage_options=options), expected)
    single = sharded_state()[0]
    upload(s3, "load-bin/single.pt", torch_bytes(single))
    assert_same(safeweights.load("s3://models/load-bin/single.pt", storage_options=options), single)
    # A hostile file is refused by the safe pickle reader, naming the global
    # and the URL (never the temporary file).
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    upload(s3, "load-evil/pytorch_model.bin", torch_bytes({"x": Payload()}))
    with pytest.raises(safeweights.UnsafeCheckpointError, match="system") as raised:
        safeweights.load("s3://models/load-evil/pytorch_model.bin", storage_options=options)
    assert "s3://models/load-evil" in str(raised.value) and "/tmp" not in str(raised.value)
