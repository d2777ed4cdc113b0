//! Flattens a rebuilt checkpoint tree into dotted tensor names, JSON
//! metadata for plain values, and a list of what could not be kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pickle::{TensorRef, Value, ViewKey};

/// A tensor found in a checkpoint, named by its dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// Dotted path, e.g. `optimizer.state.0.exp_avg`.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Sizes per dimension.
    pub shape: Vec<u64>,
    /// The view descriptor (storage, offset, strides).
    pub tensor: Arc<TensorRef>,
}

impl TensorEntry {
    /// Size of the contiguous tensor in bytes.
    pub fn nbytes(&self) -> u64 {
        // Checked when the view was built, so this cannot overflow.
        self.tensor.nbytes().unwrap_or(u64::MAX)
    }
}

/// A value that could not be kept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Dotted path of the value; empty for the checkpoint as a whole (its
    /// structure could not be kept).
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Everything flattening produced.
#[derive(Debug, Default)]
pub(crate) struct Flat {
    pub(crate) tensors: Vec<TensorEntry>,
    pub(crate) aliases: Vec<(String, String)>,
    pub(crate) metadata: Map<String, Json>,
    pub(crate) skipped: Vec<Skipped>,
    /// The entry each stored view is named by (aliases included).
    pub(crate) names: HashMap<ViewKey, String>,
}

pub(crate) fn flatten(root: &Value, limits: &Limits) -> Result<Flat> {
    // Shared references make the tree exponentially larger than the
    // graph; size it on the graph first so a bomb fails in linear time.
    let size = tree_size(root, &mut HashMap::new(), 0, limits)?;
    if size > limits.max_nodes {
        return Err(Error::limit("max_nodes", limits.max_nodes, 0));
    }
    let mut w = Walker {
        limits,
        nodes: 0,
        flat: Flat::default(),
        names: HashSet::new(),
        views: HashMap::new(),
    };
    w.walk(root, "", 0)?;
    w.flat.names = w.views;
    Ok(w.flat)
}

/// Number of nodes the tree expansion of `v` has (saturating), computed
/// once per shared container.
fn tree_size(
    v: &Value,
    memo: &mut HashMap<usize, u64>,
    depth: usize,
    limits: &Limits,
) -> Result<u64> {
    if depth > limits.max_depth {
        return Err(Error::limit("max_depth", limits.max_depth as u64, 0));
    }
    if let (Value::Object(_), Some(items)) = (v, v.as_dict()) {
        return tree_size(&Value::Dict(items.clone()), memo, depth, limits);
    }
    let (id, children): (usize, Vec<&Value>) = match v {
        Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
            (items.as_ptr() as usize, items.iter().collect())
        }
        Value::Dict(items) => (
            items.as_ptr() as usize,
            items.iter().flat_map(|(k, v)| [k, v]).collect(),
        ),
        _ => return Ok(1),
    };
    if let Some(&n) = memo.get(&id) {
        return Ok(n);
    }
    let mut total = 1u64;
    for child in children {
        total = total.saturating_add(tree_size(child, memo, depth + 1, limits)?);
    }
    memo.insert(id, total);
    Ok(total)
}

struct Walker<'l> {
    limits: &'l Limits,
    nodes: u64,
    flat: Flat,
    names: HashSet<String>,
    views: HashMap<ViewKey, String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Walker<'_> {
    fn skip(&mut self, path: &str, reason: impl Into<String>) {
        self.flat.skipped.push(Skipped {
            path: path.to_owned(),
            reason: reason.into(),
        });
    }

    fn walk(&mut self, v: &Value, path: &str, depth: usize) -> Result<()> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(Error::limit("max_nodes", self.limits.max_nodes, 0));
        }
        if depth > self.limits.max_depth {
            return Err(Error::limit("max_depth", self.limits.max_depth as u64, 0));
        }
        if let (Value::Object(_), Some(items)) = (v, v.as_dict()) {
            // An OrderedDict: walked as the dict it is.
            return self.walk(&Value::Dict(items.clone()), path, depth);
        }
        match v {
            Value::Tensor(t) => self.tensor(t, path),
            Value::Dict(items) if items.is_empty() && !path.is_empty() => {
                self.leaf(path, Json::Object(Map::new()));
            }
            Value::Dict(items) => {
                for (k, child) in items.iter() {
                    match key_text(k) {
                        Some(key) => self.walk(child, &join(path, &key), depth + 1)?,
                        None => self.skip(path, format!("dict key of type {}", k.type_name())),
                    }
                }
            }
            Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
                if let Some(json) = scalar_list(items) {
                    self.leaf(path, json);
                } else if matches!(v, Value::Set(_)) {
                    self.skip(path, "set of non-scalar values");
                } else {
                    for (i, child) in items.iter().enumerate() {
                        self.walk(child, &join(path, &i.to_string()), depth + 1)?;
                    }
                }
            }
            other => match scalar(other) {
                Ok(json) => self.leaf(path, json),
                Err(reason) => self.skip(path, reason),
            },
        }
        Ok(())
    }

    fn leaf(&mut self, path: &str, json: Json) {
        let key = if path.is_empty() { "value" } else { path };
        if self.flat.metadata.insert(key.to_owned(), json).is_some() {
            self.skip(path, "duplicate name");
        }
    }

    fn tensor(&mut self, t: &Arc<TensorRef>, path: &str) {
        let name = if path.is_empty() { "tensor" } else { path }.to_owned();
        let Some(dtype) = t.scalar.dtype else {
            return self.skip(
                path,
                format!("torch.{} has no safetensors dtype", t.scalar.name),
            );
        };
        if !self.names.insert(name.clone()) {
            return self.skip(path, "duplicate name");
        }
        let key = t.view_key();
        if let Some(kept) = self.views.get(&key) {
            self.flat.aliases.push((name, kept.clone()));
            return;
        }
        self.views.insert(key, name.clone());
        self.flat.tensors.push(TensorEntry {
            name,
            dtype,
            shape: t.shape.clone(),
            tensor: t.clone(),
        });
    }
}

fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
        _ => None,
    }
}

/// A plain value as JSON, or why it cannot be one.
fn scalar(v: &Value) -> Result<Json, String> {
    Ok(match v {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or("NaN or infinite float")?,
        Value::Str(s) => Json::String(s.to_string()),
        Value::Dtype(d) => Json::String(format!("torch.{}", d.name)),
        Value::BigInt(_) => return Err("integer too large for 64 bits".into()),
        Value::Storage(_) => return Err("bare storage that no tensor uses".into()),
        other => return Err(format!("{} value cannot be represented", other.type_name())),
    })
}

fn scalar_list(items: &[Value]) -> Option<Json> {
    items
        .iter()
        .map(|v| scalar(v).ok())
        .collect::<Option<Vec<_>>>()
        .map(Json::Array)
}
