"""safeweights.gguf and safeweights.load on GGUF files, against the real
`gguf` package (GGUFWriter to write, GGUFReader and gguf.quants.dequantize
as the oracles)."""

import numpy as np
import pytest

import safeweights
import safeweights.gguf

gguf = pytest.importorskip("gguf")  # conftest's policy turns skips into failures in CI
torch = pytest.importorskip("torch")
from gguf import GGMLQuantizationType as Q  # noqa: E402

np.seterr(all="ignore")


@pytest.fixture()
def model(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("llama.block_count", 2)
    writer.add_string("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hi"])
    values = rng.standard_normal((4, 64)).astype(np.float32)
    writer.add_tensor("q4", gguf.quants.quantize(values, Q.Q4_0), raw_dtype=Q.Q4_0)
    writer.add_tensor("q8", gguf.quants.quantize(values, Q.Q8_0), raw_dtype=Q.Q8_0)
    writer.add_tensor("k6", rng.integers(0, 256, size=(2, 210 * 2), dtype=np.uint8), raw_dtype=Q.Q6_K)
    writer.add_tensor("f16", values.astype(np.float16))
    writer.add_tensor("f32", values)
    writer.add_tensor("bf", gguf.quants.quantize(values, Q.BF16), raw_dtype=Q.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_tensors_equal_gguf_quants_bit_for_bit(model):
    reader = gguf.GGUFReader(str(model))
    with safeweights.gguf.open(model) as f:
        assert f.tensor_names() == [t.name for t in reader.tensors]
        for t in reader.tensors:
            want = gguf.quants.dequantize(t.data, t.tensor_type)
            ours = f.get_tensor(t.name)
            assert f.ggml_type(t.name) == t.tensor_type.name
            assert ours.shape == want.shape, t.name
            if t.tensor_type in (Q.F16, Q.F32):
                # Plain floats keep their dtype; their values are gguf's.
                assert ours.dtype == t.data.dtype, t.name
                assert np.array_equal(ours.astype(np.float32), want), t.name
            else:
                assert np.array_equal(ours.view(np.uint32), want.astype(np.float32).view(np.uint32)), t.name
            raw = f.get_tensor(t.name, dequantize=False)
            assert raw.tobytes() == t.data.tobytes(), t.name
            pt = f.get_tensor(t.name, framework="pt")
            assert isinstance(pt, torch.Tensor) and tuple(pt.shape) == want.shape


def test_metadata_is_read_as_gguf_py_reads_it(model):
    reader = gguf.GGUFReader(str(model))
    with safeweights.gguf.open(model) as f:
        assert list(f.metadata) == [k for k in reader.fields if not k.startswith("GGUF.")]
        assert f.metadata["llama.block_count"] == 2
        assert f.metadata["tokenizer.ggml.tokens"] == ["<s>", "</s>", "hi"]
        assert f.metadata_types["tokenizer.ggml.tokens"] == "ARRAY"
        # A chat template is data: a string, never evaluated.
        assert f.metadata["tokenizer.chat_template"].startswith("{% for")
        assert f.version == 3


def test_load_returns_the_dequantized_state_dict(model):
    state = safeweights.load(str(model))
    with safeweights.gguf.open(model) as f:
        assert set(state) == set(f.tensor_names())
        for name, tensor in state.items():
            assert isinstance(tensor, torch.Tensor)
            assert torch.equal(tensor.float(), torch.from_numpy(np.asarray(f.get_tensor(name), dtype=np.float32)))


def test_malformed_and_missing_are_typed_errors(model, tmp_path):
    data = model.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(safeweights.InvalidHeaderError, match="past the end"):
        safeweights.gguf.open(cut)
    with safeweights.gguf.open(model) as f, pytest.raises(safeweights.TensorNotFoundError):
        f.get_tensor("nope")
    with pytest.raises(FileNotFoundError):
        safeweights.gguf.open(tmp_path / "absent.gguf")
