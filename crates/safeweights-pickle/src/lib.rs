//! Safe readers for untrusted PyTorch checkpoints, pickles and numpy files,
//! and a scanner that reports what a pickle would do if it were loaded.
//!
//! Nothing in this crate executes code from its input: pickles run on an
//! allow-listing virtual machine that interprets the handful of globals
//! tensor checkpoints need, and the scanner only simulates.

#![deny(missing_docs)]

pub mod dcp;
mod decompress;
pub mod dtype;
pub mod error;
pub mod limits;
pub mod numpy;
pub mod pickle;
pub mod scalar;
pub mod scan;
pub mod source;
mod tar;
pub mod torch;
pub mod zip;

pub use dtype::Dtype;
pub use error::{Error, Result};
pub use limits::Limits;
