//! One view over everything a command can read: a single file or a sharded
//! checkpoint (index file or directory), local or remote (`s3://`,
//! `http(s)://`); the core's resolver and remote reader tell them apart.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use safeweights::read::{try_zeroed, Backend, OpenOptions, SafetensorsFile};
use safeweights::remote::{fetch_to_temp, open_checkpoint, RemoteOptions, RemoteStats};
use safeweights::resolve::{is_url, resolve, Target};
use safeweights::shards::ShardedCheckpoint;
use safeweights::{Metadata, TensorEntry};

use crate::commands::Context;
use crate::exit::{CliError, CliResult};
use crate::output::fetch_progress;
use crate::parallel::PIECE_BYTES;

/// Largest object that `scan` and `convert` download whole (into a
/// temporary file): the total size the pickle readers accept for the
/// decompressed members of one archive.
pub fn max_fetch_bytes() -> u64 {
    safeweights_pickle::Limits::default().max_total_decompressed
}

/// Downloads a URL whole into a temporary file, deleted when the returned
/// handle drops, for the readers that need a local file (pickle, zip,
/// npz, GGUF). The progress bar says the bytes fetched.
pub fn fetch_whole(url: &str, ctx: &Context) -> CliResult<tempfile::NamedTempFile> {
    with_download_bar(|progress| {
        fetch_to_temp(url, &remote_options(ctx), max_fetch_bytes(), progress)
    })
}

/// Runs a whole-object download, `fetch(progress)`, under a progress bar
/// of the bytes fetched, cleared when it ends.
pub fn with_download_bar<T>(
    fetch: impl FnOnce(&mut dyn FnMut(u64, u64)) -> safeweights::Result<T>,
) -> CliResult<T> {
    let bar = fetch_progress(0, "downloading");
    let fetched = fetch(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    Ok(fetched?)
}

/// An opened checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    inner: ShardedCheckpoint,
    /// The URL it was opened from, for a remote checkpoint.
    url: Option<String>,
}

/// A tensor of a checkpoint: its header entry and the shard holding it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Header entry (offsets are relative to its shard's data section).
    pub info: TensorEntry<'a>,
    /// Index of the shard, see [`Checkpoint::shard_name`].
    pub shard: usize,
}

/// Local files are read with positioned reads (`pread`), never mapped: a
/// file truncated while a command streams it is then an error naming it,
/// where a map would kill the process with `SIGBUS`; and opening reads only
/// the header, so nothing is mapped under an address-space limit.
fn open_options(ctx: &Context) -> OpenOptions {
    OpenOptions {
        backend: Backend::Pread,
        limits: ctx.limits,
    }
}

/// Remote reads with the command's `--timeout`.
pub fn remote_options(ctx: &Context) -> RemoteOptions {
    RemoteOptions {
        timeout: ctx.timeout,
        ..RemoteOptions::default()
    }
}

impl Checkpoint {
    /// Opens a URL, a directory, an index file or a single file, as the
    /// core's resolver tells them apart.
    pub fn open(arg: &str, ctx: &Context) -> CliResult<Self> {
        match resolve(arg)? {
            Target::Url(url) => {
                let inner = open_checkpoint(&url, &open_options(ctx), &remote_options(ctx))?;
                Ok(Checkpoint {
                    inner,
                    url: Some(url),
                })
            }
            local => Ok(Checkpoint {
                inner: ShardedCheckpoint::open_target(local, &open_options(ctx))?,
                url: None,
            }),
        }
    }

    /// Opens a path argument, which may be a URL too.
    pub fn open_path(path: &Path, ctx: &Context) -> CliResult<Self> {
        match path.to_str() {
            Some(text) if is_url(text) => Self::open(text, ctx),
            _ => Ok(Checkpoint {
                inner: ShardedCheckpoint::open_path(path, &open_options(ctx))?,
                url: None,
            }),
        }
    }

    /// As [`Checkpoint::open`], but a local GGUF file is first dequantized
    /// (bit for bit as `gguf.quants`) into a temporary safetensors file,
    /// unlinked as soon as it is open, so that `diff` and `stats` compare
    /// and summarise its values.
    pub fn open_dequantized(arg: &str, ctx: &Context) -> CliResult<Self> {
        let path = Path::new(arg);
        if is_url(arg) || !crate::gguf::is_gguf(path) {
            return Checkpoint::open(arg, ctx);
        }
        let temp = crate::gguf::dequantized_copy(path, ctx.sync)?;
        let opened = ShardedCheckpoint::open_path(&temp, &open_options(ctx));
        // Open (by descriptor) or not, the file is no longer needed by name.
        std::fs::remove_file(&temp).ok();
        Ok(Checkpoint {
            inner: opened?,
            url: None,
        })
    }

