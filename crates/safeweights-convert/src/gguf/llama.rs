//! Llama-family names, layouts and hyperparameters between Hugging Face
//! and GGUF, as llama.cpp's `convert_hf_to_gguf.py` writes them (names
//! from gguf-py's `TensorNameMap`) and `transformers`' GGUF loader reads
//! them back.

use std::path::{Path, PathBuf};

use safeweights_gguf::{Gguf, OwnedValue, Value};
use serde_json::{json, Map, Value as Json};

use super::error::GgufError;

/// Per-layer tensors: (GGUF stem, Hugging Face stem).
const LAYER: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Whole-model tensors: (GGUF name, Hugging Face name).
const GLOBAL: [(&str, &str); 3] = [
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

/// `config.json` field for each `llama.*` key (`transformers`' own table).
const CONFIG: [(&str, &str); 10] = [
    ("context_length", "max_position_embeddings"),
    ("block_count", "num_hidden_layers"),
    ("feed_forward_length", "intermediate_size"),
    ("embedding_length", "hidden_size"),
    ("rope.dimension_count", "head_dim"),
    ("rope.freq_base", "rope_theta"),
    ("attention.head_count", "num_attention_heads"),
    ("attention.head_count_kv", "num_key_value_heads"),
    ("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
    ("vocab_size", "vocab_size"),
];

/// The GGUF name of a Hugging Face Llama tensor, or `None` when the name
/// is not one of the model's (rotary caches, for instance).
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    let (stem, suffix) = hf.rsplit_once('.')?;
    if let Some((g, _)) = GLOBAL.iter().find(|(_, h)| *h == stem) {
        return Some(format!("{g}.{suffix}"));
    }
    let rest = stem.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    layer.parse::<u32>().ok()?;
    let (g, _) = LAYER.iter().find(|(_, h)| *h == part)?;
    Some(format!("blk.{layer}.{g}.{suffix}"))
}

/// The Hugging Face name of a GGUF Llama tensor.
pub(crate) fn hf_name(gguf: &str) -> Option<String> {
    let (stem, suffix) = gguf.rsplit_once('.')?;
    if let Some((_, h)) = GLOBAL.iter().find(|(g, _)| *g == stem) {
        return Some(format!("{h}.{suffix}"));
    }
    let rest = stem.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    layer.parse::<u32>().ok()?;
    let (_, h) = LAYER.iter().find(|(g, _)| *g == part)?;
    Some(format!("model.layers.{layer}.{h}.{suffix}"))
}

/// Row `r` of a permuted matrix comes from row `source(r)` of the other
/// layout; `to_gguf` picks the direction.
fn permuted_row(r: usize, rows: usize, heads: usize, to_gguf: bool) -> usize {
    let dim = rows / heads / 2;
    let (h, within) = (r / (2 * dim), r % (2 * dim));
    let base = h * 2 * dim;
    if to_gguf {
        // llama.cpp: reshape(heads, 2, dim).swapaxes(1, 2)
        let (d, a) = (within / 2, within % 2);
        base + a * dim + d
    } else {
        // transformers: reshape(heads, dim, 2).swapaxes(2, 1)
        let (a, d) = (within / dim, within % dim);
        base + d * 2 + a
    }
}

fn reorder_rows<T: Copy>(values: &[T], row: usize, heads: usize, to_gguf: bool) -> Vec<T> {
    let rows = values.len() / row.max(1);
    let mut out = Vec::with_capacity(values.len());
    for r in 0..rows {
        let s = permuted_row(r, rows, heads, to_gguf);
        out.extend_from_slice(&values[s * row..(s + 1) * row]);
    }
    out
}

/// Undoes llama.cpp's rotary permutation of a Q or K matrix.
pub(crate) fn unpermute_rows<T: Copy>(values: &[T], row: usize, heads: usize) -> Vec<T> {
    reorder_rows(values, row, heads, false)
}

/// Applies llama.cpp's rotary permutation to a Q or K matrix.
pub(crate) fn permute_rows<T: Copy>(values: &[T], row: usize, heads: usize) -> Vec<T> {
    reorder_rows(values, row, heads, true)
}

/// GGUF to Hugging Face for one Llama file.
#[derive(Debug)]
pub(crate) struct HfMapping {
    heads: usize,
    kv_heads: usize,
    config: Map<String, Json>,
    has_output: bool,
}

impl HfMapping {
    pub(crate) fn from_gguf(gguf: &Gguf<'_>, path: &Path) -> Result<Self, GgufError> {
        let arch = match gguf.get("general.architecture") {
            Some(Value::String(a)) => *a,
            _ => "",
        };
        if arch != "llama" {
            return Err(GgufError::usage(format!(
                "--hf knows the llama architecture; {} is {arch:?}",
                path.display()
            )));
        }
        let mut config = Map::new();
        config.insert("architectures".into(), json!(["LlamaForCausalLM"]));
        config.insert("model_type".into(), json!("llama"));
        for (key, field) in CONFIG {
            if let Some(value) = gguf.get(&format!("llama.{key}")) {
                config.insert(field.into(), value.to_json(&|f| json!(f)));
            }
        }
        let heads = count(&config, "num_attention_heads", path)?;
        let kv_heads = match config.get("num_key_value_heads") {
            Some(_) => count(&config, "num_key_value_heads", path)?,
            None => heads,
        };
        config.insert("num_key_value_heads".into(), json!(kv_heads));
        if !config.contains_key("vocab_size") {
            let rows = gguf.tensor("token_embd.weight").map(|t| t.shape()[0]);
            config.insert("vocab_size".into(), json!(rows));
        }
        let has_output = gguf.tensor("output.weight").is_some();
        config.insert("tie_word_embeddings".into(), json!(!has_output));
        Ok(HfMapping {
            heads,
            kv_heads,
            config,
            has_output,
        })
    }

    /// The Hugging Face name, and the heads to un-permute with for Q and
    /// K; `None` for tensors `transformers` does not load (`rope_freqs`).
    pub(crate) fn rename(&mut self, name: &str) -> Option<(String, Option<usize>)> {
        if name.starts_with("rope_freqs.") {
            return None;
        }
        let heads = match name.split('.').nth(2) {
            Some("attn_q") => Some(self.heads),
            Some("attn_k") => Some(self.kv_heads),
            _ => None,
        };
        Some((hf_name(name).unwrap_or_else(|| name.to_owned()), heads))
    }

    /// Writes `config.json` beside `output`; returns its path.
    pub(crate) fn write_config(self, output: &Path, force: bool) -> Result<PathBuf, GgufError> {
        let path = output.with_file_name("config.json");
        if !force && path.exists() {
            return Err(GgufError::OutputExists { path });
        }
        debug_assert!(self.has_output || self.config["tie_word_embeddings"] == json!(true));
        let text = serde_json::to_string_pretty(&Json::Object(self.config)).unwrap_or_default();
        std::fs::write(&path, text + "\n").map_err(|source| GgufError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

fn count(config: &Map<String, Json>, field: &str, path: &Path) -> Result<usize, GgufError> {
    config
        .get(field)
        .and_then(Json::as_u64)
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| GgufError::invalid(path, format!("no positive {field} in the metadata")))
}

/// GGUF metadata for a Hugging Face Llama `config.json`, as
/// `convert_hf_to_gguf.py` writes it.
pub(crate) fn gguf_metadata(
    config: &Json,
    path: &Path,
) -> Result<Vec<(String, OwnedValue)>, GgufError> {
    let field = |name: &str| config.get(name).filter(|v| !v.is_null());
    let need = |name: &str| {
        field(name)
            .and_then(Json::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| GgufError::invalid(path, format!("config.json has no integer {name:?}")))
    };
    let mut out = vec![(
        "general.architecture".to_owned(),
        OwnedValue::String("llama".into()),
    )];
    let mut put = |key: &str, value: OwnedValue| out.push((format!("llama.{key}"), value));
    let heads = need("num_attention_heads")?;
    let hidden = need("hidden_size")?;
    put("vocab_size", OwnedValue::U32(need("vocab_size")?));
    put(
        "context_length",
        OwnedValue::U32(need("max_position_embeddings")?),
    );
    put("embedding_length", OwnedValue::U32(hidden));
    put("block_count", OwnedValue::U32(need("num_hidden_layers")?));
    put(
        "feed_forward_length",
        OwnedValue::U32(need("intermediate_size")?),
    );
    let head_dim = match field("head_dim") {
        Some(_) => need("head_dim")?,
        None => hidden / heads.max(1),
    };
    put("rope.dimension_count", OwnedValue::U32(head_dim));
    put("attention.head_count", OwnedValue::U32(heads));
    let kv = match field("num_key_value_heads") {
        Some(_) => need("num_key_value_heads")?,
        None => heads,
    };
    put("attention.head_count_kv", OwnedValue::U32(kv));
    // transformers 5 keeps it under `rope_parameters`.
    let theta = field("rope_theta").or_else(|| {
        config
            .get("rope_parameters")
            .and_then(|p| p.get("rope_theta"))
    });
    if let Some(theta) = theta.and_then(Json::as_f64) {
        put("rope.freq_base", OwnedValue::F32(theta as f32));
    }
    let eps = field("rms_norm_eps").and_then(Json::as_f64).unwrap_or(1e-6);
    put(
        "attention.layer_norm_rms_epsilon",
        OwnedValue::F32(eps as f32),
    );
    Ok(out)
}

/// Heads to permute a Hugging Face tensor with (Q and K), from its config.
pub(crate) fn permute_heads(hf: &str, config: &Json) -> Option<usize> {
    let heads = config.get("num_attention_heads")?.as_u64()? as usize;
    let kv = config
        .get("num_key_value_heads")
        .and_then(Json::as_u64)
        .map_or(heads, |n| n as usize);
    if hf.ends_with("self_attn.q_proj.weight") {
        Some(heads)
    } else if hf.ends_with("self_attn.k_proj.weight") {
        Some(kv)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (hf, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.norm.weight", "output_norm.weight"),
            (
                "model.layers.3.self_attn.q_proj.weight",
                "blk.3.attn_q.weight",
            ),
            (
                "model.layers.0.mlp.down_proj.weight",
                "blk.0.ffn_down.weight",
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                "blk.1.ffn_norm.weight",
            ),
            ("model.norm.weight", "output_norm.weight"),
        ] {
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf));
            assert_eq!(hf_name(gguf).as_deref(), Some(hf));
        }
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(hf_name("blk.0.unknown.weight"), None);
    }

    #[test]
    fn permutation_is_undone() {
        let values: Vec<u32> = (0..24 * 2).collect();
        let permuted = permute_rows(&values, 2, 3);
        assert_ne!(permuted, values);
        assert_eq!(unpermute_rows(&permuted, 2, 3), values);
        // llama.cpp's rows of head 0: 0, 2, 1, 3 when dim is 2.
        let rows: Vec<u32> = permute_rows(&(0..8).collect::<Vec<u32>>(), 1, 2);
        assert_eq!(rows, [0, 2, 1, 3, 4, 6, 5, 7]);
    }
}
