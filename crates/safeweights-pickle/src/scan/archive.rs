//! Archives and compressed wrappers: zip (torch checkpoints, `.npz`,
//! nested zips) and gzip/bzip2/xz streams (7z: `seven_zip`).

use super::container::{safe_reader_check, scan_any};
use super::pickle::{scan_pickles, Start};
use super::{FileFormat, Finding, Sink, Verdict};
use crate::decompress::{Failure, Wrapper};
use crate::numpy;
use crate::zip::{self, CrcCheck, ZipArchive, ZipEntry};
use safeweights::{sniff, FileKind};

/// Largest `.npy` header peeked at before deciding whether a member can
/// hold a pickle.
const NPY_PEEK: usize = 1 << 20;

/// Scans what a gzip, bzip2 or xz stream holds, as joblib, pandas and
/// `gzip.open` + `pickle.load` would read it.
pub(super) fn scan_compressed(data: &[u8], wrapper: Wrapper, sink: &mut Sink<'_>) -> FileFormat {
    let cap = sink.limits.max_decompressed.min(
        sink.limits
            .max_total_decompressed
            .saturating_sub(sink.decompressed),
    );
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let label = format!("{} stream", wrapper.name());
    let inner = match wrapper.decompress(data, cap) {
        Ok(inner) => inner,
        Err(Failure::TooLarge(partial)) => {
            sink.add(Finding::new(
                &label,
                0,
                Verdict::Suspicious,
                format!(
                    "decompresses to more than {cap} bytes (max_decompressed or the file's \
                     remaining budget): a decompression bomb; only the first {cap} bytes were \
                     scanned"
                ),
            ));
            partial
        }
        Err(Failure::Corrupt(partial, why)) => {
            sink.add(Finding::new(
                &label,
                0,
                Verdict::Suspicious,
                format!(
                    "corrupt {} data ({why}); the {} bytes before the error were scanned",
                    wrapper.name(),
                    partial.len()
                ),
            ));
            partial
        }
    };
    sink.decompressed = sink.decompressed.saturating_add(inner.len() as u64);
    sink.nested(&label, |sink| {
        scan_any(&inner, sink);
    });
    FileFormat::Compressed
}

pub(super) fn scan_zip(data: &[u8], sink: &mut Sink<'_>) -> FileFormat {
    let limits = sink.limits.clone();
    let archive = match ZipArchive::parse_lenient(data, &limits) {
        Ok((archive, issues)) => {
            for issue in issues {
                sink.add(Finding::new(
                    "ambiguous archive",
                    0,
                    Verdict::Dangerous,
                    format!(
                        "{issue}; readers could load different members from this file, so \
                         whatever safeweights reads, torch.load or np.load could run another \
                         payload"
                    ),
                ));
            }
            archive
        }
        Err(e) => {
            let ambiguous = matches!(e.root(), crate::Error::AmbiguousArchive { .. });
            sink.add(if ambiguous {
                Finding::new(
                    "ambiguous archive",
                    0,
                    Verdict::Dangerous,
                    format!(
                        "{e}; another reader (Python's zipfile, behind np.load) loads members \
                         from this file that torch's reader and safeweights cannot see"
                    ),
                )
            } else {
                Finding::new("invalid zip archive", 0, Verdict::Suspicious, e.to_string())
            });
            return FileFormat::Zip;
        }
    };
    let torch_prefix = archive
        .entries()
        .iter()
        .find_map(|e| {
            e.name
                .strip_suffix("data.pkl")
                .filter(|p| p.is_empty() || p.ends_with('/'))
        })
        .map(str::to_owned);
    // Torch loads records whose CRC is 0 (`set_crc32_options(False)`);
    // Python's zipfile, and so np.load, does not.
    let crc = if torch_prefix.is_some() {
        CrcCheck::ZeroMeansUnset
    } else {
        CrcCheck::Always
    };
    for entry in archive.entries() {
        // Tensor storages are raw bytes that torch never interprets, so
        // there is nothing in them to run; skipping them (and their CRC)
        // keeps a scan's cost independent of the model's size.
        let raw_storage = torch_prefix.as_ref().is_some_and(|p| {
            entry
                .name
                .strip_prefix(p.as_str())
                .is_some_and(|r| r.starts_with("data/"))
        });
        if raw_storage || is_plain_array(&archive, data, entry) {
            continue;
        }
        scan_member(&archive, data, entry, crc, torch_prefix.as_deref(), sink);
    }
    if torch_prefix.is_some() {
        safe_reader_check(crate::torch::validate(data, &limits), sink, false);
        FileFormat::TorchZip
    } else {
        FileFormat::Zip
    }
}

/// Whether a member is an `.npy` array of a plain numeric dtype: np.load
/// reads its bytes as numbers, so there is nothing in it to run, and its
/// data need not be decompressed at all.
fn is_plain_array(archive: &ZipArchive, data: &[u8], entry: &ZipEntry) -> bool {
    let Ok(prefix) = archive.read_prefix(data, entry, NPY_PEEK) else {
        return false;
    };
    numpy::parse_header(&prefix).is_ok()
}

fn scan_member(
    archive: &ZipArchive,
    data: &[u8],
    entry: &ZipEntry,
    crc: CrcCheck,
    torch_prefix: Option<&str>,
    sink: &mut Sink<'_>,
) {
    if entry.method != zip::Method::Stored && !sink.spend(entry.size, &entry.name) {
        return;
    }
    let limits = sink.limits.clone();
    let bytes = match archive.read_checked(data, entry, &limits, crc) {
        Ok(b) => b,
        Err(e) => {
            sink.nested(&entry.name, |sink| {
                sink.add(Finding::new(
                    "unreadable member",
                    0,
                    Verdict::Suspicious,
                    format!("{e}; its content could not be checked"),
                ));
            });
            // Lenient loaders skip the CRC check: look at what they load.
            match archive.read_unverified(data, entry, &limits) {
                Ok(b) => b,
                Err(_) => return,
            }
        }
    };
    let rel = torch_prefix
        .and_then(|p| entry.name.strip_prefix(p))
        .unwrap_or(&entry.name);
    if crate::torch::is_torchscript_member(rel) {
        sink.nested(&entry.name, |sink| {
            sink.add(Finding::new(
                "TorchScript archive",
                0,
                Verdict::Suspicious,
                "contains code/ or constants.pkl: torch.jit.load runs its program; the safe reader refuses it",
            ));
        });
    }
    let is_pickle_name = entry.name.ends_with(".pkl") || entry.name.ends_with(".pickle");
    sink.nested(&entry.name, |sink| {
        if is_pickle_name && !matches!(sniff(&bytes), FileKind::Zip | FileKind::Numpy) {
            scan_pickles(&bytes, 0, (Start::Pickle, Start::Guess), usize::MAX, sink);
        } else {
            scan_any(&bytes, sink);
        }
    });
}
