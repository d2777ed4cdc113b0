//! `.distcp` files of torch's default distributed checkpoint format.
//!
//! Such a file is the items of one rank back to back, each a complete
//! `torch.save` zip, at the offsets and lengths the checkpoint's `.metadata`
//! records. Scanned whole, the second item is a zip after other data,
//! which the zip-ambiguity rule rightly calls dangerous (Python's zipfile
//! and torch's reader would see different archives). torch never opens the
//! file whole: it reads each item's range and loads that alone. So when
//! the metadata decodes and its items tile the file exactly, each item is
//! scanned as the stream torch loads; anything else (a gap, trailing
//! bytes, overlapping or transformed items) keeps the strict whole-file
//! verdict.

use std::path::Path;

use super::container::scan_any;
use super::{scan_bytes, FileFormat, ScanReport, Sink};
use crate::dcp::{DcpMetadata, StorageItem};
use crate::error::Result;
use crate::limits::Limits;
use crate::source::Source;

/// The file extension torch's `FileSystemWriter` gives its data files.
pub const DISTCP_EXTENSION: &str = "distcp";

/// Scans the `.distcp` file at `path` as the items `metadata` (the
/// checkpoint's decoded `.metadata`) places in it, or whole, as
/// [`super::scan_path`] does, when they do not account for every byte.
pub fn scan_distcp(path: &Path, metadata: &DcpMetadata, limits: &Limits) -> Result<ScanReport> {
    let source = Source::open(path)?;
    let data = source.bytes();
    let file = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let items = metadata.items_in(&name);
    if !tiles(&items, data.len() as u64) {
        return Ok(scan_bytes(&file, data, limits));
    }
    let mut sink = Sink {
        limits,
        file: &file,
        member: None,
        depth: 0,
        findings: Vec::new(),
        omitted: 0,
        decompressed: 0,
    };
    for item in items {
        // `tiles` checked every range against the file's length.
        let segment = &data[item.start as usize..item.end() as usize];
        sink.nested(&label(item), |sink| {
            scan_any(segment, sink);
        });
    }
    let (findings, omitted) = (sink.findings, sink.omitted);
    Ok(ScanReport {
        file,
        format: FileFormat::DcpStorage,
        findings,
        omitted,
    })
}

/// Whether `items` (in file order) cover `0..len` exactly, each a plain
/// non-empty `torch.save` stream.
fn tiles(items: &[&StorageItem], len: u64) -> bool {
    let mut next = 0u64;
    for item in items {
        if item.start != next || item.length == 0 || !item.transforms.is_empty() {
            return false;
        }
        next = item.end();
    }
    !items.is_empty() && next == len
}

fn label(item: &StorageItem) -> String {
    let what = match &item.chunk_offsets {
        Some(offsets) => format!("tensor {} chunk at {offsets:?}", item.fqn),
        None => format!("value {}", item.fqn),
    };
    format!("{what} (bytes {}..{})", item.start, item.end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(start: u64, length: u64) -> StorageItem {
        StorageItem {
            fqn: "w".into(),
            chunk_offsets: None,
            relative_path: "__0_0.distcp".into(),
            start,
            length,
            transforms: Vec::new(),
        }
    }

    #[test]
    fn only_an_exact_tiling_is_scanned_by_segments() {
        let (a, b) = (item(0, 10), item(10, 5));
        assert!(tiles(&[&a, &b], 15));
        assert!(!tiles(&[&a, &b], 16), "trailing bytes");
        assert!(!tiles(&[&b], 15), "a gap at the start");
        assert!(!tiles(&[&a, &item(9, 6)], 15), "overlap");
        assert!(!tiles(&[], 0), "nothing recorded");
        let mut compressed = item(10, 5);
        compressed.transforms.push("zstd".into());
        assert!(!tiles(&[&a, &compressed], 15), "a transformed item");
    }
}
