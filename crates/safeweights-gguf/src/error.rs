//! The one error type of this crate.
#![forbid(unsafe_code)]

use std::fmt;

/// Where in the file a problem is, for messages that point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Place {
    /// The fixed header (magic, version, counts).
    Header,
    /// The name of the `index`-th key/value pair.
    KeyName {
        /// Position of the pair in the file, from 0.
        index: u64,
    },
    /// The value of a key.
    Value {
        /// The key.
        key: String,
    },
    /// The `index`-th tensor info, before its name is known.
    TensorInfo {
        /// Position of the tensor info in the file, from 0.
        index: u64,
    },
    /// A named tensor.
    Tensor {
        /// The tensor's name.
        name: String,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Header => f.write_str("the GGUF header"),
            Place::KeyName { index } => write!(f, "the name of key/value pair #{index}"),
            Place::Value { key } => write!(f, "the value of key {key:?}"),
            Place::TensorInfo { index } => write!(f, "tensor info #{index}"),
            Place::Tensor { name } => write!(f, "tensor {name:?}"),
        }
    }
}

/// Why a GGUF file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The file does not start with `GGUF`.
    BadMagic {
        /// The first four bytes (fewer when the file is shorter).
        found: Vec<u8>,
    },
    /// A version other than 2 or 3 (1 has narrower counts; a byte-swapped
    /// 2 or 3 is a big-endian file, which this reader does not read).
    UnsupportedVersion {
        /// The version as read little-endian.
        version: u32,
    },
    /// The file ends inside a structure.
    Truncated {
        /// What was being read.
        at: Place,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A count or length cannot fit in the bytes left, so it was not
    /// believed (nothing was allocated for it).
    CountTooLarge {
        /// What was being read.
        at: Place,
        /// The count in the file.
        count: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A string (key, value or tensor name) that is not UTF-8.
    InvalidUtf8 {
        /// Where the string is.
        at: Place,
    },
    /// A metadata value type outside 0..=12.
    UnknownValueType {
        /// The key.
        key: String,
        /// The type id in the file.
        type_id: u32,
    },
    /// A boolean byte other than 0 or 1.
    InvalidBool {
        /// The key.
        key: String,
        /// The byte in the file.
        byte: u8,
    },
    /// Arrays nested deeper than [`crate::MAX_ARRAY_DEPTH`].
    ArrayTooDeep {
        /// The key.
        key: String,
    },
    /// The same key twice.
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// `general.alignment` is not a `u32`.
    AlignmentType {
        /// The value type found (gguf's name, such as `STRING`).
        found: &'static str,
    },
    /// `general.alignment` is zero or not a power of two.
    BadAlignment {
        /// The value.
        alignment: u32,
    },
    /// A tensor name of 64 bytes or more (ggml's `GGML_MAX_NAME` holds 63
    /// and the terminating zero).
    TensorNameTooLong {
        /// The name.
        name: String,
    },
    /// The same tensor name twice.
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// More than 4 dimensions.
    TooManyDimensions {
        /// The tensor.
        tensor: String,
        /// The dimension count in the file.
        n_dims: u32,
    },
    /// A ggml type id this reader does not know.
    UnknownGgmlType {
        /// The tensor.
        tensor: String,
        /// The type id in the file.
        type_id: u32,
    },
    /// A row (the first, fastest-varying ggml dimension) that is not a
    /// whole number of quantization blocks.
    PartialBlock {
        /// The tensor.
        tensor: String,
        /// Its ggml type's name.
        ggml_type: &'static str,
        /// The row length in elements.
        row: u64,
        /// The type's block size in elements.
        block_size: u64,
    },
    /// Dimensions whose element count or byte size overflows (ggml counts
    /// in `i64`).
    SizeOverflow {
        /// The tensor.
        tensor: String,
    },
    /// A data offset that is not a multiple of the alignment.
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// Its offset in the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u32,
    },
    /// Two tensors whose bytes overlap.
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// A tensor whose bytes run past the end of the file.
    DataBeyondEnd {
        /// The tensor.
        tensor: String,
        /// Where its bytes end, from the start of the file.
        end: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The file cannot be opened or mapped.
    Io {
        /// The path.
        path: String,
        /// What went wrong, as the operating system says.
        kind: std::io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// [`crate::Gguf::tensor_bytes`] was asked for a name the file lacks.
    TensorNotFound {
        /// The name asked for.
        name: String,
    },
    /// No dequantization rule for this ggml type (`gguf.quants` has none
    /// either: Q8_1, Q8_K, NVFP4, Q1_0, the integer types and F64).
    NotDequantizable {
        /// The type's name.
        ggml_type: &'static str,
    },
    /// No quantization rule for this ggml type (`gguf.quants` quantizes to
    /// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 only).
    NotQuantizable {
        /// The type's name.
        ggml_type: &'static str,
    },
    /// Bytes that are not whole blocks, or a value buffer of the wrong size.
    QuantLength {
        /// The type's name.
        ggml_type: &'static str,
        /// Bytes given (or that the values would make).
        bytes: u64,
        /// Values given.
        values: u64,
    },
    /// The writer was given tensors out of declaration order, or of the
    /// wrong size, or finished before every declared tensor was written.
    WriteOrder {
        /// The tensor due next.
        expected: String,
        /// The tensor given (empty when finishing early).
        got: String,
        /// Bytes the due tensor holds.
        expected_bytes: u64,
        /// Bytes given.
        got_bytes: u64,
    },
    /// NaN or infinity, which a block type cannot hold.
    NonFinite {
        /// The type's name.
        ggml_type: &'static str,
        /// Index of the first such value.
        index: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMagic { found } => write!(f, "not a GGUF file: it starts with {found:02x?}, not \"GGUF\""),
            Error::UnsupportedVersion { version } => {
                if matches!(version.swap_bytes(), 2 | 3) {
                    write!(f, "big-endian GGUF (version {}) is not supported; convert it to little-endian", version.swap_bytes())
                } else {
                    write!(f, "GGUF version {version} is not supported (only 2 and 3); re-export the file with a current llama.cpp")
                }
            }
            Error::Truncated { at, needed, available } => write!(f, "truncated file: {at} needs {needed} bytes but only {available} are left"),
            Error::CountTooLarge { at, count, available } => write!(f, "corrupt file: {at} claims {count} items or bytes, more than the {available} bytes left could hold"),
            Error::InvalidUtf8 { at } => write!(f, "{at} is not valid UTF-8"),
            Error::UnknownValueType { key, type_id } => write!(f, "key {key:?} has unknown value type {type_id} (known: 0 to 12)"),
            Error::InvalidBool { key, byte } => write!(f, "key {key:?} holds the boolean byte {byte}, which is neither 0 nor 1"),
            Error::ArrayTooDeep { key } => write!(f, "key {key:?} nests arrays deeper than {} levels", crate::MAX_ARRAY_DEPTH),
            Error::DuplicateKey { key } => write!(f, "key {key:?} appears more than once"),
            Error::AlignmentType { found } => write!(f, "general.alignment must be a UINT32, not {found}"),
            Error::BadAlignment { alignment } => write!(f, "general.alignment {alignment} is not a power of two"),
            Error::TensorNameTooLong { name } => write!(f, "tensor name {name:?} is {} bytes long; ggml allows at most 63", name.len()),
            Error::DuplicateTensor { name } => write!(f, "tensor {name:?} appears more than once"),
            Error::TooManyDimensions { tensor, n_dims } => write!(f, "tensor {tensor:?} has {n_dims} dimensions; ggml allows at most 4"),
            Error::UnknownGgmlType { tensor, type_id } => write!(f, "tensor {tensor:?} has unknown ggml type {type_id}"),
            Error::PartialBlock { tensor, ggml_type, row, block_size } => write!(f, "tensor {tensor:?}: a {ggml_type} row of {row} elements is not a whole number of {block_size}-element blocks"),
            Error::SizeOverflow { tensor } => write!(f, "tensor {tensor:?} has dimensions whose size overflows"),
            Error::MisalignedTensor { tensor, offset, alignment } => write!(f, "tensor {tensor:?} starts at data offset {offset}, not a multiple of the alignment {alignment}"),
            Error::OverlappingTensors { first, second } => write!(f, "tensors {first:?} and {second:?} overlap"),
            Error::DataBeyondEnd { tensor, end, file_len } => write!(f, "tensor {tensor:?} ends at byte {end}, past the end of the {file_len}-byte file (truncated download?)"),
            Error::Io { path, message, .. } => write!(f, "cannot read {path}: {message}"),
            Error::TensorNotFound { name } => write!(f, "no tensor named {name:?}"),
            Error::NotDequantizable { ggml_type } => write!(f, "{ggml_type} tensors cannot be dequantized (gguf.quants has no rule for them either); keep them raw with --keep-quantized"),
            Error::NotQuantizable { ggml_type } => write!(f, "cannot quantize to {ggml_type}; choose f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1"),
            Error::QuantLength { ggml_type, bytes, values } => write!(f, "{bytes} bytes of {ggml_type} are not whole blocks holding {values} values"),
            Error::WriteOrder { expected, got, expected_bytes, got_bytes } => write!(f, "GGUF writer: tensor {expected:?} ({expected_bytes} bytes) is due, but got {got:?} ({got_bytes} bytes)"),
            Error::NonFinite { ggml_type, index } => write!(f, "value #{index} is NaN or infinite, which {ggml_type} cannot store; choose f32, f16 or bf16"),
        }
    }
}

impl std::error::Error for Error {}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
