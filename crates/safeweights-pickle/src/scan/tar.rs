//! Tar archives, torch's pre-0.4 checkpoint format among them. torch.load
//! tries `tarfile` on every file that is not a zip, and its tar branch
//! unpickles the `sys_info` and `pickle` members and pickles interleaved
//! with raw data in `storages` and `tensors`: every one of them is
//! scanned, the raw data between them skipped by walking the layout
//! exactly as torch's `_legacy_load` reads it.

use super::container::scan_any;
use super::pickle::{scan_pickles, Scanned, Start};
use super::{FileFormat, Finding, Sink, Verdict};
use crate::pickle::{load_pickle, Policy, Value};
use crate::tar;

const KNOWN: (Start, Start) = (Start::Pickle, Start::Pickle);

/// Scans `data` if it is a tar archive.
pub(crate) fn scan_tar(data: &[u8], sink: &mut Sink<'_>) -> Option<FileFormat> {
    if !tar::is_tar(data) {
        return None;
    }
    let (members, error) = tar::members(data);
    if let Some(why) = error {
        sink.add(Finding::new(
            "inconsistent tar archive",
            0,
            Verdict::Suspicious,
            why,
        ));
    }
    let torch = tar::is_torch_tar(&members);
    for member in &members {
        let body = data.get(member.data.clone()).unwrap_or_default();
        sink.nested(&member.name, |sink| match (torch, member.name.as_str()) {
            (true, "storages") => walk(body, sink, Layout::Storages),
            (true, "tensors") => walk(body, sink, Layout::Tensors),
            (true, "pickle" | "sys_info") => {
                scan_pickles(body, 0, (Start::Pickle, Start::Guess), usize::MAX, sink);
            }
            _ => {
                scan_any(body, sink);
            }
        });
    }
    // The header block is also read as a pickle by a plain pickle.load.
    scan_pickles(data, 0, (Start::Guess, Start::Guess), usize::MAX, sink);
    Some(if torch {
        FileFormat::TorchTar
    } else {
        FileFormat::Tar
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A count, then per storage a `(key, location, storage_type)` pickle,
    /// an int64 element count and the raw elements; then the views pickle.
    Storages,
    /// A count, then per tensor a `(key, storage_id, type)` pickle, an
    /// int32 ndim, 4 bytes, ndim int64 sizes and strides, an int64 offset.
    Tensors,
}

fn walk(body: &[u8], sink: &mut Sink<'_>, layout: Layout) {
    if let Err(why) = try_walk(body, sink, layout) {
        sink.add(Finding::new(
            "pickle not fully simulated",
            0,
            Verdict::Dangerous,
            format!("{why}; torch may read pickles past this point that were not scanned"),
        ));
    }
}

fn try_walk(body: &[u8], sink: &mut Sink<'_>, layout: Layout) -> Result<(), String> {
    let count = match load_pickle(body, 0, sink.limits, Policy::Literals) {
        Ok(loaded) => match loaded.value {
            Value::Int(n) if n >= 0 => n,
            other => return Err(format!("the record count is {other:?}, not a count")),
        },
        Err(e) => return Err(format!("the record count is no plain integer ({e})")),
    };
    let mut pos = complete(scan_pickles(body, 0, KNOWN, 1, sink))?;
    for _ in 0..count {
        let before = sink.findings.len();
        pos = complete(scan_pickles(body, pos, KNOWN, 1, sink))?;
        pos = match layout {
            Layout::Storages => {
                let size = element_size(&sink.findings[before.min(sink.findings.len())..])
                    .ok_or("a storage record names no known storage type")?;
                let n = read_i64(body, pos)?;
                u64::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_mul(size))
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| (pos + 8).checked_add(n))
                    .filter(|&end| end <= body.len())
                    .ok_or("a storage's data runs past the member's end")?
            }
            Layout::Tensors => {
                let ndim = read_i64(body, pos)? as i32;
                let ndim = usize::try_from(ndim).map_err(|_| "a negative tensor rank")?;
                let end = pos + 8 + 16 * ndim + 8;
                if end > body.len() {
                    return Err("a tensor record runs past the member's end".into());
                }
                end
            }
        };
    }
    if pos < body.len() {
        // The storage views pickle, and whatever follows it.
        scan_pickles(body, pos, (Start::Pickle, Start::Guess), usize::MAX, sink);
    }
    Ok(())
}

fn complete(scanned: Scanned) -> Result<usize, String> {
    match scanned {
        Scanned::Complete(end) => Ok(end),
        _ => Err("a record pickle is broken".into()),
    }
}

fn read_i64(body: &[u8], pos: usize) -> Result<i64, String> {
    body.get(pos..pos + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_le_bytes)
        .ok_or_else(|| "a record is truncated".into())
}

/// The element size of the storage type a record pickle imported.
fn element_size(findings: &[Finding]) -> Option<u64> {
    findings.iter().find_map(|f| {
        let name = f.subject.strip_prefix("torch.")?;
        let name = name.strip_prefix("cuda.").unwrap_or(name);
        Some(match name {
            "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
            "ComplexDoubleStorage" => 16,
            "FloatStorage" | "IntStorage" => 4,
            "HalfStorage" | "ShortStorage" | "BFloat16Storage" => 2,
            "CharStorage" | "ByteStorage" | "BoolStorage" => 1,
            _ => return None,
        })
    })
}
