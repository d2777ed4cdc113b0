//! The allow-list of globals and our own interpretation of calling them.
//!
//! Nothing here imports or runs anything: an allowed global becomes a
//! [`Global`] tag, and REDUCE on it runs the matching Rust function below.

use std::rc::Rc;
use std::sync::Arc;

use super::obj::{DictObj, Obj};
use super::value::{StorageRef, TensorRef};
use crate::error::{Error, Result};
use crate::scalar::ScalarType;

/// Globals on torch's `weights_only` allow-list (or numpy's, which Hugging
/// Face's `rng_state.pth` needs) that this crate records as data rather
/// than interprets: calling one yields an [`Obj::Object`] that the caller
/// (the Python package) rebuilds, with the same rules as torch.
const RECORDED: &[&str] = &[
    "collections.Counter",
    "torch.device",
    "torch.serialization._get_layout",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._utils._rebuild_wrapper_subclass",
    "torch.Tensor",
    "torch.nn.parameter.Parameter",
    "torch.storage.TypedStorage",
    // Layouts, quantization schemes and the dtypes safetensors has no name for.
    "torch.strided",
    "torch.sparse_coo",
    "torch.sparse_csr",
    "torch.sparse_csc",
    "torch.sparse_bsr",
    "torch.sparse_bsc",
    "torch._mkldnn",
    "torch.jagged",
    "torch.per_tensor_affine",
    "torch.per_channel_affine",
    "torch.per_tensor_symmetric",
    "torch.per_channel_symmetric",
    "torch.per_channel_affine_float_qparams",
    "torch.bits1x8",
    "torch.bits2x4",
    "torch.bits4x2",
    "torch.bits8",
    "torch.bits16",
    "torch.bcomplex32",
    "torch.int1",
    "torch.int2",
    "torch.int3",
    "torch.int4",
    "torch.int5",
    "torch.int6",
    "torch.int7",
    "torch.uint1",
    "torch.uint2",
    "torch.uint3",
    "torch.uint4",
    "torch.uint5",
    "torch.uint6",
    "torch.uint7",
    // numpy arrays, scalars and dtypes, decoded as data by the caller.
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
];

/// Legacy tensor classes (`torch.FloatTensor`, `torch.cuda.sparse.LongTensor`...).
const TENSOR_CLASSES: &[&str] = &[
    "BFloat16Tensor",
    "BoolTensor",
    "ByteTensor",
    "CharTensor",
    "DoubleTensor",
    "FloatTensor",
    "HalfTensor",
    "IntTensor",
    "LongTensor",
    "ShortTensor",
];

/// The dotted name if `module.name` is recorded as data.
fn recorded(module: &str, name: &str) -> Option<Rc<str>> {
    let dotted = format!("{module}.{name}");
    let legacy_tensor = matches!(
        module,
        "torch" | "torch.cuda" | "torch.sparse" | "torch.cuda.sparse"
    ) && TENSOR_CLASSES.contains(&name);
    let numpy_dtype_class = module == "numpy.dtypes"
        && name.ends_with("DType")
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric());
    (RECORDED.contains(&dotted.as_str()) || legacy_tensor || numpy_dtype_class)
        .then(|| Rc::from(dotted))
}

