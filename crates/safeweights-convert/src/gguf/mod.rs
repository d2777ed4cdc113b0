//! GGUF (llama.cpp's format) to safetensors and back.
//!
//! To safetensors, every tensor is dequantized exactly as `gguf.quants`
//! does (then optionally cast), or kept as its raw blocks with the ggml
//! types recorded, so that converting back rebuilds the GGUF file byte for
//! byte. The GGUF metadata is kept, typed, as JSON under
//! [`METADATA_KEY`]. To GGUF, the output is streamed one tensor at a time.

mod error;
mod from_safetensors;
mod llama;
mod meta;
mod mxfp4;
mod pipeline;
mod to_safetensors;

pub use error::GgufError;
pub use from_safetensors::{
    safetensors_to_gguf, write_gguf, Arch, GgufSource, GgufWriteReport, SafetensorsToGguf,
};
pub use meta::{from_json as metadata_from_json, to_json as metadata_to_json, METADATA_KEY};
pub use to_safetensors::{gguf_to_safetensors, GgufReport, GgufToSafetensors};

/// The safetensors metadata key that records, for `--keep-quantized`
/// outputs, the GGUF version, each tensor's ggml type, dimensions and
/// offset, and the length of the data section.
pub const LAYOUT_KEY: &str = "gguf.layout";
