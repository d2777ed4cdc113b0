//! Writing: whole files from memory, or streamed tensor by tensor.

mod atomic;
pub(crate) mod inflight;
mod json;
mod layout;
mod serialize;
mod stream;

pub use inflight::{
    interruptible, is_temporary_file_name, remove_temporary_files_for_exit, temporary_file_in_use,
};
pub use layout::{Layout, TensorSpec, WriteOptions};
pub use serialize::{
    serialize, serialize_into, serialize_to_file, serialize_to_file_with_checksums,
    serialize_to_writer, TensorRef,
};
pub use stream::StreamingWriter;

pub use atomic::AtomicFile;
pub(crate) use atomic::{sync_directory, write_all_at};
pub(crate) use json::header_json;
pub(crate) use layout::pad_header;
