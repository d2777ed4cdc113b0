//! Writing objects by multipart upload: memory bounded by the part size
//! times the parts in flight, and an object that exists only once the
//! upload completes. An upload dropped or failed before `finish` is
//! aborted, so it leaves nothing behind.

use std::io::Read;
use std::path::Path;

use object_store::WriteMultipart;

use crate::error::{Error, RemoteErrorKind, Result};
use crate::format::{HeaderLimits, Metadata};
use crate::read::file::read_header;
use crate::remote::config::{locate, Located, RemoteOptions};
use crate::remote::errors::classify;
use crate::remote::object::{RemoteObject, RemoteStats};
use crate::remote::runtime::block_on;
use crate::write::{serialize_to_writer, TensorRef, WriteOptions};
use crate::write::{write_all_at, AtomicFile};
use std::sync::Arc;

/// An object being written to S3 by multipart upload; a `std::io::Write`.
pub struct RemoteWriter {
    url: String,
    upload: Option<WriteMultipart>,
    max_in_flight: usize,
    written: u64,
}

impl std::fmt::Debug for RemoteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriter")
            .field("url", &self.url)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl RemoteWriter {
    /// Starts a multipart upload to `url` (an `s3://` URL).
    pub fn create(url: &str, options: &RemoteOptions) -> Result<Self> {
        if !url.to_ascii_lowercase().starts_with("s3://") {
            return Err(Error::Remote {
                kind: RemoteErrorKind::Config,
                message: format!("{url}: only s3:// URLs can be written"),
            });
        }
        let Located { store, path } = locate(url, options)?;
        let part_size = options.part_size.max(5 << 20);
        let upload = block_on(async { store.put_multipart(&path).await })
            .map_err(|e| classify(e).in_file(url))?;
        Ok(RemoteWriter {
            url: url.to_owned(),
            upload: Some(WriteMultipart::new_with_chunk_size(upload, part_size)),
            max_in_flight: options.max_in_flight.max(1),
            written: 0,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the upload: the object appears, whole, now.
    pub fn finish(mut self) -> Result<u64> {
        let upload = self.upload.as_mut().ok_or_else(|| finished(&self.url))?;
        // Wait for every part first: a failed part is an error while the
        // upload is still ours to abort (`finish` would consume it).
        block_on(upload.wait_for_capacity(0)).map_err(|e| classify(e).in_file(&self.url))?;
        let upload = self.upload.take().ok_or_else(|| finished(&self.url))?;
        block_on(upload.finish()).map_err(|e| classify(e).in_file(&self.url))?;
        Ok(self.written)
    }

    /// Aborts the upload: no object is created, and the parts sent so far
    /// are discarded by the server.
    pub fn abort(mut self) -> Result<()> {
        match self.upload.take() {
            Some(upload) => block_on(upload.abort()).map_err(|e| classify(e).in_file(&self.url)),
            None => Ok(()),
        }
    }
}

impl std::io::Write for RemoteWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let max_in_flight = self.max_in_flight;
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| std::io::Error::other(finished(&self.url)))?;
        // Waiting for a free slot first bounds memory: at most
        // `max_in_flight` parts in flight plus the one being filled. Parts
        // are spawned on the runtime, so `write` runs inside it.
        block_on(async {
            upload.wait_for_capacity(max_in_flight).await?;
            upload.write(buf);
            Ok::<_, object_store::Error>(())
        })
        .map_err(|e| std::io::Error::other(classify(e).in_file(&self.url)))?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            // Not finished: an error or a panic unwound past the writer.
            // Abort so the parts do not linger; nothing is visible either
            // way, since only `finish` creates the object.
            if let Err(error) = block_on(upload.abort()) {
                eprintln!(
                    "safeweights: warning: {}: aborting the upload failed: {error}",
                    self.url
                );
            }
        }
    }
}

fn finished(url: &str) -> Error {
    Error::Remote {
        kind: RemoteErrorKind::Other,
        message: format!("{url}: the upload was already completed or aborted"),
    }
}

/// Serializes tensors to `url` by multipart upload: the object appears
/// only when the whole file is written, and a failure leaves nothing.
pub fn serialize_to_url<S: AsRef<str>>(
    tensors: &[(S, TensorRef<'_>)],
    metadata: Option<&Metadata>,
    options: &WriteOptions,
    url: &str,
    remote: &RemoteOptions,
) -> Result<u64> {
    let mut writer = RemoteWriter::create(url, remote)?;
    serialize_to_writer(tensors, metadata, options, &mut writer).map_err(unwrap_io)?;
    writer.finish()
}

/// Downloads `url` to `destination` in one streaming request, through a
/// temporary file that is renamed into place only once the whole object
/// arrived and its safetensors header is valid (so a failure leaves the
/// destination as it was). `progress` is told each piece's length.
pub fn download_file(
    url: &str,
    destination: &Path,
    remote: &RemoteOptions,
    sync: bool,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let stats = Arc::new(RemoteStats::default());
    let (object, _) = RemoteObject::open(url, Arc::new(remote.clone()), stats)?;
    let atomic = AtomicFile::create(destination)?;
    let mut offset = 0u64;
    object.stream(|chunk| {
        write_all_at(atomic.file(), chunk, offset)
            .map_err(|e| Error::Io(e).in_file(destination))?;
        offset += chunk.len() as u64;
        progress(chunk.len() as u64);
        Ok(())
    })?;
    read_header(atomic.file(), offset, &HeaderLimits::default()).map_err(|e| e.in_file(url))?;
    atomic.commit(sync)?;
    Ok(offset)
}

/// Copies one object to another (`s3://` destination), streaming: memory
/// stays bounded by the upload's parts.
pub fn copy_object(
    source: &str,
    destination: &str,
    remote: &RemoteOptions,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let stats = Arc::new(RemoteStats::default());
    let (object, _) = RemoteObject::open(source, Arc::new(remote.clone()), stats)?;
    let mut writer = RemoteWriter::create(destination, remote)?;
    object.stream(|chunk| {
        std::io::Write::write_all(&mut writer, chunk).map_err(unwrap_io)?;
        progress(chunk.len() as u64);
        Ok(())
    })?;
    writer.finish()
}

/// Uploads a local file to `url`; returns its length.
pub fn upload_file(
    local: &Path,
    url: &str,
    options: &RemoteOptions,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let mut file = std::fs::File::open(local).map_err(|e| Error::Io(e).in_file(local))?;
    let mut writer = RemoteWriter::create(url, options)?;
    let mut buffer = vec![0u8; options.part_size.clamp(1 << 20, 64 << 20)];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Error::Io(e).in_file(local))?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut writer, &buffer[..n]).map_err(unwrap_io)?;
        progress(n as u64);
    }
    writer.finish()
}

/// Our own errors travel through `std::io::Write` wrapped in an
/// `io::Error`; take them out again.
pub fn unwrap_io(error: std::io::Error) -> Error {
    if error.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        match error.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::Io(std::io::Error::other(other)),
            None => Error::Io(std::io::ErrorKind::Other.into()),
        }
    } else {
        Error::Io(error)
    }
}
