//! Files in object storage and behind HTTP(S): `s3://bucket/key`,
//! `http://` and `https://` URLs, read by byte ranges and written by
//! multipart upload (feature `remote`).
//!
//! Everything goes through [`crate::resolve`]: a URL resolves to
//! [`Target::Url`](crate::resolve::Target::Url), and
//! [`ShardedCheckpoint::open_target`](crate::shards::ShardedCheckpoint::open_target)
//! opens it here, as a single file or a sharded checkpoint's index, told
//! apart by content as local files are.
//!
//! - Opening costs one request for the first 64 KiB, which holds the header
//!   of most files (and tells an index from a safetensors file); a larger
//!   header takes a second request for the rest.
//! - A tensor, a slice, or a set of tensors fetches only its byte ranges:
//!   ranges closer than [`RemoteOptions::coalesce_gap`] merge, long ones
//!   split into [`RemoteOptions::request_size`] requests (larger ones, up to
//!   64 MiB, for a long read), and at most
//!   [`RemoteOptions::max_in_flight`] run at once. Each response body is
//!   copied once, as it arrives, from the connection's buffers to its
//!   place in the destination.
//! - Transient failures (5xx, timeouts, broken connections) are retried
//!   with exponential backoff; 403 and 404 are not. Every request has a
//!   timeout, so nothing hangs. Errors are [`Error::Remote`] with a
//!   [`RemoteErrorKind`](crate::RemoteErrorKind).
//! - A server that ignores Range (answers 200 with the whole file) is read
//!   by one streaming download into a temporary file, with a warning.
//! - Reads after the first check the object's ETag (`If-Match`), so a file
//!   replaced while it is read is an error, never a mix of two files.

mod config;
mod errors;
mod fetch;
mod list;
mod object;
mod open;
mod runtime;
mod write;

pub use config::RemoteOptions;
pub use fetch::{fetch_to_dir, fetch_to_temp};
pub use list::{list_directory, object_exists};
pub use object::{RemoteObject, RemoteStats};
pub(crate) use open::gather_remote;
pub use open::{checkpoint_url, open_checkpoint, open_file};
pub use write::{
    copy_object, download_file, serialize_to_url, unwrap_io, upload_file, RemoteWriter,
};
