//! A strict, zero-copy reader for llama.cpp's GGUF format, versions 2 and 3.
//!
//! [`GgufFile::open`] maps a file; [`Gguf::parse`] reads a whole file from a byte slice (typically a memory
//! map), checks everything that can be checked without decoding tensor
//! data, and hands out borrowed metadata values and tensor bytes.
//!
//! Deliberate strictness, beyond what `gguf`'s Python reader enforces:
//! duplicate keys or tensor names, tensor names of 64 bytes or more,
//! more than 4 dimensions, unknown value or ggml types, rows that are not a
//! whole number of quantization blocks, misaligned or overlapping tensors,
//! tensor data past the end of the file, strings that are not UTF-8,
//! booleans other than 0 or 1, and `general.alignment` that is not a power
//! of two are all errors. Every count is checked against the bytes left
//! before anything is allocated, so crafted counts (the cause of llama.cpp's
//! GGUF CVEs) cannot make it allocate more than a small multiple of the
//! file's size.
#![deny(missing_docs)]
// The parser is `forbid(unsafe_code)` module by module; the one `unsafe`
// is the memory map in `file.rs`.
#![deny(unsafe_code)]

mod error;
mod file;
mod ggml;
pub mod quant;
mod read;
pub mod template;
mod value;
pub mod write;

pub use error::{Error, Place, Result};
pub use file::GgufFile;
pub use ggml::GgmlType;
pub use read::{Gguf, TensorInfo};
pub use value::{Array, Value, ValueType};
pub use write::{GgufWriter, Layout, OwnedValue, TensorDecl};

/// The key that sets the alignment of the data section.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Tensor names must be shorter than this (ggml's `GGML_MAX_NAME`, which
/// counts the terminating zero).
pub const MAX_NAME_BYTES: usize = 64;
/// The deepest nesting of arrays accepted, so that crafted nesting cannot
/// exhaust the stack.
pub const MAX_ARRAY_DEPTH: usize = 8;
