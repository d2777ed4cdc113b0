//! The one resolver: what a path or URL given by a user names. The CLI,
//! the Python package and [`ShardedCheckpoint`](crate::shards::ShardedCheckpoint)
//! all ask it, so a file, a directory, an index file and a URL are told
//! apart the same way everywhere: by content and by directory listing,
//! never by a file's extension.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::sniff::{sniff, FileKind, SNIFF_LEN};

/// What a path or URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// An `s3://`, `http://` or `https://` URL: one file or an index,
    /// which the remote reader tells apart by content as here.
    Url(String),
    /// One file, read as safetensors (the reader says what it is otherwise).
    File(PathBuf),
    /// A sharded checkpoint's index file (`model.safetensors.index.json`).
    Index(PathBuf),
}

/// The URL schemes the remote reader understands.
pub const URL_SCHEMES: [&str; 3] = ["s3://", "http://", "https://"];

/// Whether `arg` is an `s3://`, `http://` or `https://` URL.
pub fn is_url(arg: &str) -> bool {
    let lower = arg.to_ascii_lowercase();
    URL_SCHEMES.iter().any(|scheme| lower.starts_with(scheme))
}

/// Resolves a command-line argument: a URL, else a path (see [`resolve_path`]).
pub fn resolve(arg: &str) -> Result<Target> {
    if is_url(arg) {
        return Ok(Target::Url(arg.to_owned()));
    }
    resolve_path(Path::new(arg))
}

/// Resolves a local path:
///
/// - a directory holding one `*.safetensors.index.json` is that index; one
///   holding no index and one `*.safetensors` file is that file; any other
///   directory is [`Error::CheckpointDirectory`];
/// - a file whose content is JSON text (and not safetensors) is an index;
/// - any other file is a file, which the reader then validates or names
///   as the foreign format it is.
pub fn resolve_path(path: &Path) -> Result<Target> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::Io(e).in_file(path))?;
    if metadata.is_dir() {
        return resolve_directory(path);
    }
    let prefix = read_prefix(path).map_err(|e| Error::Io(e).in_file(path))?;
    if is_index_text(&prefix) {
        Ok(Target::Index(path.to_owned()))
    } else {
        Ok(Target::File(path.to_owned()))
    }
}

/// JSON text that is not a safetensors file: an index starts with `{`,
/// which a safetensors file does only when its header length's low byte is
/// 123; the sniffer then recognises it by its plausible header.
pub fn is_index_text(prefix: &[u8]) -> bool {
    sniff(prefix) == FileKind::Unknown && prefix.trim_ascii_start().starts_with(b"{")
}

fn read_prefix(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(SNIFF_LEN);
    File::open(path)?
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut prefix)?;
    Ok(prefix)
}

fn resolve_directory(directory: &Path) -> Result<Target> {
    let entries = std::fs::read_dir(directory).map_err(|e| Error::Io(e).in_file(directory))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io(e).in_file(directory))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    let (name, is_index) = checkpoint_in_directory(&names).map_err(|e| e.in_file(directory))?;
    let path = directory.join(name);
    Ok(if is_index {
        Target::Index(path)
    } else {
        Target::File(path)
    })
}

/// Which of a directory's file `names` is its checkpoint, and whether it
/// is an index: the one `*.safetensors.index.json`, or with no index the
/// one `*.safetensors` file. Anything else is
/// [`Error::CheckpointDirectory`]. The rule for local directories and
/// for prefixes in a bucket alike.
pub fn checkpoint_in_directory(names: &[String]) -> Result<(&str, bool)> {
    let mut indexes: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.ends_with(".safetensors.index.json"))
        .collect();
    let mut singles: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    indexes.sort_unstable();
    singles.sort_unstable();
    match (indexes.as_slice(), singles.as_slice()) {
        ([index], _) => Ok((*index, true)),
        ([], [single]) => Ok((*single, false)),
        _ => Err(Error::CheckpointDirectory {
            index_files: indexes.len(),
            safetensors_files: singles.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_case_insensitively() {
        assert!(is_url("https://host/m.safetensors"));
        assert!(is_url("HTTP://host/m.safetensors"));
        assert!(!is_url("model.safetensors"));
        assert!(!is_url("ftp://host/m"));
        assert!(is_url("s3://bucket/key.safetensors"));
        assert_eq!(
            resolve("https://h/x").unwrap(),
            Target::Url("https://h/x".into())
        );
    }

    #[test]
    fn index_text_is_json_that_is_not_safetensors() {
        assert!(is_index_text(b"  {\"weight_map\": {}}"));
        assert!(!is_index_text(b"\x7b\x00\x00\x00\x00\x00\x00\x00{\"a\":1}"));
        assert!(!is_index_text(b"PK\x03\x04"));
    }
}
