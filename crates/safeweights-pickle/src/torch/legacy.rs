//! The legacy checkpoint format: consecutive pickles (magic number,
//! protocol version, sys_info, the object, storage keys) followed by each
//! storage as an int64 element count and raw bytes.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pickle::{load_pickle, Loaded, Policy, StorageRef, Value};

/// `0x1950a86a20f9469cfc6c` as LONG1 payload (little-endian).
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// Whether the first pickle is the literal legacy magic number. Only
/// literal opcodes are accepted, so a magic number computed by code (a
/// known scanner bypass) does not count.
pub(crate) fn is_legacy(data: &[u8]) -> bool {
    let limits = Limits {
        max_ops: 16,
        ..Limits::default()
    };
    // No PROTO opcode needed: torch.load reads the magic number with
    // pickle.load, which takes any pickle.
    matches!(
        load_pickle(data, 0, &limits, Policy::Literals),
        Ok(Loaded { value: Value::BigInt(b), .. }) if *b == MAGIC
    )
}

#[derive(Debug)]
pub(crate) struct LegacyStorages {
    ranges: HashMap<String, Range<usize>>,
}

fn header(data: &[u8], pos: usize, limits: &Limits, what: &str) -> Result<Loaded> {
    load_pickle(data, pos, limits, Policy::Literals).map_err(|e| {
        e.within(format!(
            "legacy checkpoint {what} (must be a plain literal)"
        ))
    })
}

pub(crate) fn open(data: &[u8], limits: &Limits) -> Result<(LegacyStorages, Loaded)> {
    let magic = header(data, 0, limits, "magic number")?;
    if !matches!(&magic.value, Value::BigInt(b) if **b == MAGIC) {
        return Err(Error::checkpoint(
            "legacy checkpoint has a wrong magic number",
        ));
    }
    let proto = header(data, magic.end, limits, "protocol version")?;
    if proto.value != Value::Int(PROTOCOL_VERSION) {
        return Err(Error::checkpoint(format!(
            "legacy checkpoint protocol {:?} is not {PROTOCOL_VERSION}",
            proto.value
        )));
    }
    // sys_info's `little_endian` describes the machine that saved the
    // file, not the data: torch writes and reads legacy storages
    // little-endian everywhere (`_set_from_file`), so it is not consulted.
    let sys_info = header(data, proto.end, limits, "sys_info")?;
    let main = load_pickle(data, sys_info.end, limits, Policy::TorchLegacy)
        .map_err(|e| e.within("legacy checkpoint main pickle"))?;
    let keys = header(data, main.end, limits, "storage key list")?;
    let Value::List(keys_list) = &keys.value else {
        return Err(Error::checkpoint("legacy storage key list is not a list"));
    };
    let ranges = storage_ranges(data, keys.end, keys_list, &main.storages)?;
    Ok((LegacyStorages { ranges }, main))
}

/// Walks the storage section: per key an int64 LE element count, then the
/// bytes, whose element size comes from the storages the pickle declared.
fn storage_ranges(
    data: &[u8],
    mut pos: usize,
    keys: &[Value],
    refs: &[std::sync::Arc<StorageRef>],
) -> Result<HashMap<String, Range<usize>>> {
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for r in refs {
        if *sizes.entry(&r.key).or_insert(r.element_size()) != r.element_size() {
            return Err(Error::checkpoint(format!(
                "storage `{}` is used with two element types",
                r.key
            )));
        }
    }
    let mut ranges = HashMap::new();
    for key in keys {
        let key = key
            .as_str()
            .ok_or_else(|| Error::checkpoint("legacy storage key is not a string"))?;
        let es = *sizes.get(key).ok_or_else(|| {
            Error::checkpoint(format!("storage `{key}` is listed but never used"))
        })?;
        let count_bytes = data
            .get(pos..pos.saturating_add(8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| Error::checkpoint(format!("storage `{key}` is truncated")))?;
        let count = u64::from_le_bytes(count_bytes);
        let start = pos + 8;
        let end = count
            .checked_mul(es as u64)
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| start.checked_add(n))
            .filter(|&end| end <= data.len())
            .ok_or_else(|| {
                Error::checkpoint(format!("storage `{key}` runs past the end of the file"))
            })?;
        if ranges.insert(key.to_owned(), start..end).is_some() {
            return Err(Error::checkpoint(format!(
                "storage `{key}` is listed twice"
            )));
        }
        pos = end;
    }
    if pos != data.len() {
        return Err(Error::checkpoint(format!(
            "{} unexpected bytes after the last storage",
            data.len() - pos
        )));
    }
    Ok(ranges)
}

impl LegacyStorages {
    fn range(&self, storage: &StorageRef) -> Result<&Range<usize>> {
        self.ranges.get(&*storage.key).ok_or_else(|| {
            Error::checkpoint(format!("storage `{}` is not in the key list", storage.key))
        })
    }

    pub(crate) fn record_len(&self, storage: &StorageRef) -> Result<u64> {
        Ok(self.range(storage)?.len() as u64)
    }

    pub(crate) fn storage_bytes<'a>(
        &self,
        data: &'a [u8],
        storage: &StorageRef,
    ) -> Result<&'a [u8]> {
        let range = self.range(storage)?;
        let root = data
            .get(range.clone())
            .ok_or_else(|| Error::checkpoint("storage lies outside the file"))?;
        let Some((offset, len)) = storage.view else {
            return Ok(root);
        };
        let es = storage.element_size() as u64;
        let start = offset.checked_mul(es);
        let end = offset.checked_add(len).and_then(|e| e.checked_mul(es));
        start
            .zip(end)
            .and_then(|(s, e)| root.get(usize::try_from(s).ok()?..usize::try_from(e).ok()?))
            .ok_or_else(|| {
                Error::checkpoint(format!(
                    "view of storage `{}` is out of bounds",
                    storage.key
                ))
            })
    }
}
