//! The immutable object tree a pickle rebuilds to.
//!
//! Shared references stay shared (`Arc`), so a graph that would expand
//! exponentially as a tree costs only as much memory as the pickle itself.
//! Anything that walks it must count visited nodes against
//! [`crate::Limits::max_nodes`].

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::scalar::ScalarType;

/// A value rebuilt from a pickle. Tensors are descriptors pointing into
/// their storage; their bytes are read separately.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// A larger integer, little-endian two's complement bytes (LONG1).
    BigInt(Arc<[u8]>),
    /// A float.
    Float(f64),
    /// A complex number (real, imaginary).
    Complex(f64, f64),
    /// A string.
    Str(Arc<str>),
    /// A bytes object.
    Bytes(Arc<[u8]>),
    /// A bytearray object.
    ByteArray(Arc<[u8]>),
    /// A tuple (also `torch.Size`).
    Tuple(Arc<[Value]>),
    /// A list.
    List(Arc<[Value]>),
    /// A dict or `OrderedDict`, in insertion order, keys unique.
    Dict(Arc<[(Value, Value)]>),
    /// A set, in insertion order.
    Set(Arc<[Value]>),
    /// A torch dtype object such as `torch.float32`.
    Dtype(ScalarType),
    /// An allowed global that was referenced but never called, by its
    /// dotted name (e.g. a storage class).
    Global(Arc<str>),
    /// A storage that no tensor wraps.
    Storage(Arc<StorageRef>),
    /// A tensor or parameter.
    Tensor(Arc<TensorRef>),
    /// A call or instantiation of an allowed global this crate does not
    /// interpret itself (`torch.device`, numpy arrays, `collections.Counter`,
    /// quantized and sparse tensor rebuilds, classes the caller allowed):
    /// recorded as data for the caller to rebuild.
    Object(Arc<ObjectValue>),
}

/// What a pickle did with a recorded global: called it (REDUCE) or
/// instantiated it (NEWOBJ) with `args`, then BUILD, APPENDS and SETITEMS.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectValue {
    /// The global's dotted name, e.g. `torch.device`.
    pub global: Arc<str>,
    /// NEWOBJ (`cls.__new__(cls, *args)`) rather than REDUCE (`global(*args)`).
    pub new: bool,
    /// The arguments.
    pub args: Arc<[Value]>,
    /// The BUILD state, if any.
    pub state: Option<Value>,
    /// Items appended (list subclasses).
    pub items: Arc<[Value]>,
    /// Items set (dict subclasses), in order.
    pub dict_items: Arc<[(Value, Value)]>,
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one (bools count as 0 and 1, like Python).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The tensor descriptor, if this is one.
    pub fn as_tensor(&self) -> Option<&Arc<TensorRef>> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// The items of a dict, `OrderedDict` included (recorded as an
    /// [`Value::Object`] to keep its type and `_metadata`).
    pub fn as_dict(&self) -> Option<&Arc<[(Value, Value)]>> {
        match self {
            Value::Dict(items) => Some(items),
            Value::Object(object) if &*object.global == "collections.OrderedDict" => {
                object.args.first().and_then(Value::as_dict)
            }
            _ => None,
        }
    }

    /// Looks up a string key in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.as_dict() {
            Some(items) => items
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            None => None,
        }
    }

    /// A short type name for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Complex(..) => "complex",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Dtype(_) => "torch.dtype",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Object(_) => "object",
        }
    }
}

/// A storage referenced through a pickle persistent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// Record key (`data/<key>` in zip checkpoints, root key in legacy ones).
    pub key: Arc<str>,
    /// Element type of a typed storage; `None` for `UntypedStorage` (bytes).
    pub scalar: Option<ScalarType>,
    /// Element count of the storage as declared.
    pub numel: u64,
    /// Device it was saved from (`cpu`, `cuda:0`); informational only.
    pub location: Arc<str>,
    /// Legacy format only: this storage is a view `(offset, len)` in
    /// elements into the root storage `key`.
    pub view: Option<(u64, u64)>,
}

impl StorageRef {
    /// Size of one element of the storage in bytes (1 when untyped).
    pub fn element_size(&self) -> usize {
        self.scalar.map_or(1, |s| s.size)
    }

    /// Bytes this storage (or legacy view) covers, checked.
    pub fn nbytes(&self) -> Option<u64> {
        let elems = self.view.map_or(self.numel, |(_, len)| len);
        elems.checked_mul(self.element_size() as u64)
    }
}

