//! A checkpoint's object tree as the `safeweights.checkpoint` JSON
//! structure that Python's `safeweights.save` writes and
//! `safeweights.load` reads (docs/checkpoint-format.md), so a converted
//! training checkpoint loads back as `torch.load(weights_only=True)`
//! returned it: nesting, container types, key types and order, and scalar
//! types included.
//!
//! This writer covers the plain part of what a `weights_only` pickle can
//! hold: None, bool, int, float, complex, str, bytes, bytearray, list,
//! tuple, set, dict, OrderedDict (with a state dict's `_metadata`),
//! Counter, torch.Size, torch.device, torch dtypes and tensors (with
//! `requires_grad` and `nn.Parameter`). Each tensor record names the entry
//! [`super::flatten`] stored its bytes under.

use std::collections::HashMap;

use serde_json::{Map, Number, Value as Json};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pickle::{ObjectValue, TensorRef, Value, ViewKey};

/// The metadata key holding the structure.
pub const STRUCTURE_KEY: &str = "safeweights.checkpoint";

/// The version of the structure this writer produces (`{"version": 2, "root": ...}`).
pub const STRUCTURE_VERSION: u64 = 2;

/// The `{"version", "root"}` document for `root`, whose tensors are the
/// entries named in `names` (by view). `Err` with the path and reason of
/// the first value the structure cannot hold.
pub(crate) fn document(
    root: &Value,
    names: &HashMap<ViewKey, String>,
    limits: &Limits,
) -> Result<Json> {
    let mut encoder = Encoder {
        names,
        limits,
        nodes: 0,
    };
    let root = encoder.encode(root, "", 0)?;
    let mut document = Map::new();
    document.insert("version".to_owned(), Json::from(STRUCTURE_VERSION));
    document.insert("root".to_owned(), root);
    Ok(Json::Object(document))
}

struct Encoder<'a> {
    names: &'a HashMap<ViewKey, String>,
    limits: &'a Limits,
    nodes: u64,
}

