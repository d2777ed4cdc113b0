//! Replacing a sharded checkpoint so that a crash at any point leaves the
//! complete old checkpoint, the complete new one, or a state every loader
//! refuses, never a silent mix.
//!
//! The new shards are written beside the old ones under names the live
//! index does not use; the index is then renamed over the old one, which
//! switches readers from one complete set to the other in one step; only
//! then are the old shards removed. Every shard and the index carry one
//! checkpoint id ([`CHECKPOINT_ID_KEY`]), checked on load, so a mix made
//! by anything else (a copy, an older writer, a hand edit) is refused too.
//!
//! Why not a staging directory swapped in with `renameat2(RENAME_EXCHANGE)`:
//! both switch with one rename (the switch itself measured the same, a few
//! microseconds), but the exchange swaps the whole directory, so files
//! that are not part of the checkpoint (`config.json`, tokenizers, logs)
//! would have to be copied across racily; it also changes the directory's
//! inode under processes working in it, and is Linux-only and unsupported
//! on some filesystems (NFS, older overlayfs). Renaming one index works on
//! every filesystem and leaves everything else in the directory alone.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::Metadata;
use crate::read::{Backend, OpenOptions, SafetensorsFile};
use crate::shards::{shard_file_name, ShardIndex};
use crate::write::inflight::{track, untrack};
use crate::write::sync_directory;

/// The key, in the index's `metadata` and in each shard's `__metadata__`,
/// holding the id of the save that wrote them.
pub const CHECKPOINT_ID_KEY: &str = "safeweights.checkpoint_id";

/// A fresh random checkpoint id: 32 hexadecimal digits.
pub fn new_checkpoint_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// One save of a sharded checkpoint into a directory, from choosing the
/// shard names to switching the index and removing the old set.
#[derive(Debug)]
pub struct ShardPublisher {
    directory: PathBuf,
    prefix: String,
    id: String,
    names: Vec<String>,
    old_index: Option<ShardIndex>,
    sync: bool,
}