/// A tensor: a strided view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// The storage holding the elements.
    pub storage: Arc<StorageRef>,
    /// The tensor's element type.
    pub scalar: ScalarType,
    /// Offset of the first element, in elements.
    pub offset: u64,
    /// Sizes per dimension.
    pub shape: Vec<u64>,
    /// Strides per dimension, in elements.
    pub stride: Vec<u64>,
    /// Whether it was saved as requiring grad (a parameter, usually).
    pub requires_grad: bool,
    /// Whether it was saved as an `nn.Parameter`.
    pub parameter: bool,
}

/// Identity of the exact bytes a tensor view covers: storage (and legacy
/// view), offset, shape, strides and element type. Two tensors with equal
/// keys read the same bytes as the same values.
pub type ViewKey = (
    Arc<str>,
    Option<(u64, u64)>,
    u64,
    Vec<u64>,
    Vec<u64>,
    &'static str,
);

impl TensorRef {
    /// The [`ViewKey`] of this tensor, to find identical (tied) views.
    pub fn view_key(&self) -> ViewKey {
        (
            self.storage.key.clone(),
            self.storage.view,
            self.offset,
            self.shape.clone(),
            self.stride.clone(),
            self.scalar.name,
        )
    }

    /// Builds a view after checking it stays inside its storage, with
    /// checked arithmetic, so later reads can never go out of bounds.
    pub(crate) fn new(
        storage: Arc<StorageRef>,
        scalar: ScalarType,
        offset: u64,
        shape: Vec<u64>,
        stride: Vec<u64>,
    ) -> Result<TensorRef> {
        if shape.len() != stride.len() {
            return Err(Error::checkpoint(format!(
                "tensor has {} sizes but {} strides",
                shape.len(),
                stride.len()
            )));
        }
        let t = TensorRef {
            storage,
            scalar,
            offset,
            shape,
            stride,
            requires_grad: false,
            parameter: false,
        };
        let needed = t.storage_bytes_needed().ok_or_else(overflow)?;
        let have = t.storage.nbytes().ok_or_else(overflow)?;
        if needed > have {
            return Err(Error::checkpoint(format!(
                "tensor view (offset {}, sizes {:?}, strides {:?}) reaches byte {needed} of \
                 storage `{}` which has only {have} bytes",
                t.offset, t.shape, t.stride, t.storage.key
            )));
        }
        Ok(t)
    }

    /// Number of elements (product of sizes), checked.
    pub fn numel(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Bytes of the contiguous tensor, checked.
    pub fn nbytes(&self) -> Option<u64> {
        self.numel()?.checked_mul(self.scalar.size as u64)
    }

    /// Whether the strides are the row-major contiguous ones.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1u64;
        for (&size, &stride) in self.shape.iter().zip(&self.stride).rev() {
            if size != 1 && stride != expected {
                return false;
            }
            expected = expected.saturating_mul(size);
        }
        true
    }

    /// One past the last storage byte the view touches (0 when empty).
    fn storage_bytes_needed(&self) -> Option<u64> {
        if self.shape.contains(&0) {
            return Some(0);
        }
        let mut last = self.offset;
        for (&size, &stride) in self.shape.iter().zip(&self.stride) {
            last = last.checked_add((size - 1).checked_mul(stride)?)?;
        }
        last.checked_add(1)?.checked_mul(self.scalar.size as u64)
    }
}

fn overflow() -> Error {
    Error::checkpoint("tensor view size overflows 64 bits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(numel: u64) -> Arc<StorageRef> {
        Arc::new(StorageRef {
            key: "0".into(),
            scalar: ScalarType::from_dtype_name("float32"),
            numel,
            location: "cpu".into(),
            view: None,
        })
    }

    #[test]
    fn view_bounds_are_checked() {
        let f32 = ScalarType::from_dtype_name("float32").unwrap();
        let ok = TensorRef::new(storage(6), f32, 0, vec![2, 3], vec![3, 1]).unwrap();
        assert!(ok.is_contiguous());
        assert_eq!(ok.nbytes(), Some(24));
        let t = TensorRef::new(storage(6), f32, 0, vec![3, 2], vec![1, 3]).unwrap();
        assert!(!t.is_contiguous());
        assert!(TensorRef::new(storage(6), f32, 1, vec![2, 3], vec![3, 1]).is_err());
        assert!(TensorRef::new(storage(6), f32, 0, vec![2], vec![1, 1]).is_err());
        assert!(TensorRef::new(storage(6), f32, u64::MAX, vec![2], vec![1]).is_err());
        assert!(TensorRef::new(storage(6), f32, 0, vec![u64::MAX, 2], vec![u64::MAX, 1]).is_err());
        let empty = TensorRef::new(storage(0), f32, 99, vec![0, 5], vec![5, 1]).unwrap();
        assert_eq!(empty.nbytes(), Some(0));
    }
}