/// `{"$tag": body}` plus more fields; the tag is inserted first, and sorts
/// first too (`$` precedes letters), so it leads whatever map order
/// serde_json keeps.
fn tagged(tag: &str, body: Json, rest: impl IntoIterator<Item = (&'static str, Json)>) -> Json {
    let mut map = Map::new();
    map.insert(tag.to_owned(), body);
    for (key, value) in rest {
        map.insert(key.to_owned(), value);
    }
    Json::Object(map)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn float(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None => {
            let name = if f.is_nan() {
                "nan"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            tagged("$float", Json::from(name), [])
        }
    }
}

impl Encoder<'_> {
    fn encode(&mut self, value: &Value, path: &str, depth: usize) -> Result<Json> {
        // The tree may share containers; flatten sized its expansion
        // already, these limits guard this walk on its own.
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(Error::limit("max_nodes", self.limits.max_nodes, 0));
        }
        if depth > self.limits.max_depth {
            return Err(Error::limit("max_depth", self.limits.max_depth as u64, 0));
        }
        Ok(match value {
            Value::None => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::BigInt(bytes) => {
                big_int(bytes).ok_or_else(|| unsupported(path, "an integer beyond 64 bits"))?
            }
            Value::Float(f) => float(*f),
            Value::Complex(re, im) => {
                tagged("$complex", Json::Array(vec![float(*re), float(*im)]), [])
            }
            Value::Str(s) => Json::String(s.to_string()),
            Value::Bytes(b) => tagged("$bytes", Json::String(base64(b)), []),
            Value::ByteArray(b) => tagged("$bytearray", Json::String(base64(b)), []),
            Value::List(items) => Json::Array(self.sequence(items, path, depth)?),
            Value::Tuple(items) => tagged(
                "$tuple",
                Json::Array(self.sequence(items, path, depth)?),
                [],
            ),
            Value::Set(items) => {
                tagged("$set", Json::Array(self.sequence(items, path, depth)?), [])
            }
            Value::Dict(items) => tagged("$dict", self.items(items, path, depth)?, []),
            Value::Dtype(scalar) => tagged("$dtype", Json::from(scalar.name), []),
            Value::Tensor(t) => self.tensor(t, path)?,
            Value::Object(object) => self.object(object, path, depth)?,
            Value::Storage(_) => {
                return Err(unsupported(path, "a bare storage that no tensor uses"))
            }
            other => return Err(unsupported(path, other.type_name())),
        })
    }

    fn sequence(&mut self, items: &[Value], path: &str, depth: usize) -> Result<Vec<Json>> {
        items
            .iter()
            .enumerate()
            .map(|(i, v)| self.encode(v, &join(path, &i.to_string()), depth + 1))
            .collect()
    }

    fn items(&mut self, items: &[(Value, Value)], path: &str, depth: usize) -> Result<Json> {
        let mut out = Vec::with_capacity(items.len());
        for (key, value) in items {
            let child = join(path, &key_text(key));
            let pair = vec![
                self.encode(key, path, depth + 1)?,
                self.encode(value, &child, depth + 1)?,
            ];
            out.push(Json::Array(pair));
        }
        Ok(Json::Array(out))
    }

    /// An OrderedDict, recorded with its items as a dict and its BUILD
    /// state: a state dict's `_metadata` is kept; any other attribute
    /// cannot be (Python's writer refuses it too).
    fn ordered_dict(&mut self, object: &ObjectValue, path: &str, depth: usize) -> Result<Json> {
        let (Some(items), false, true, true) = (
            object.args.first().and_then(Value::as_dict),
            object.new,
            object.items.is_empty(),
            object.dict_items.is_empty(),
        ) else {
            return Err(unsupported(path, "an OrderedDict built in an unusual way"));
        };
        let items = self.items(items, path, depth)?;
        let meta = match &object.state {
            None | Some(Value::None) => None,
            Some(state) => self.metadata_attribute(state, path, depth)?,
        };
        Ok(tagged("$odict", items, meta.map(|m| ("meta", m))))
    }

    fn metadata_attribute(
        &mut self,
        state: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Option<Json>> {
        let Some(items) = state.as_dict() else {
            return Err(unsupported(path, "an OrderedDict with a non-dict state"));
        };
        let mut meta = None;
        for (key, value) in items.iter() {
            match key.as_str() {
                Some("_metadata") => {
                    meta = Some(self.encode(value, &join(path, "_metadata"), depth + 1)?)
                }
                _ => {
                    return Err(unsupported(
                        path,
                        &format!(
                            "an OrderedDict attribute {} besides _metadata",
                            key_text(key)
                        ),
                    ))
                }
            }
        }
        Ok(meta)
    }

    /// The recorded calls of torch's allow-list that are plain values:
    /// `torch.Size`, `torch.device`, `collections.Counter`. Anything else
    /// recorded (numpy arrays, quantized or sparse rebuilds, allowed
    /// classes) is outside this writer's subset.
    fn object(&mut self, object: &ObjectValue, path: &str, depth: usize) -> Result<Json> {
        if &*object.global == "collections.OrderedDict" {
            return self.ordered_dict(object, path, depth);
        }
        let plain = !object.new
            && object.state.is_none()
            && object.items.is_empty()
            && object.dict_items.is_empty();
        let refused = || unsupported(path, &format!("a {}", object.global));
        if !plain {
            return Err(refused());
        }
        Ok(match (&*object.global, &*object.args) {
            ("torch.Size", [Value::Tuple(items) | Value::List(items)]) => {
                if !items.iter().all(|v| matches!(v, Value::Int(_))) {
                    return Err(refused());
                }
                tagged("$size", Json::Array(self.sequence(items, path, depth)?), [])
            }
            ("torch.device", [Value::Str(kind)]) => {
                tagged("$device", Json::from(kind.to_string()), [])
            }
            ("torch.device", [Value::Str(kind), Value::Int(index)]) => {
                tagged("$device", Json::from(format!("{kind}:{index}")), [])
            }
            ("collections.Counter", []) => tagged("$counter", Json::Array(Vec::new()), []),
            ("collections.Counter", [Value::Dict(items)]) => {
                tagged("$counter", self.items(items, path, depth)?, [])
            }
            _ => return Err(refused()),
        })
    }

    fn tensor(&self, t: &TensorRef, path: &str) -> Result<Json> {
        let Some(name) = self.names.get(&t.view_key()) else {
            return Err(unsupported(path, "a tensor that was not converted"));
        };
        let mut rest = Vec::new();
        if t.parameter {
            rest.push(("parameter", Json::Bool(true)));
        }
        if t.requires_grad {
            rest.push(("requires_grad", Json::Bool(true)));
        }
        Ok(tagged("$tensor", Json::String(name.clone()), rest))
    }
}

fn unsupported(path: &str, what: &str) -> Error {
    let at = if path.is_empty() { "the root" } else { path };
    Error::checkpoint(format!(
        "the checkpoint structure cannot hold {what} (at {at})"
    ))
}

fn key_text(key: &Value) -> String {
    match key {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        other => format!("<{}>", other.type_name()),
    }
}

/// A LONG1 integer (little-endian two's complement) that fits `u64`.
fn big_int(bytes: &[u8]) -> Option<Json> {
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    if negative {
        return None;
    }
    let significant = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if significant > 8 {
        return None;
    }
    let mut buf = [0u8; 8];
    buf[..significant].copy_from_slice(&bytes[..significant]);
    Some(Json::from(u64::from_le_bytes(buf)))
}

/// Standard base64 with padding, as Python's `base64.b64encode`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_python() {
        let cases: [(&[u8], &str); 5] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"\xff\x00\xfe\x01", "/wD+AQ=="),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input), want);
        }
    }

    #[test]
    fn big_ints_up_to_u64_and_no_further() {
        assert_eq!(
            big_int(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]),
            Some(Json::from(u64::MAX))
        );
        assert_eq!(big_int(&[0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(big_int(&[0xff]), None, "negative");
    }

    #[test]
    fn tags_lead_their_objects() {
        let record = tagged("$odict", Json::Array(vec![]), [("meta", Json::Null)]);
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.starts_with("{\"$odict\""), "{text}");
        assert_eq!(float(f64::NAN), tagged("$float", Json::from("nan"), []));
        assert_eq!(
            float(f64::NEG_INFINITY),
            tagged("$float", Json::from("-inf"), [])
        );
        assert_eq!(serde_json::to_string(&float(1.0)).unwrap(), "1.0");
    }
}