impl ShardPublisher {
    /// Prepares to write `count` shards named after `prefix` (`model`)
    /// into `directory`, with `{prefix}.safetensors.index.json` as index
    /// (or a single `{prefix}.safetensors` when `count` is 1).
    ///
    /// Refuses, with an [`io::ErrorKind::AlreadyExists`] error, when the
    /// directory already holds that checkpoint and `overwrite` is false.
    /// With `sync`, the directory is flushed after each rename that
    /// publishes or removes something.
    pub fn begin(
        directory: &Path,
        prefix: &str,
        count: usize,
        overwrite: bool,
        sync: bool,
    ) -> Result<Self> {
        let publisher = ShardPublisher {
            directory: directory.to_owned(),
            prefix: prefix.to_owned(),
            id: new_checkpoint_id(),
            names: Vec::new(),
            old_index: None,
            sync,
        };
        let index_path = publisher.index_path();
        let single_path = publisher.single_path();
        if !overwrite {
            if let Some(existing) = [&index_path, &single_path].into_iter().find(|p| p.exists()) {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a checkpoint is already there; refusing to overwrite it \
                     (pass --force, or overwrite=True in Python, to replace it)",
                ))
                .in_file(existing));
            }
        }
        // An unreadable old index cannot name files to keep: the new set
        // then takes the conventional names, and the old index is replaced.
        let old_index = index_path
            .exists()
            .then(|| ShardIndex::read(&index_path).ok())
            .flatten();
        let live: BTreeSet<&str> = old_index
            .as_ref()
            .map(|index| index.shard_files().into_iter().collect())
            .unwrap_or_default();
        let conventional: Vec<String> = (0..count)
            .map(|i| shard_file_name(prefix, i, count))
            .collect();
        let names = if count <= 1 {
            Vec::new() // The single file: no shard names.
        } else if conventional.iter().any(|n| live.contains(n.as_str())) {
            // The old set uses these names: take names it cannot hold.
            let tag = &publisher.id[..8];
            (0..count)
                .map(|i| format!("{prefix}-{:05}-of-{count:05}.{tag}.safetensors", i + 1))
                .collect()
        } else {
            conventional
        };
        let mut publisher = publisher;
        publisher.names = names;
        publisher.old_index = old_index;
        // Tracked from the start, not once each is written: a signal that
        // lands between a shard's rename and the next line would otherwise
        // leave it behind. The names are new (never the old set's), so
        // removing them on a signal cannot touch the old checkpoint.
        for i in 0..publisher.names.len() {
            track(&publisher.shard_path(i));
        }
        Ok(publisher)
    }

    /// This save's checkpoint id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file names of the new shards, in order (none when `count` was 1).
    pub fn shard_names(&self) -> &[String] {
        &self.names
    }

    /// The path of shard `i`.
    pub fn shard_path(&self, i: usize) -> PathBuf {
        self.directory.join(&self.names[i])
    }

    /// The index file.
    pub fn index_path(&self) -> PathBuf {
        self.directory
            .join(format!("{}.safetensors.index.json", self.prefix))
    }

    /// The single file written when everything fits in one shard.
    pub fn single_path(&self) -> PathBuf {
        self.directory.join(format!("{}.safetensors", self.prefix))
    }

    /// `metadata` plus this save's checkpoint id, for every shard.
    pub fn shard_metadata(&self, metadata: Option<&Metadata>) -> Metadata {
        let mut stamped = metadata.cloned().unwrap_or_default();
        stamped.insert(CHECKPOINT_ID_KEY.to_owned(), self.id.clone());
        stamped
    }

    /// Called after shard `i` has been written (a crash point in tests).
    /// Until the switch, every new shard is removed if a signal stops the
    /// program (see [`remove_temporary_files_for_exit`]).
    ///
    /// [`remove_temporary_files_for_exit`]: crate::write::remove_temporary_files_for_exit
    pub fn shard_written(&self, i: usize) {
        crash_point(&format!("shard-{}", i + 1));
    }

    fn untrack_shards(&self) {
        for i in 0..self.names.len() {
            untrack(&self.shard_path(i));
        }
    }

    /// Gives up a save that failed before [`finish`](Self::finish): removes
    /// the new shards already in place (never the old set, whose names
    /// differ), so a full disk or an error leaves the directory as it was.
    pub fn abandon(&self) {
        self.untrack_shards();
        for i in 0..self.names.len() {
            // Best effort: the caller reports the error that stopped the save.
            let _ = std::fs::remove_file(self.shard_path(i));
        }
    }

    /// Publishes the new set: stamps the index with the checkpoint id,
    /// renames it over the old index (the switch), then removes the old
    /// shards and any old single file. Returns the index path.
    pub fn finish(&self, mut index: ShardIndex) -> Result<PathBuf> {
        index
            .metadata
            .insert(CHECKPOINT_ID_KEY.to_owned(), self.id.clone().into());
        let path = self.index_path();
        // Published with the index: from then on a signal must not remove them.
        self.untrack_shards();
        if let Err(error) = index.write_with(&path, self.sync) {
            self.abandon();
            return Err(error);
        }
        crash_point("index");
        let keep: BTreeSet<&str> = self.names.iter().map(String::as_str).collect();
        self.remove_old(&keep, true)?;
        Ok(path)
    }

    /// Completes a save that wrote the single file instead of shards:
    /// removes the old index (the switch), then the old shards.
    pub fn finish_single(&self) -> Result<()> {
        let index_path = self.index_path();
        if self.old_index.is_some() || index_path.exists() {
            remove_if_present(&index_path)?;
            self.sync_dir()?;
            crash_point("index");
        }
        self.remove_old(&BTreeSet::new(), false)
    }

    fn remove_old(&self, keep: &BTreeSet<&str>, single_too: bool) -> Result<()> {
        let mut removed = false;
        if let Some(old) = &self.old_index {
            for name in old.shard_files() {
                if !keep.contains(name) {
                    remove_if_present(&self.directory.join(name))?;
                    removed = true;
                }
            }
        }
        for orphan in self.orphans(keep) {
            remove_if_present(&orphan)?;
            removed = true;
        }
        if single_too {
            let single = self.single_path();
            if single.exists() {
                remove_if_present(&single)?;
                removed = true;
            }
        }
        if removed {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Shards left by earlier saves that were killed before their switch:
    /// files named like our shards, not in the new set, and stamped with a
    /// checkpoint id (so never a file this crate did not write).
    fn orphans(&self, keep: &BTreeSet<&str>) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return Vec::new();
        };
        let header_only = OpenOptions {
            backend: Backend::Pread,
            ..OpenOptions::default()
        };
        entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| is_shard_name(&self.prefix, name) && !keep.contains(name.as_str()))
            .map(|name| self.directory.join(name))
            .filter(|path| {
                SafetensorsFile::open_with(path, &header_only).is_ok_and(|file| {
                    let metadata = file.header().metadata();
                    metadata.is_some_and(|m| m.contains_key(CHECKPOINT_ID_KEY))
                })
            })
            .collect()
    }

    fn sync_dir(&self) -> Result<()> {
        if self.sync {
            sync_directory(&self.directory)?;
        }
        Ok(())
    }
}

