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
        while out.len() as u64 % self.alignment != 0 {
            out.push(0);
        }
        out.extend_from_slice(&self.data);
        out
    }
}

/// The one policy for a missing test dependency (a Python interpreter, a
/// Python package, nginx), the same in every crate's tests: with
/// `SAFEWEIGHTS_REQUIRE_ALL=1` (set by `scripts/test.sh`, so in CI) the test
/// fails; otherwise it says loudly on stderr that it skips, and the caller
/// returns early.
pub fn require<T>(what: &str, found: Option<T>) -> Option<T> {
    if found.is_some() {
        return found;
    }
    let hint = "install it with scripts/install-test-deps.sh, or point SAFEWEIGHTS_PYTHON at an interpreter that has it";
    if std::env::var_os("SAFEWEIGHTS_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("missing test dependency: {what} ({hint}); SAFEWEIGHTS_REQUIRE_ALL=1 makes this a failure, not a skip");
    }
    // Straight to stderr, past the test harness's capture, so that a skip
    // is seen even when the test passes.
    use std::io::Write;
    let notice = format!("SKIPPED: missing test dependency: {what} ({hint}); set SAFEWEIGHTS_REQUIRE_ALL=1 to fail instead\n");
    // A closed stderr cannot be reported anywhere else.
    std::io::stderr().write_all(notice.as_bytes()).ok();
    None
}

/// The interpreter (`$SAFEWEIGHTS_PYTHON`, else the workspace's `.venv`)
/// when it runs and has every one of `modules`, found without importing
/// them (importing torch takes seconds).
pub fn python_with(modules: &[&str]) -> Option<std::path::PathBuf> {
    let python = std::env::var_os("SAFEWEIGHTS_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let probe = format!(
        "import importlib.util, sys; sys.exit(0 if all(importlib.util.find_spec(m) for m in {modules:?}) else 1)"
    );
    let found = std::process::Command::new(&python)
        .args(["-c", &probe])
        .output()
        .is_ok_and(|run| run.status.success());
    found.then_some(python)
}
