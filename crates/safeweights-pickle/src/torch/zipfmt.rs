//! The zip checkpoint format: `<prefix>/data.pkl` plus one stored record
//! per storage under `<prefix>/data/<key>`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pickle::{load_pickle, Loaded, Policy, StorageRef};
use crate::zip::{CrcCheck, Method, ZipArchive, ZipEntry};

#[derive(Debug)]
pub(crate) struct ZipStorages {
    archive: ZipArchive,
    prefix: String,
    pub(crate) big_endian: bool,
    /// Stored records (by entry index) whose CRC was already checked, so
    /// views sharing one large storage do not re-hash it on every read.
    verified: Mutex<HashSet<usize>>,
}

pub(crate) fn open(data: &[u8], limits: &Limits) -> Result<(ZipStorages, Loaded)> {
    let archive = ZipArchive::parse(data, limits)?;
    let pkl = find_data_pkl(&archive)?;
    let prefix = pkl.name.trim_end_matches("data.pkl").to_owned();
    refuse_torchscript(&archive, &prefix)?;
    let big_endian = match archive.find(&format!("{prefix}byteorder")) {
        None => false,
        Some(e) => match read(&archive, data, e, limits)?.trim_ascii() {
            b"little" => false,
            b"big" => true,
            _ => {
                return Err(Error::checkpoint(
                    "`byteorder` record is neither `little` nor `big`",
                ))
            }
        },
    };
    let pickle = read(&archive, data, pkl, limits)?;
    let loaded =
        load_pickle(&pickle, 0, limits, Policy::Torch).map_err(|e| e.within(pkl.name.clone()))?;
    let storages = ZipStorages {
        archive,
        prefix,
        big_endian,
        verified: Mutex::new(HashSet::new()),
    };
    Ok((storages, loaded))
}

/// Reads a record as torch does: a CRC-32 of 0 is one torch wrote with
/// `set_crc32_options(False)`, and torch loads such files.
fn read<'a>(
    archive: &ZipArchive,
    data: &'a [u8],
    entry: &ZipEntry,
    limits: &Limits,
) -> Result<Cow<'a, [u8]>> {
    archive.read_checked(data, entry, limits, CrcCheck::ZeroMeansUnset)
}

fn find_data_pkl(archive: &ZipArchive) -> Result<&ZipEntry> {
    let mut found = archive.entries().iter().filter(|e| {
        e.name == "data.pkl"
            || e.name
                .strip_suffix("/data.pkl")
                .is_some_and(|prefix| !prefix.contains('/'))
    });
    match (found.next(), found.next()) {
        (Some(e), None) => Ok(e),
        (None, _) => Err(Error::checkpoint(
            "zip archive has no `data.pkl`: not a torch.save checkpoint",
        )),
        (Some(_), Some(_)) => Err(Error::checkpoint(
            "zip archive has several `data.pkl` records",
        )),
    }
}

/// Whether a member named `rel`, relative to the checkpoint's prefix,
/// marks a TorchScript archive: its `code/` or its `constants.pkl`.
pub(crate) fn is_torchscript_member(rel: &str) -> bool {
    rel.starts_with("code/") || rel == "constants.pkl"
}

fn refuse_torchscript(archive: &ZipArchive, prefix: &str) -> Result<()> {
    if archive.entries().iter().any(|e| {
        e.name
            .strip_prefix(prefix)
            .is_some_and(is_torchscript_member)
    }) {
        return Err(Error::checkpoint(
            "this is a TorchScript archive (it has `code/` or `constants.pkl`): it is a program, \
             not a weights file, and loading it runs that program; export a state_dict with \
             torch.save in a trusted environment instead",
        ));
    }
    Ok(())
}

impl ZipStorages {
    /// The storage's record and its index in the archive.
    fn record(&self, storage: &StorageRef) -> Result<(usize, &ZipEntry)> {
        let name = format!("{}data/{}", self.prefix, storage.key);
        self.archive
            .find_with_index(&name)
            .ok_or_else(|| Error::checkpoint(format!("storage record `{name}` is missing")))
    }

    pub(crate) fn record_len(&self, storage: &StorageRef) -> Result<u64> {
        Ok(self.record(storage)?.1.size)
    }

    pub(crate) fn storage_bytes<'a>(
        &self,
        data: &'a [u8],
        storage: &StorageRef,
        limits: &Limits,
    ) -> Result<Cow<'a, [u8]>> {
        let (index, entry) = self.record(storage)?;
        let done = self
            .verified
            .lock()
            .map(|set| set.contains(&index))
            .unwrap_or(false);
        if done && entry.method == Method::Stored {
            if let Some(bytes) = data.get(entry.data.clone()) {
                return Ok(Cow::Borrowed(bytes));
            }
        }
        let bytes = read(&self.archive, data, entry, limits)?;
        if let Ok(mut set) = self.verified.lock() {
            set.insert(index);
        }
        Ok(bytes)
    }
}
