//! A summary of a training checkpoint's structure (the JSON that
//! `save_checkpoint` stores under `safeweights.checkpoint`): per top-level
//! entry its type and what it holds, instead of every RNG integer.

use std::collections::BTreeMap;

use serde_json::Value;

/// The metadata key holding a training checkpoint's structure.
pub const STRUCTURE_KEY: &str = "safeweights.checkpoint";

/// What a value holds, counted recursively.
#[derive(Debug, Default)]
struct Counts {
    tensors: u64,
    /// Leaf values by type name (`int`, `float`, `str`, ...).
    values: BTreeMap<&'static str, u64>,
}

impl Counts {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.tensors > 0 {
            parts.push(plural(self.tensors, "tensor"));
        }
        let total: u64 = self.values.values().sum();
        if total > 0 {
            let kinds: Vec<String> = self
                .values
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            parts.push(format!("{} ({})", plural(total, "value"), kinds.join(", ")));
        }
        if parts.is_empty() {
            "empty".into()
        } else {
            parts.join(", ")
        }
    }
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// One line per top-level entry, `(key, description)`, or `None` when the
/// text is not a checkpoint structure.
pub fn summarize(text: &str) -> Option<Vec<(String, String)>> {
    let document: Value = serde_json::from_str(text).ok()?;
    let root = document.get("root")?;
    let Some(entries) = dict_entries(root) else {
        return Some(vec![("(root)".into(), describe(root))]);
    };
    Some(
        entries
            .iter()
            .map(|(key, value)| (key_text(key), describe(value)))
            .collect(),
    )
}

/// The `[key, value]` pairs of an encoded dict or OrderedDict.
fn dict_entries(value: &Value) -> Option<Vec<(&Value, &Value)>> {
    let pairs = value.get("$dict").or_else(|| value.get("$odict"))?;
    pairs
        .as_array()?
        .iter()
        .map(|pair| match pair.as_array()?.as_slice() {
            [key, value] => Some((key, value)),
            _ => None,
        })
        .collect()
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A short description: scalars show themselves, containers their type,
/// length and what they hold.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(b) => format!("bool {}", if *b { "True" } else { "False" }),
        Value::Number(n) if n.is_f64() => format!("float {n}"),
        Value::Number(n) => format!("int {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("str {s:?}"),
        Value::String(s) => format!("str of {} characters", s.chars().count()),
        Value::Array(items) => container("list", items.len(), value),
        Value::Object(object) => {
            if let Some(entry) = object.get("$tensor").or_else(|| object.get("$view")) {
                return format!("tensor {}", key_text(entry));
            }
            if let Some(entries) = dict_entries(value) {
                return container("dict", entries.len(), value);
            }
            for kind in ["$tuple", "$set", "$size"] {
                if let Some(Value::Array(items)) = object.get(kind) {
                    return container(&kind[1..], items.len(), value);
                }
            }
            match object.iter().next() {
                Some((tag, Value::String(text))) => {
                    format!("{} {text}", tag.trim_start_matches('$'))
                }
                _ => "value".into(),
            }
        }
    }
}

fn container(kind: &str, len: usize, value: &Value) -> String {
    let mut counts = Counts::default();
    count(value, &mut counts);
    format!(
        "{kind} of {}: {}",
        plural(len as u64, "item"),
        counts.describe()
    )
}

fn count(value: &Value, counts: &mut Counts) {
    let mut leaf = |kind: &'static str| *counts.values.entry(kind).or_default() += 1;
    match value {
        Value::Null => leaf("None"),
        Value::Bool(_) => leaf("bool"),
        Value::Number(n) if n.is_f64() => leaf("float"),
        Value::Number(_) => leaf("int"),
        Value::String(_) => leaf("str"),
        Value::Array(items) => items.iter().for_each(|v| count(v, counts)),
        Value::Object(object) => {
            if object.contains_key("$tensor") || object.contains_key("$view") {
                counts.tensors += 1;
            } else if let Some(entries) = dict_entries(value) {
                entries.iter().for_each(|(_, v)| count(v, counts));
            } else if let Some(tag) = ["$tuple", "$set", "$size"]
                .iter()
                .find_map(|k| object.get(*k))
            {
                count(tag, counts);
            } else if object.contains_key("$float") {
                leaf("float");
            } else {
                leaf("other");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_each_top_level_entry() {
        let rng: Vec<String> = (0..625).map(|i| i.to_string()).collect();
        let text = format!(
            r#"{{"version":1,"root":{{"$dict":[["model",{{"$odict":[["w",{{"$tensor":"model.w"}}],["b",{{"$tensor":"model.b"}}]]}}],["epoch",3],["lr",{{"$float":"nan"}}],["rng",{{"$tuple":[3,{{"$tuple":[{}]}},null]}}],["name","run-1"]]}}}}"#,
            rng.join(",")
        );
        let lines = summarize(&text).unwrap();
        let get = |k: &str| lines.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("model"), "dict of 2 items: 2 tensors");
        assert_eq!(get("epoch"), "int 3");
        assert_eq!(get("lr"), "float nan");
        assert_eq!(get("rng"), "tuple of 3 items: 627 values (1 None, 626 int)");
        assert_eq!(get("name"), "str \"run-1\"");
        assert!(summarize("not json").is_none());
    }
}
