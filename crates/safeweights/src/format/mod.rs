//! On-disk structures: dtypes, the header, and the rules a file must follow.

pub mod dtype;
pub mod header;
mod json;
mod parse;
pub mod sniff;
mod table;
mod validate;

pub use dtype::Dtype;
pub use header::{
    Header, HeaderLimits, Metadata, SortedNames, TensorInfo, DEFAULT_MAX_HEADER_SIZE, PREFIX_LEN,
};
pub use parse::METADATA_KEY;
pub use table::{TensorEntry, Tensors};