    /// Every tensor, shard by shard, each shard in data-offset order.
    pub fn entries(&self) -> Vec<Entry<'_>> {
        self.iter_entries().collect()
    }

    /// [`Checkpoint::entries`] without collecting them: a million-tensor
    /// file is walked with no per-tensor memory.
    pub fn iter_entries(&self) -> impl Iterator<Item = Entry<'_>> + Clone {
        self.inner
            .shards()
            .iter()
            .enumerate()
            .flat_map(|(shard, file)| {
                file.header()
                    .tensors()
                    .map(move |info| Entry { info, shard })
            })
    }

    /// Number of tensors in all shards.
    pub fn tensor_count(&self) -> usize {
        self.inner.shards().iter().map(|s| s.header().len()).sum()
    }

    /// Looks a tensor up by name.
    pub fn find(&self, name: &str) -> CliResult<Entry<'_>> {
        let (file, info) = self.inner.get(name).map_err(|_| {
            CliError::usage(format!("no tensor named {name:?} in {}", self.describe()))
        })?;
        let shard = self
            .inner
            .shards()
            .iter()
            .position(|s| std::ptr::eq(s, file))
            .unwrap_or(0);
        Ok(Entry { info, shard })
    }

    /// The checkpoint as the core opened it.
    pub fn sharded(&self) -> &ShardedCheckpoint {
        &self.inner
    }

    /// The shard files (local or remote).
    pub fn shards(&self) -> &[SafetensorsFile] {
        self.inner.shards()
    }

    /// Whether the checkpoint is read over the network.
    pub fn is_remote(&self) -> bool {
        self.url.is_some()
    }

    /// Number of shards (1 for a single file).
    pub fn shard_count(&self) -> usize {
        self.inner.shards().len()
    }

    /// File name of a shard (the URL for a remote single file).
    pub fn shard_name(&self, shard: usize) -> String {
        if let (Some(url), 1) = (&self.url, self.shard_count()) {
            return url.clone();
        }
        self.inner
            .shards()
            .get(shard)
            .and_then(|s| s.path().file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Header length in bytes (without the 8-byte prefix) of each shard.
    pub fn header_sizes(&self) -> Vec<u64> {
        self.inner
            .shards()
            .iter()
            .map(|s| s.header().header_len())
            .collect()
    }

    /// `__metadata__` (of the first shard for a sharded checkpoint).
    pub fn metadata(&self) -> Option<&Metadata> {
        self.inner.metadata()
    }

    /// `len` bytes of a tensor starting `offset` bytes into it: one
    /// `pread`, or ranged requests.
    pub fn read(&self, entry: Entry<'_>, offset: u64, len: u64) -> CliResult<Cow<'_, [u8]>> {
        let file = &self.inner.shards()[entry.shard];
        let len = usize::try_from(len)
            .map_err(|_| CliError::internal("a piece larger than the address space"))?;
        let mut buffer =
            try_zeroed(len).map_err(|e| safeweights::Error::Io(e).in_file(file.path()))?;
        file.read_range(entry.info, offset, &mut buffer)?;
        Ok(Cow::Owned(buffer))
    }

    /// Reads a whole tensor in pieces of at most [`PIECE_BYTES`], in
    /// order, handing each to `f`; memory stays bounded whatever the
    /// tensor's size.
    pub fn for_each_piece(
        &self,
        entry: Entry<'_>,
        f: impl FnMut(&[u8]) -> CliResult<()>,
    ) -> CliResult<()> {
        self.for_each_piece_with(entry, |_| {}, f)
    }

    /// [`Checkpoint::for_each_piece`] that calls `before(offset)` before
    /// reading the piece at `offset` (to hint the reads that follow, see
    /// [`ReadAhead`](crate::parallel::ReadAhead)). One buffer serves every
    /// piece of the tensor.
    pub fn for_each_piece_with(
        &self,
        entry: Entry<'_>,
        mut before: impl FnMut(u64),
        mut f: impl FnMut(&[u8]) -> CliResult<()>,
    ) -> CliResult<()> {
        let len = entry.info.end - entry.info.begin;
        if self.is_remote() {
            // Ranged requests: each piece comes back in its own buffer.
            let mut offset = 0;
            while offset < len {
                let step = PIECE_BYTES.min(len - offset);
                before(offset);
                f(&self.read(entry, offset, step)?)?;
                offset += step;
            }
            return Ok(());
        }
        let file = &self.inner.shards()[entry.shard];
        let mut buffer = try_zeroed(PIECE_BYTES.min(len) as usize)
            .map_err(|e| safeweights::Error::Io(e).in_file(file.path()))?;
        let mut offset = 0;
        while offset < len {
            let step = PIECE_BYTES.min(len - offset) as usize;
            before(offset);
            file.read_range(entry.info, offset, &mut buffer[..step])?;
            f(&buffer[..step])?;
            offset += step as u64;
        }
        Ok(())
    }

    /// Asks the kernel to start reading `len` bytes of a tensor, `offset`
    /// bytes into it, without waiting for them; nothing for remote files.
    pub fn advise_will_need(&self, entry: Entry<'_>, offset: u64, len: u64) {
        self.inner.shards()[entry.shard].advise_will_need(entry.info, offset, len);
    }

    /// A byte-counting progress bar for reading this checkpoint; of a
    /// remote one it says the bytes fetched.
    pub fn progress(&self, total_bytes: u64, message: &str) -> indicatif::ProgressBar {
        if self.is_remote() {
            fetch_progress(total_bytes, message)
        } else {
            crate::output::progress(total_bytes, message)
        }
    }

    /// Requests made and bytes fetched, for a remote checkpoint (every
    /// shard shares the counters).
    pub fn remote_stats(&self) -> Option<&Arc<RemoteStats>> {
        self.url.as_ref()?;
        self.inner
            .shards()
            .first()
            .and_then(|s| s.remote())
            .map(|r| r.stats())
    }

    /// The request count and bytes received, as JSON, for remote files.
    pub fn http_json(&self) -> Option<serde_json::Value> {
        self.remote_stats()
            .map(|r| serde_json::json!({ "requests": r.requests(), "bytes": r.bytes() }))
    }

    fn describe(&self) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None if self.shard_count() == 1 => self.shard_name(0),
            None => "the checkpoint".into(),
        }
    }
}
