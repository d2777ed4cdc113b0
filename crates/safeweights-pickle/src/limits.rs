//! Resource limits that make bombs fail fast.

/// Hard limits applied while parsing untrusted input.
///
/// The defaults accept any realistic checkpoint (tens of thousands of
/// tensors, multi-gigabyte storages) while rejecting expansion and
/// decompression bombs within milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum pickle opcodes executed per pickle.
    pub max_ops: u64,
    /// Maximum VM stack depth (values on the stack, all marks together).
    pub max_stack: usize,
    /// Maximum memo entries.
    pub max_memo: usize,
    /// Maximum length in bytes of one string, bytes object or text line.
    pub max_string_len: usize,
    /// Maximum number of items in one list, dict, set or tuple.
    pub max_container_len: usize,
    /// Maximum nesting depth of values (tuples in lists in dicts ...).
    pub max_depth: usize,
    /// Maximum nodes visited when walking a value graph. Shared memo
    /// references make a graph whose tree expansion is exponential; this
    /// budget turns such a "billion laughs" into a quick error.
    pub max_nodes: u64,
    /// Maximum entries in one zip archive.
    pub max_zip_entries: usize,
    /// Maximum decompressed size of one compressed zip member or one
    /// compressed (gzip, bzip2, xz) file: the memory one read may take.
    pub max_decompressed: u64,
    /// Maximum total decompressed size of all the compressed members of
    /// one archive. A decompression bomb is output far beyond any plausible
    /// model; there is deliberately no compression-ratio limit, because a
    /// zero-initialised matrix (a LoRA B) compresses past 1000:1.
    pub max_total_decompressed: u64,
    /// Maximum ratio of a strided tensor's bytes to its storage's bytes
    /// (a view that repeats one storage many times is an expansion bomb).
    pub max_ratio: u64,
    /// Maximum nesting of archives inside archives for the scanner.
    pub max_archive_depth: usize,
    /// Classes (`module.qualname`) the caller allows beyond the built-in
    /// allow-list, as torch's `add_safe_globals` does. The reader never
    /// builds them: NEWOBJ, BUILD and items on one are recorded as a
    /// [`crate::pickle::Value::Object`] for the caller to rebuild. Not a
    /// limit, but it travels with them to every pickle the reader runs.
    pub allowed_classes: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ops: 100_000_000,
            max_stack: 1_000_000,
            max_memo: 10_000_000,
            max_string_len: 256 << 20,
            max_container_len: 10_000_000,
            max_depth: 256,
            max_nodes: 20_000_000,
            max_zip_entries: 1_000_000,
            max_decompressed: 4 << 30,
            max_total_decompressed: 64 << 30,
            max_ratio: 1_000,
            max_archive_depth: 4,
            allowed_classes: Vec::new(),
        }
    }
}
