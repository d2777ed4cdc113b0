//! The tensor element type, shared with the core `safeweights` crate.

pub use safeweights::Dtype;
