//! Whole-object downloads into a temporary file, for readers that need a
//! whole local file (the pickle scanner and converter, zip and GGUF
//! readers): the object is streamed with one request, never held in
//! memory, and the file is removed when the returned handle is dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};
use crate::remote::config::RemoteOptions;
use crate::remote::object::{RemoteObject, RemoteStats};

/// Downloads `url` into a new temporary file (in the system's temporary
/// directory), refusing an object longer than `max_len` before anything
/// is fetched and a body longer than the object's announced length while
/// it streams, so the disk used stays bounded. `progress` is told the
/// bytes received so far and the object's length. The file is deleted when the handle is dropped, and on
/// any error.
pub fn fetch_to_temp(
    url: &str,
    remote: &RemoteOptions,
    max_len: u64,
    progress: impl FnMut(u64, u64),
) -> Result<NamedTempFile> {
    let temp = tempfile::Builder::new()
        .prefix("safeweights-fetch-")
        .tempfile()
        .map_err(|e| Error::Io(e).in_file(url))?;
    fetch_into(url, remote, max_len, temp, progress)
}

/// As [`fetch_to_temp`], but into `directory/name` (a shard beside its
/// index, which readers find by name): the file appears under that name
/// only once the whole object arrived.
pub fn fetch_to_dir(
    url: &str,
    directory: &Path,
    name: &str,
    remote: &RemoteOptions,
    max_len: u64,
    progress: impl FnMut(u64, u64),
) -> Result<PathBuf> {
    let destination = directory.join(name);
    let temp = tempfile::Builder::new()
        .prefix(".safeweights-fetch-")
        .tempfile_in(directory)
        .map_err(|e| Error::Io(e).in_file(directory))?;
    let fetched = fetch_into(url, remote, max_len, temp, progress)?;
    fetched
        .persist(&destination)
        .map_err(|e| Error::Io(e.error).in_file(&destination))?;
    Ok(destination)
}

fn fetch_into(
    url: &str,
    remote: &RemoteOptions,
    max_len: u64,
    mut temp: NamedTempFile,
    mut progress: impl FnMut(u64, u64),
) -> Result<NamedTempFile> {
    let stats = Arc::new(RemoteStats::default());
    let (object, _) = RemoteObject::open(url, Arc::new(remote.clone()), stats)?;
    if object.len() > max_len {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the object is {} bytes, over the {max_len}-byte limit for files read whole",
                object.len()
            ),
        ))
        .in_file(url));
    }
    let mut received = 0u64;
    object.stream(|chunk| {
        received += chunk.len() as u64;
        if received > object.len() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the server sent more bytes than the object's length",
            ))
            .in_file(url));
        }
        temp.write_all(chunk)
            .map_err(|e| Error::Io(e).in_file(temp.path()))?;
        progress(received, object.len());
        Ok(())
    })?;
    temp.flush()
        .map_err(|e| Error::Io(e).in_file(temp.path()))?;
    Ok(temp)
}
