//! A strict, zero-copy, streaming implementation of the
//! [safetensors](https://github.com/huggingface/safetensors) format.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON
//! header naming each tensor's dtype, shape and byte range, and one flat
//! data section. This crate reads such files without copying (from memory,
//! a memory map, or positioned reads), validates every rule of the format,
//! slices tensors per dimension, writes files byte-identical to the
//! reference implementation (also streaming, for files larger than RAM),
//! and handles sharded checkpoints.
//!
//! ```
//! use safeweights::{Dtype, read::SafeTensors, write::{serialize, TensorRef, WriteOptions}};
//!
//! let data: Vec<u8> = (0..24u8).collect();
//! let tensors = [("weight", TensorRef::new(Dtype::F32, vec![2, 3], &data))];
//! let bytes = serialize(&tensors, None, &WriteOptions::default())?;
//!
//! let file = SafeTensors::parse(&bytes)?;
//! let weight = file.tensor("weight")?;
//! assert_eq!(weight.shape(), &[2, 3]);
//! assert_eq!(weight.data(), &data[..]);
//! # Ok::<(), safeweights::Error>(())
//! ```
#![deny(missing_docs)]

pub mod analysis;
pub mod checksum;
pub mod dcp;
pub mod edit;
mod error;
pub mod format;
pub mod pool;
pub mod read;
#[cfg(feature = "remote")]
pub mod remote;
pub mod resolve;
pub mod shards;
pub mod slice;
pub mod write;

pub use error::{DcpProblem, Error, RemoteErrorKind, Result};
pub use format::sniff::{sniff, FileKind};
pub use format::{
    Dtype, Header, HeaderLimits, Metadata, SortedNames, TensorEntry, TensorInfo, Tensors,
};
