//! A small GGUF writer for building valid and malformed files in tests.
#![allow(dead_code)]

/// One tensor info, written as given (nothing is checked).
pub struct RawTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub offset: u64,
}

/// A GGUF file under construction; every field is written verbatim.
pub struct Writer {
    pub version: u32,
    pub kv: Vec<(String, u32, Vec<u8>)>,
    pub tensors: Vec<RawTensor>,
    pub alignment: u64,
    pub data: Vec<u8>,
}

pub fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            version: 3,
            kv: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
            data: Vec::new(),
        }
    }

    pub fn kv(mut self, key: &str, type_id: u32, value: Vec<u8>) -> Self {
        self.kv.push((key.to_owned(), type_id, value));
        self
    }

    pub fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Self {
        self.tensors.push(RawTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            ggml_type,
            offset,
        });
        self
    }

    pub fn data(mut self, data: Vec<u8>) -> Self {
        self.data = data;
        self
    }

    /// Header, metadata and tensor infos, without padding or data.
    pub fn head(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (key, ty, value) in &self.kv {
            out.extend_from_slice(&string(key));
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(value);
        }
        for t in &self.tensors {
            out.extend_from_slice(&string(&t.name));
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.to_le_bytes());
            out.extend_from_slice(&t.offset.to_le_bytes());
        }
        out
    }

    /// The whole file: head, zero padding to the alignment, data.
    pub fn build(&self) -> Vec<u8> {
        let mut out = self.head();
        while !(out.len() as u64).is_multiple_of(self.alignment) {
            out.push(0);
        }
        out.extend_from_slice(&self.data);
        out
    }
}

// Not every test binary that includes this module uses both.
#[allow(unused_imports)]
pub use safeweights_testkit::{python_with, require};