/// An allow-listed global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    Size,
    RebuildTensor,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    /// A storage class (`None` is `UntypedStorage`), and whether it is
    /// the `torch.cuda` one.
    StorageClass(Option<ScalarType>, bool),
    Dtype(ScalarType),
    Set,
    Complex,
    Bytearray,
    Bytes,
    CodecsEncode,
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)`.
    RebuildFromTypeV2,
    /// A global recorded as data (see [`RECORDED`]), by dotted name.
    Recorded(Rc<str>),
    /// A class the caller allowed (`Limits::allowed_classes`), rebuilt by
    /// the caller as torch rebuilds an allowed class.
    Allowed(Rc<str>),
}

impl Global {
    /// Resolves `module.name` against the allow-list.
    pub(crate) fn resolve(module: &str, name: &str) -> Option<Global> {
        let module = if module == "__builtin__" {
            "builtins"
        } else {
            module
        };
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch", "Size") => Global::Size,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch" | "torch.storage", "UntypedStorage") => Global::StorageClass(None, false),
            ("torch" | "torch.cuda", class) if ScalarType::from_storage_class(class).is_some() => {
                Global::StorageClass(
                    ScalarType::from_storage_class(class),
                    module == "torch.cuda",
                )
            }
            ("torch", dtype) if ScalarType::from_dtype_name(dtype).is_some() => {
                Global::Dtype(ScalarType::from_dtype_name(dtype)?)
            }
            ("builtins", "set") => Global::Set,
            ("builtins", "complex") => Global::Complex,
            ("builtins", "bytearray") => Global::Bytearray,
            ("builtins", "bytes") => Global::Bytes,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
            _ => Global::Recorded(recorded(module, name)?),
        })
    }

    /// As [`Global::resolve`], then the caller's allowed classes.
    pub(crate) fn resolve_with(module: &str, name: &str, allowed: &[String]) -> Option<Global> {
        Global::resolve(module, name).or_else(|| {
            let dotted = format!("{module}.{name}");
            allowed
                .contains(&dotted)
                .then(|| Global::Allowed(Rc::from(dotted)))
        })
    }

    /// Whether calling it builds an object for the caller to rebuild.
    pub(crate) fn is_recorded(&self) -> bool {
        matches!(self, Global::Recorded(_) | Global::Allowed(_))
    }

    /// Dotted name for messages and for uncalled globals in the tree.
    pub(crate) fn name(&self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::Size => "torch.Size".into(),
            Global::RebuildTensor => "torch._utils._rebuild_tensor".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildTensorV3 => "torch._utils._rebuild_tensor_v3".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::RebuildParameterWithState => {
                "torch._utils._rebuild_parameter_with_state".into()
            }
            Global::StorageClass(None, _) => "torch.storage.UntypedStorage".into(),
            Global::StorageClass(Some(s), cuda) => format!(
                "torch.{}{}",
                if *cuda { "cuda." } else { "" },
                s.storage_class().unwrap_or(s.name)
            ),
            Global::Dtype(s) => format!("torch.{}", s.name),
            Global::Set => "builtins.set".into(),
            Global::Complex => "builtins.complex".into(),
            Global::Bytearray => "builtins.bytearray".into(),
            Global::Bytes => "builtins.bytes".into(),
            Global::CodecsEncode => "_codecs.encode".into(),
            Global::RebuildFromTypeV2 => "torch._tensor._rebuild_from_type_v2".into(),
            Global::Recorded(name) => name.to_string(),
            Global::Allowed(name) => name.to_string(),
        }
    }
}

/// Interprets `global(*args)` (REDUCE) without running any Python.
pub(crate) fn call(global: &Global, args: &[Obj], offset: usize) -> Result<Obj> {
    let bad = |what: &str| {
        Error::pickle(
            offset,
            format!("unexpected arguments to {}: {what}", global.name()),
        )
    };
    match global {
        Global::Recorded(_) | Global::Allowed(_) => {
            Ok(Obj::new_object(global.name(), false, args.to_vec()))
        }
        Global::RebuildFromTypeV2 => rebuild_from_type(args, offset),
        Global::OrderedDict => match args {
            [] => Ok(Obj::new_ordered_dict()),
            [pairs] => dict_from_pairs(pairs).ok_or_else(|| bad("expected a list of pairs")),
            _ => Err(bad("expected at most one argument")),
        },
        // Recorded, so it comes back a torch.Size; `uints` reads it as sizes.
        Global::Size => match args {
            [Obj::Tuple(_) | Obj::List(_)] => {
                Ok(Obj::new_object(global.name(), false, args.to_vec()))
            }
            _ => Err(bad("expected one tuple")),
        },
        Global::RebuildTensor => rebuild(args, None, 4, 4).map_err(|e| in_call(global, e)),
        Global::RebuildTensorV2 => rebuild(args, None, 6, 7).map_err(|e| in_call(global, e)),
        Global::RebuildTensorV3 => match args.get(6) {
            Some(Obj::Global(Global::Dtype(d))) => {
                rebuild(args, Some(*d), 7, 8).map_err(|e| in_call(global, e))
            }
            _ => Err(bad("argument 7 must be a torch dtype")),
        },
        Global::RebuildParameter | Global::RebuildParameterWithState => match args {
            [Obj::Tensor(t), grad, ..] if (3..=4).contains(&args.len()) => {
                let mut t = (**t).clone();
                t.requires_grad = matches!(grad, Obj::Bool(true));
                t.parameter = true;
                Ok(Obj::Tensor(Arc::new(t)))
            }
            _ => Err(bad("expected (tensor, requires_grad, hooks[, state])")),
        },
        Global::Set => match args {
            [] => Ok(Obj::new_set(Vec::new())),
            [Obj::List(l)] | [Obj::Set(l)] => Ok(Obj::new_set(l.borrow().clone())),
            [Obj::Tuple(t)] => Ok(Obj::new_set((**t).clone())),
            _ => Err(bad("expected one list")),
        },
        Global::Complex => match args {
            [re] => Ok(Obj::Complex(
                number(re).ok_or_else(|| bad("not a number"))?,
                0.0,
            )),
            [re, im] => Ok(Obj::Complex(
                number(re).ok_or_else(|| bad("not a number"))?,
                number(im).ok_or_else(|| bad("not a number"))?,
            )),
            _ => Err(bad("expected (real, imag)")),
        },
        Global::Bytes | Global::Bytearray => {
            let bytes = match args {
                [] => Rc::from(&b""[..]),
                [Obj::Bytes(b) | Obj::ByteArray(b)] => b.clone(),
                [Obj::Str(s), Obj::Str(enc)] => {
                    encode(s, enc).ok_or_else(|| bad("bad encoding"))?
                }
                _ => return Err(bad("expected bytes")),
            };
            Ok(if *global == Global::Bytearray {
                Obj::ByteArray(bytes)
            } else {
                Obj::Bytes(bytes)
            })
        }
        Global::CodecsEncode => match args {
            [Obj::Str(s), Obj::Str(enc)] => Ok(Obj::Bytes(
                encode(s, enc).ok_or_else(|| bad("bad encoding"))?,
            )),
            _ => Err(bad("expected (str, encoding)")),
        },
        Global::StorageClass(..) | Global::Dtype(_) => Err(bad("this global is not callable")),
    }
}

/// `_rebuild_from_type_v2(func, new_type, args, state)`: `func(*args)`,
/// kept as is when `new_type` is a plain tensor or parameter with no state
/// (what `torch.save` writes for tensors with Python attributes unset).
fn rebuild_from_type(args: &[Obj], offset: usize) -> Result<Obj> {
    let bad = |what: String| {
        Error::pickle(
            offset,
            format!("unexpected arguments to torch._tensor._rebuild_from_type_v2: {what}"),
        )
    };
    let [Obj::Global(func), Obj::Global(new_type), Obj::Tuple(inner), state] = args else {
        return Err(bad("expected (function, type, args, state)".into()));
    };
    let plain = matches!(new_type, Global::Recorded(n) if matches!(&**n, "torch.Tensor" | "torch.nn.parameter.Parameter"));
    if !plain {
        return Err(bad(format!(
            "tensor subclass {} is not supported",
            new_type.name()
        )));
    }
    let empty_state = match state {
        Obj::None => true,
        Obj::Dict(d) => d.borrow().items.is_empty(),
        _ => false,
    };
    if !empty_state {
        return Err(bad(
            "tensors with Python attributes are not supported".into()
        ));
    }
    if func.is_recorded() {
        return Err(bad(format!("{} does not rebuild a tensor", func.name())));
    }
    call(func, inner, offset)
}

fn in_call(global: &Global, e: Error) -> Error {
    e.within(format!("in {}", global.name()))
}

/// Python's `bytes(str, "latin1")`, the protocol 2 spelling of bytes.
fn encode(s: &str, encoding: &str) -> Option<Rc<[u8]>> {
    let bytes: Vec<u8> = match encoding {
        "latin1" | "latin-1" | "iso-8859-1" => s
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<_>>()?,
        "utf-8" | "utf8" => s.as_bytes().to_vec(),
        _ => return None,
    };
    Some(bytes.into())
}

fn number(obj: &Obj) -> Option<f64> {
    match obj {
        Obj::Float(f) => Some(*f),
        Obj::Int(i) => Some(*i as f64),
        _ => None,
    }
}

fn dict_from_pairs(pairs: &Obj) -> Option<Obj> {
    let items: Vec<Obj> = match pairs {
        Obj::List(l) => l.borrow().clone(),
        Obj::Tuple(t) => (**t).clone(),
        _ => return None,
    };
    let mut dict = DictObj::ordered();
    for item in items {
        let pair: Vec<Obj> = match item {
            Obj::Tuple(t) => (*t).clone(),
            Obj::List(l) => l.borrow().clone(),
            _ => return None,
        };
        let [k, v] = <[Obj; 2]>::try_from(pair).ok()?;
        dict.set(k, v);
    }
    Some(Obj::Dict(Rc::new(dict.into())))
}

/// `_rebuild_tensor*(storage, offset, size, stride, ...)`.
fn rebuild(args: &[Obj], dtype: Option<ScalarType>, min: usize, max: usize) -> Result<Obj> {
    if !(min..=max).contains(&args.len()) {
        return Err(Error::checkpoint(format!(
            "expected {min} to {max} arguments, got {}",
            args.len()
        )));
    }
    let storage = match args.first() {
        Some(Obj::Storage(s)) => s.clone(),
        other => {
            return Err(Error::checkpoint(format!(
                "argument 1 must be a storage, got {}",
                other.map_or("nothing", Obj::type_name)
            )))
        }
    };
    let scalar = element_type(&storage, dtype)?;
    let offset = uint(args.get(1), "storage offset")?;
    let shape = uints(args.get(2), "size")?;
    let stride = uints(args.get(3), "stride")?;
    let mut t = TensorRef::new(storage, scalar, offset, shape, stride)?;
    t.requires_grad = matches!(args.get(4), Some(Obj::Bool(true)));
    Ok(Obj::Tensor(Arc::new(t)))
}

fn element_type(storage: &StorageRef, dtype: Option<ScalarType>) -> Result<ScalarType> {
    match (storage.scalar, dtype) {
        (Some(s), None) => Ok(s),
        (_, Some(d)) => Ok(d),
        (None, None) => Err(Error::checkpoint(
            "an UntypedStorage tensor without a dtype argument",
        )),
    }
}

fn uint(obj: Option<&Obj>, what: &str) -> Result<u64> {
    match obj {
        Some(Obj::Int(i)) => {
            u64::try_from(*i).map_err(|_| Error::checkpoint(format!("negative tensor {what} {i}")))
        }
        _ => Err(Error::checkpoint(format!("tensor {what} must be an int"))),
    }
}

fn uints(obj: Option<&Obj>, what: &str) -> Result<Vec<u64>> {
    match obj {
        Some(Obj::Object(o)) if o.borrow().global == "torch.Size" => {
            let object = o.borrow();
            uints(object.args.first(), what)
        }
        Some(Obj::Tuple(t)) => t.iter().map(|o| uint(Some(o), what)).collect(),
        Some(Obj::List(l)) => l.borrow().iter().map(|o| uint(Some(o), what)).collect(),
        _ => Err(Error::checkpoint(format!(
            "tensor {what} must be a tuple of ints"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        assert_eq!(
            Global::resolve("collections", "OrderedDict"),
            Some(Global::OrderedDict)
        );
        assert_eq!(Global::resolve("__builtin__", "set"), Some(Global::Set));
        assert!(matches!(
            Global::resolve("torch", "BFloat16Storage"),
            Some(Global::StorageClass(
                Some(ScalarType {
                    name: "bfloat16",
                    ..
                }),
                false
            ))
        ));
        assert!(matches!(
            Global::resolve("torch", "float8_e5m2"),
            Some(Global::Dtype(_))
        ));
        for (m, n) in [
            ("os", "system"),
            ("builtins", "eval"),
            ("torch", "load"),
            ("torch", "FakeStorage"),
            ("torch.storage", "_load_from_bytes"),
            ("torch", "FooTensor"),
            ("numpy", "load"),
            ("numpy.dtypes", "StringDTypeX"),
        ] {
            assert_eq!(Global::resolve(m, n), None, "{m}.{n}");
        }
    }

    #[test]
    fn codecs_encode_is_latin1() {
        let out = call(
            &Global::CodecsEncode,
            &[Obj::Str("\u{ff}a".into()), Obj::Str("latin1".into())],
            0,
        )
        .unwrap();
        assert!(matches!(out, Obj::Bytes(b) if &*b == b"\xffa"));
        assert!(call(
            &Global::CodecsEncode,
            &[Obj::Str("\u{100}".into()), Obj::Str("latin1".into())],
            0
        )
        .is_err());
        assert!(call(
            &Global::Dtype(ScalarType::from_dtype_name("int8").unwrap()),
            &[],
            0
        )
        .is_err());
    }
}
