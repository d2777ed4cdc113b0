//! Numeric analysis of tensor data: exact decoding of every dtype to `f64`,
//! streaming summary statistics and tolerance-based comparison.
//!
//! Everything here works on chunks of a tensor's bytes, so callers can walk
//! a memory-mapped file larger than RAM without ever holding a converted
//! copy of a whole tensor. Chunks must hold whole elements: see
//! [`decode::granule_bytes`].

pub mod compare;
pub mod decode;
pub mod stats;

pub use compare::{Comparison, Tolerance};
pub use decode::{decode_into, granule_bytes};
pub use stats::Summary;
