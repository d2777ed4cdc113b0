//! Opening remote safetensors files and sharded checkpoints.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, RemoteErrorKind, Result};
use crate::format::header::foreign_or;
use crate::format::sniff::SNIFF_LEN;
use crate::format::{Header, HeaderLimits, TensorEntry, PREFIX_LEN};
use crate::read::{OpenOptions, SafetensorsFile};
use crate::remote::config::RemoteOptions;
use crate::remote::list::list_directory;
use crate::remote::object::{RemoteObject, RemoteStats};
use crate::resolve::{checkpoint_in_directory, is_index_text};
use crate::shards::{assemble_shards, ShardIndex, ShardedCheckpoint};
use crate::slice::{for_each_run, output_len, Selection};

/// An index file is JSON text of a few hundred kilobytes at most; this
/// bounds what a hostile server can make us hold.
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// Opens one remote safetensors file: one request when its header fits the
/// first read, two otherwise.
pub fn open_file(
    url: &str,
    options: &OpenOptions,
    remote: &RemoteOptions,
) -> Result<SafetensorsFile> {
    let stats = Arc::new(RemoteStats::default());
    let (object, first) = RemoteObject::open(url, Arc::new(remote.clone()), stats)?;
    file_from_first_read(object, &first, &options.limits)
}

/// Opens what a URL names: a safetensors file, or a sharded checkpoint's
/// index (told apart by content, as [`crate::resolve`] does for local
/// files), whose shards are then opened beside it, concurrently; or, for
/// `s3://`, a prefix holding a checkpoint (a "directory": the URL ends
/// with `/`, or names no object but has objects under it), whose index
/// or single file is chosen as for a local directory
/// ([`checkpoint_in_directory`]).
pub fn open_checkpoint(
    url: &str,
    options: &OpenOptions,
    remote: &RemoteOptions,
) -> Result<ShardedCheckpoint> {
    if url.ends_with('/') {
        return open_checkpoint(&checkpoint_url(url, remote)?, options, remote);
    }
    let stats = Arc::new(RemoteStats::default());
    let opened = RemoteObject::open(url, Arc::new(remote.clone()), stats);
    let (object, first) = match opened {
        Err(error) if names_no_object(&error) && is_s3(url) => {
            let directory = format!("{url}/");
            return match list_directory(&directory, remote) {
                Ok(names) if !names.is_empty() => open_checkpoint(&directory, options, remote),
                _ => Err(error),
            };
        }
        other => other?,
    };
    if !is_index_text(&first[..first.len().min(SNIFF_LEN)]) {
        return ShardedCheckpoint::single(file_from_first_read(object, &first, &options.limits)?);
    }
    let index = read_index(&object, &first).map_err(|e| e.in_file(url))?;
    let names: Vec<String> = index.shard_files().into_iter().map(str::to_owned).collect();
    let mut opened = open_siblings(&object, &names, &options.limits)?.into_iter();
    let shards = assemble_shards(
        index,
        |_| {
            opened.next().ok_or_else(|| Error::Shard {
                reason: "shard list changed while opening".into(),
            })
        },
        SafetensorsFile::header,
    )
    .map_err(|e| e.in_file(url))?;
    Ok(ShardedCheckpoint::from_opened(shards))
}

/// The URL of the checkpoint in the prefix `directory` (ending in `/`).
pub fn checkpoint_url(directory: &str, remote: &RemoteOptions) -> Result<String> {
    let names = list_directory(directory, remote)?;
    let (name, _) = checkpoint_in_directory(&names).map_err(|e| e.in_file(directory))?;
    Ok(format!("{directory}{name}"))
}

fn names_no_object(error: &Error) -> bool {
    matches!(
        error.kind(),
        Error::Remote {
            kind: RemoteErrorKind::NotFound,
            ..
        }
    )
}

fn is_s3(url: &str) -> bool {
    url.to_ascii_lowercase().starts_with("s3://")
}

fn read_index(object: &RemoteObject, first: &[u8]) -> Result<ShardIndex> {
    if object.len() > MAX_INDEX_BYTES {
        return Err(Error::Shard {
            reason: format!(
                "index file of {} bytes is over the {MAX_INDEX_BYTES}-byte limit",
                object.len()
            ),
        });
    }
    let text = if first.len() as u64 >= object.len() {
        first.to_vec()
    } else {
        let mut text = first.to_vec();
        text.extend(object.read_vec(first.len() as u64, object.len() - first.len() as u64)?);
        text
    };
    let text = String::from_utf8(text).map_err(|_| Error::Shard {
        reason: "the index file is not UTF-8 text".into(),
    })?;
    ShardIndex::from_json(&text)
}

/// Opens the shards beside an index, a few at a time.
fn open_siblings(
    index: &RemoteObject,
    names: &[String],
    limits: &HeaderLimits,
) -> Result<Vec<SafetensorsFile>> {
    let open_one = |name: &String| {
        index
            .sibling(name)
            .and_then(|(object, first)| file_from_first_read(object, &first, limits))
    };
    let mut files = Vec::with_capacity(names.len());
    for group in names.chunks(8) {
        let results: Vec<Result<SafetensorsFile>> = std::thread::scope(|scope| {
            let handles: Vec<_> = group
                .iter()
                .map(|name| scope.spawn(move || open_one(name)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::WorkerPanicked {
                            message: "opening a remote shard".into(),
                        })
                    })
                })
                .collect()
        });
        for result in results {
            files.push(result?);
        }
    }
    Ok(files)
}

/// Parses the header from the first read, fetching the rest of it when it
/// is longer.
fn file_from_first_read(
    object: RemoteObject,
    first: &Bytes,
    limits: &HeaderLimits,
) -> Result<SafetensorsFile> {
    let url = object.url().to_owned();
    let header = (|| {
        let len = Header::read_header_len(first, object.len(), limits)?;
        let header_end = PREFIX_LEN as u64 + len;
        let json = if header_end <= first.len() as u64 {
            first[PREFIX_LEN..header_end as usize].to_vec()
        } else {
            let mut json = first[PREFIX_LEN..].to_vec();
            let missing = header_end - first.len() as u64;
            json.extend(object.read_vec(first.len() as u64, missing)?);
            json
        };
        Header::parse(&json, object.len() - header_end).map_err(|e| foreign_or(e, first))
    })()
    .map_err(|e| e.in_file(&url))?;
    Ok(SafetensorsFile::from_remote(object, header))
}

/// The bytes of a slice of a remote tensor whose data starts at absolute
/// offset `start`: every run of the slice is one target of one coalesced
/// batch of requests, so only the selected rows (and gaps shorter than the
/// coalescing distance) are fetched.
pub(crate) fn gather_remote(
    object: &RemoteObject,
    start: u64,
    info: TensorEntry<'_>,
    selection: &Selection,
) -> Result<Vec<u8>> {
    let (name, dtype, shape) = (&info.name, info.dtype, &info.shape);
    let mut out = crate::read::try_zeroed(output_len(name, dtype, shape, selection)?)?;
    let mut runs = Vec::new();
    for_each_run(name, dtype, shape, selection, |offset, len| {
        runs.push((offset, len));
        Ok(())
    })?;
    let mut targets = Vec::with_capacity(runs.len());
    let mut rest = &mut out[..];
    for (offset, len) in runs {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        targets.push((start + offset as u64, head));
        rest = tail;
    }
    object.read_into(&mut targets)?;
    selection.finish(name, dtype, &mut out)?;
    Ok(out)
}