impl Drop for ShardPublisher {
    /// A save given up without [`abandon`](ShardPublisher::abandon) (an
    /// early `?`) must not leave its names tracked: a later save may publish
    /// under the same names, and a signal's cleanup would then remove them.
    fn drop(&mut self) {
        self.untrack_shards();
    }
}

/// `{prefix}-00001-of-00003.safetensors`, optionally with a `.{tag}`
/// before the extension, as [`ShardPublisher::begin`] names shards.
fn is_shard_name(prefix: &str, name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    let (numbers, tag) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    let numbered = numbers
        .split_once("-of-")
        .is_some_and(|(k, n)| digits(k) && digits(n));
    numbered && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io(e).in_file(path)),
        _ => Ok(()),
    }
}

/// Checks that every shard belongs to the save that wrote the index: the
/// index's checkpoint id, if any, is in every shard's metadata, and shards
/// of an index without one agree among themselves. Anything else is a mix
/// of two saves (an interrupted or concurrent overwrite, a partial copy).
pub(crate) fn check_checkpoint_ids<'a>(
    index: &ShardIndex,
    shards: impl IntoIterator<Item = (&'a str, Option<&'a Metadata>)>,
) -> Result<()> {
    // What every shard must match: the index's id, or else the first shard's.
    let mut reference: Option<(String, Option<String>)> =
        index.metadata.get(CHECKPOINT_ID_KEY).map(|v| {
            let id = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            ("the index".to_owned(), Some(id))
        });
    for (name, metadata) in shards {
        let id = metadata.and_then(|m| m.get(CHECKPOINT_ID_KEY)).cloned();
        match &reference {
            None => reference = Some((format!("shard {name:?}"), id)),
            Some((other, expected)) if *expected != id => {
                return Err(Error::Shard {
                    reason: format!(
                        "shard {name:?} belongs to checkpoint {} but {other} to checkpoint {}: \
                         the files are a mix of two saves (an interrupted or concurrent \
                         overwrite?); save the checkpoint again or restore it from a copy",
                        describe(id.as_deref()),
                        describe(expected.as_deref())
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn describe(id: Option<&str>) -> String {
    id.map_or_else(|| "(none recorded)".to_owned(), |id| format!("{id:?}"))
}

/// Fault injection for crash tests, compiled only with the test-only
/// `fault-injection` feature: when `SAFEWEIGHTS_CRASH_AT` names this step
/// (`shard-N` after shard N is in place, `index` after the switch), the
/// process aborts on the spot, as a `kill -9` or a power cut would stop it:
/// no destructor runs and no temporary file is removed. Released builds
/// have no such hook, so no environment can make a real save abort.
#[cfg(feature = "fault-injection")]
fn crash_point(step: &str) {
    if std::env::var_os("SAFEWEIGHTS_CRASH_AT").is_some_and(|at| at == step) {
        std::process::abort();
    }
}

/// Without the `fault-injection` feature (every released build): nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn crash_point(_step: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_with_and_without_a_tag_are_recognised() {
        assert!(is_shard_name("model", "model-00001-of-00003.safetensors"));
        assert!(is_shard_name(
            "model",
            "model-00002-of-00003.0f3a9c1e.safetensors"
        ));
        for other in [
            "model.safetensors",
            "model-1-of-3.safetensors",
            "model-00001-of-00003.safetensors.tmp",
            "model-00001-of-00003.notes.safetensors",
            "other-00001-of-00003.safetensors",
        ] {
            assert!(!is_shard_name("model", other), "{other}");
        }
    }

    fn tracked(path: &Path) -> bool {
        crate::write::inflight::registry().contains(path)
    }

    #[test]
    fn a_signal_between_a_shards_rename_and_the_next_line_still_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let publisher = ShardPublisher::begin(dir.path(), "model", 3, false, false).unwrap();
        let paths: Vec<PathBuf> = (0..3).map(|i| publisher.shard_path(i)).collect();
        // Before any shard is written: every new name is already on the
        // signal cleanup's list.
        assert!(paths.iter().all(|p| tracked(p)));
        drop(publisher);
        assert!(
            paths.iter().all(|p| !tracked(p)),
            "a dropped save left names tracked"
        );
    }
}
