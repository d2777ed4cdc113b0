//! One view over everything a command can read: a single file, a sharded
//! checkpoint (index file or directory), or a remote file over HTTP.

use std::borrow::Cow;
use std::path::Path;

use safeweights::read::{try_zeroed, Backend, OpenOptions, SafetensorsFile};
use safeweights::resolve::{resolve, Target};
use safeweights::shards::ShardedCheckpoint;
use safeweights::{Metadata, TensorEntry};

use crate::commands::Context;
use crate::exit::{CliError, CliResult};
use crate::parallel::PIECE_BYTES;
use crate::remote::RemoteFile;

/// An opened checkpoint.
#[derive(Debug)]
pub enum Checkpoint {
    /// A local file, index file or directory.
    Local(ShardedCheckpoint),
    /// A file read over HTTP Range requests.
    Remote(RemoteFile),
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

impl Checkpoint {
    /// Opens a URL, a directory, an index file or a single file, as the
    /// core's resolver tells them apart.
    pub fn open(arg: &str, ctx: &Context) -> CliResult<Self> {
        match resolve(arg)? {
            Target::Url(url) => {
                RemoteFile::open(&url, ctx.timeout, &ctx.limits).map(Checkpoint::Remote)
            }
            local => ShardedCheckpoint::open_target(local, &open_options(ctx))
                .map(Checkpoint::Local)
                .map_err(CliError::from),
        }
    }

    /// Opens a directory, an index file or a single file (never a URL).
    pub fn open_local(path: &Path, ctx: &Context) -> CliResult<Self> {
        ShardedCheckpoint::open_path(path, &open_options(ctx))
            .map(Checkpoint::Local)
            .map_err(CliError::from)
    }

    /// Every tensor, shard by shard, each shard in data-offset order.
    pub fn entries(&self) -> Vec<Entry<'_>> {
        self.iter_entries().collect()
    }

    /// The headers of the shards, in order (one for a single or remote file).
    fn headers(&self) -> impl Iterator<Item = &safeweights::Header> + Clone {
        let (local, remote) = match self {
            Checkpoint::Local(checkpoint) => (checkpoint.shards(), None),
            Checkpoint::Remote(remote) => (&[][..], Some(remote.header())),
        };
        local.iter().map(SafetensorsFile::header).chain(remote)
    }

    /// [`Checkpoint::entries`] without collecting them: a million-tensor
    /// file is walked with no per-tensor memory.
    pub fn iter_entries(&self) -> impl Iterator<Item = Entry<'_>> + Clone {
        self.headers()
            .enumerate()
            .flat_map(|(shard, header)| header.tensors().map(move |info| Entry { info, shard }))
    }

    /// Number of tensors in all shards.
    pub fn tensor_count(&self) -> usize {
        self.headers().map(safeweights::Header::len).sum()
    }

    /// Looks a tensor up by name.
    pub fn find(&self, name: &str) -> CliResult<Entry<'_>> {
        let not_found =
            || CliError::usage(format!("no tensor named {name:?} in {}", self.describe()));
        match self {
            Checkpoint::Local(checkpoint) => {
                let (file, info) = checkpoint.get(name).map_err(|_| not_found())?;
                let shard = checkpoint
                    .shards()
                    .iter()
                    .position(|s| std::ptr::eq(s, file))
                    .unwrap_or(0);
                Ok(Entry { info, shard })
            }
            Checkpoint::Remote(remote) => remote
                .header()
                .get(name)
                .map(|info| Entry { info, shard: 0 })
                .ok_or_else(not_found),
        }
    }

    /// The shard files of a local checkpoint (none for a remote file).
    pub fn local_shards(&self) -> &[SafetensorsFile] {
        match self {
            Checkpoint::Local(checkpoint) => checkpoint.shards(),
            Checkpoint::Remote(_) => &[],
        }
    }

    /// Number of shards (1 for a single or remote file).
    pub fn shard_count(&self) -> usize {
        match self {
            Checkpoint::Local(checkpoint) => checkpoint.shards().len(),
            Checkpoint::Remote(_) => 1,
        }
    }

    /// File name of a shard (the URL for a remote file).
    pub fn shard_name(&self, shard: usize) -> String {
        match self {
            Checkpoint::Local(checkpoint) => checkpoint
                .shards()
                .get(shard)
                .and_then(|s| s.path().file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Checkpoint::Remote(remote) => remote.url().to_owned(),
        }
    }

    /// Header length in bytes (without the 8-byte prefix) of each shard.
    pub fn header_sizes(&self) -> Vec<u64> {
        match self {
            Checkpoint::Local(checkpoint) => checkpoint
                .shards()
                .iter()
                .map(|s| s.header().header_len())
                .collect(),
            Checkpoint::Remote(remote) => vec![remote.header().header_len()],
        }
    }

    /// `__metadata__` (of the first shard for a sharded checkpoint).
    pub fn metadata(&self) -> Option<&Metadata> {
        match self {
            Checkpoint::Local(checkpoint) => checkpoint.metadata(),
            Checkpoint::Remote(remote) => remote.header().metadata(),
        }
    }

    /// `len` bytes of a tensor starting `offset` bytes into it: read with
    /// one `pread`, or fetched with one Range request.
    pub fn read(&self, entry: Entry<'_>, offset: u64, len: u64) -> CliResult<Cow<'_, [u8]>> {
        match self {
            Checkpoint::Local(checkpoint) => {
                let file = &checkpoint.shards()[entry.shard];
                let len = usize::try_from(len)
                    .map_err(|_| CliError::internal("a piece larger than the address space"))?;
                let mut buffer =
                    try_zeroed(len).map_err(|e| safeweights::Error::Io(e).in_file(file.path()))?;
                file.read_range(entry.info, offset, &mut buffer)?;
                Ok(Cow::Owned(buffer))
            }
            Checkpoint::Remote(remote) => remote
                .read_data(entry.info.begin + offset, len)
                .map(Cow::Owned),
        }
    }

    /// Reads a whole tensor in pieces of at most [`PIECE_BYTES`], in
    /// order, handing each to `f`; memory stays bounded whatever the
    /// tensor's size.
    pub fn for_each_piece(
        &self,
        entry: Entry<'_>,
        mut f: impl FnMut(&[u8]) -> CliResult<()>,
    ) -> CliResult<()> {
        let len = entry.info.end - entry.info.begin;
        let mut offset = 0;
        while offset < len {
            let step = PIECE_BYTES.min(len - offset);
            f(&self.read(entry, offset, step)?)?;
            offset += step;
        }
        Ok(())
    }

    /// The remote file, when this is one (for request statistics).
    pub fn remote(&self) -> Option<&RemoteFile> {
        match self {
            Checkpoint::Remote(remote) => Some(remote),
            Checkpoint::Local(_) => None,
        }
    }

    /// The HTTP request count and bytes received, as JSON, for remote files.
    pub fn http_json(&self) -> Option<serde_json::Value> {
        self.remote()
            .map(|r| serde_json::json!({ "requests": r.requests(), "bytes": r.bytes_received() }))
    }

    fn describe(&self) -> String {
        match self {
            Checkpoint::Local(_) if self.shard_count() == 1 => self.shard_name(0),
            Checkpoint::Local(_) => "the checkpoint".into(),
            Checkpoint::Remote(remote) => remote.url().to_owned(),
        }
    }
}
