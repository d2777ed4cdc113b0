//! GGUF metadata as JSON, and back, without losing a type or a bit.
//!
//! Each pair is `{"key", "type", "value"}` in file order; an array is
//! `{"type": "ARRAY", "element_type", "value": [...]}`, and an array of
//! arrays holds `{"element_type", "value"}` objects. Finite floats are JSON
//! numbers (which round-trip exactly); NaN and infinities are strings of
//! their bits, such as `"0x7fc00000"`.

use safeweights_gguf::{OwnedValue, Value, ValueType};
use serde_json::{json, Value as Json};

/// The metadata key of the safetensors output holding the GGUF metadata.
pub const METADATA_KEY: &str = "gguf.metadata";

/// The metadata as a JSON array.
pub fn to_json(metadata: &[(&str, Value<'_>)]) -> Json {
    Json::Array(
        metadata
            .iter()
            .map(|(key, value)| {
                let mut entry = value_json(&OwnedValue::from(value));
                entry["key"] = json!(key);
                entry
            })
            .collect(),
    )
}

fn value_json(value: &OwnedValue) -> Json {
    match value {
        OwnedValue::Array(ty, items) => json!({
            "type": "ARRAY",
            "element_type": ty.name(),
            "value": items.iter().map(|item| match item {
                OwnedValue::Array(..) => {
                    let mut inner = value_json(item);
                    if let Some(map) = inner.as_object_mut() {
                        map.remove("type");
                    }
                    inner
                }
                other => scalar_json(other),
            }).collect::<Vec<_>>(),
        }),
        other => json!({"type": other.value_type().name(), "value": scalar_json(other)}),
    }
}

fn scalar_json(value: &OwnedValue) -> Json {
    match value {
        OwnedValue::U8(v) => json!(v),
        OwnedValue::I8(v) => json!(v),
        OwnedValue::U16(v) => json!(v),
        OwnedValue::I16(v) => json!(v),
        OwnedValue::U32(v) => json!(v),
        OwnedValue::I32(v) => json!(v),
        OwnedValue::U64(v) => json!(v),
        OwnedValue::I64(v) => json!(v),
        OwnedValue::F32(v) if v.is_finite() => json!(f64::from(*v)),
        OwnedValue::F32(v) => json!(format!("{:#010x}", v.to_bits())),
        OwnedValue::F64(v) if v.is_finite() => json!(v),
        OwnedValue::F64(v) => json!(format!("{:#018x}", v.to_bits())),
        OwnedValue::Bool(v) => json!(v),
        OwnedValue::String(v) => json!(v),
        OwnedValue::Array(..) => value_json(value),
    }
}

/// The metadata back from [`to_json`]'s form; `Err` says what is wrong.
pub fn from_json(doc: &Json) -> Result<Vec<(String, OwnedValue)>, String> {
    let entries = doc
        .as_array()
        .ok_or("the GGUF metadata is not a JSON array")?;
    entries
        .iter()
        .map(|entry| {
            let key = entry["key"].as_str().ok_or("an entry has no \"key\"")?;
            let ty = type_named(&entry["type"])?;
            let value = parse(ty, &entry["element_type"], &entry["value"])
                .map_err(|e| format!("key {key:?}: {e}"))?;
            Ok((key.to_owned(), value))
        })
        .collect()
}

fn type_named(name: &Json) -> Result<ValueType, String> {
    (0..13)
        .filter_map(ValueType::from_id)
        .find(|t| Some(t.name()) == name.as_str())
        .ok_or_else(|| format!("unknown GGUF value type {name}"))
}

fn parse(ty: ValueType, element: &Json, value: &Json) -> Result<OwnedValue, String> {
    let bad = || format!("{value} is not a {}", ty.name());
    let int = |v: &Json| v.as_i64().ok_or_else(bad);
    let uint = |v: &Json| v.as_u64().ok_or_else(bad);
    Ok(match ty {
        ValueType::U8 => OwnedValue::U8(u8::try_from(uint(value)?).map_err(|_| bad())?),
        ValueType::I8 => OwnedValue::I8(i8::try_from(int(value)?).map_err(|_| bad())?),
        ValueType::U16 => OwnedValue::U16(u16::try_from(uint(value)?).map_err(|_| bad())?),
        ValueType::I16 => OwnedValue::I16(i16::try_from(int(value)?).map_err(|_| bad())?),
        ValueType::U32 => OwnedValue::U32(u32::try_from(uint(value)?).map_err(|_| bad())?),
        ValueType::I32 => OwnedValue::I32(i32::try_from(int(value)?).map_err(|_| bad())?),
        ValueType::U64 => OwnedValue::U64(uint(value)?),
        ValueType::I64 => OwnedValue::I64(int(value)?),
        ValueType::F32 => OwnedValue::F32(match value.as_str() {
            Some(bits) => f32::from_bits(hex(bits).ok_or_else(bad)? as u32),
            None => value.as_f64().ok_or_else(bad)? as f32,
        }),
        ValueType::F64 => OwnedValue::F64(match value.as_str() {
            Some(bits) => f64::from_bits(hex(bits).ok_or_else(bad)?),
            None => value.as_f64().ok_or_else(bad)?,
        }),
        ValueType::Bool => OwnedValue::Bool(value.as_bool().ok_or_else(bad)?),
        ValueType::String => OwnedValue::String(value.as_str().ok_or_else(bad)?.to_owned()),
        ValueType::Array => {
            let element = type_named(element)?;
            let items = value.as_array().ok_or_else(bad)?;
            let parsed = items
                .iter()
                .map(|item| match element {
                    ValueType::Array => {
                        parse(ValueType::Array, &item["element_type"], &item["value"])
                    }
                    other => parse(other, &Json::Null, item),
                })
                .collect::<Result<_, _>>()?;
            OwnedValue::Array(element, parsed)
        }
    })
}

fn hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_survives_json() {
        let values = vec![
            ("a".to_owned(), OwnedValue::U8(255)),
            ("b".to_owned(), OwnedValue::I64(i64::MIN)),
            ("c".to_owned(), OwnedValue::U64(u64::MAX)),
            ("d".to_owned(), OwnedValue::F32(0.1)),
            ("e".to_owned(), OwnedValue::F32(f32::from_bits(0x7fc0_0001))),
            ("f".to_owned(), OwnedValue::F64(f64::NEG_INFINITY)),
            (
                "g".to_owned(),
                OwnedValue::Array(
                    ValueType::Array,
                    vec![OwnedValue::Array(
                        ValueType::String,
                        vec![OwnedValue::String("x".into())],
                    )],
                ),
            ),
            ("h".to_owned(), OwnedValue::Bool(true)),
        ];
        let borrowed: Vec<(String, OwnedValue)> = values.clone();
        let doc = Json::Array(
            borrowed
                .iter()
                .map(|(k, v)| {
                    let mut e = value_json(v);
                    e["key"] = json!(k);
                    e
                })
                .collect(),
        );
        let back = from_json(&serde_json::from_str(&doc.to_string()).unwrap()).unwrap();
        assert_eq!(back.len(), values.len());
        for ((k1, v1), (k2, v2)) in back.iter().zip(&values) {
            assert_eq!(k1, k2);
            match (v1, v2) {
                (OwnedValue::F32(a), OwnedValue::F32(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (OwnedValue::F64(a), OwnedValue::F64(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                _ => assert_eq!(v1, v2),
            }
        }
    }
}
