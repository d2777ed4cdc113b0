//! Format detection (the core's sniffer) and the containers: zip
//! archives, legacy torch streams, `.npy` files and safetensors files.
//! Whatever is no zip or `.npy` is also simulated as a pickle, because
//! `pickle.load` (and torch.load's legacy path) reads any bytes as one.

use super::pickle::{scan_pickles, Scanned, Start};
use super::{FileFormat, Finding, Sink, Verdict};
use crate::numpy;
use crate::zip::ZipArchive;
use safeweights::{sniff, FileKind};

/// Pickles in a legacy torch file before the raw storages begin.
const LEGACY_PICKLES: usize = 5;

/// Detects the format of `data` with the core's sniffer and scans it.
pub(crate) fn scan_any(data: &[u8], sink: &mut Sink<'_>) -> FileFormat {
    match sniff(data) {
        FileKind::Zip => scan_zip(data, sink),
        FileKind::Numpy => {
            scan_npy(data, sink);
            FileFormat::Npy
        }
        FileKind::Safetensors => {
            check_safetensors(data, sink);
            // The header length's bytes can also start a pickle (a STRING
            // quoting everything up to a newline in the data), which
            // torch.load's legacy path would run: a genuine file is none.
            scan_pickle_file(data, sink);
            FileFormat::Safetensors
        }
        // A git-lfs pointer or an HTML page starts with no opcode.
        kind if kind.is_placeholder() => FileFormat::NotAModel(kind),
        _ => super::tar::scan_tar(data, sink).unwrap_or_else(|| scan_pickle_file(data, sink)),
    }
}

/// Everything that is clearly no other format is what `pickle.load`
/// would read: it needs no magic number, so a stream starting with FRAME,
/// MARK or a string is simulated too. It counts as no pickle only when
/// it breaks, where CPython would too, before importing anything.
fn scan_pickle_file(data: &[u8], sink: &mut Sink<'_>) -> FileFormat {
    if crate::torch::is_legacy(data) {
        let known = (Start::Pickle, Start::Pickle);
        scan_pickles(data, 0, known, LEGACY_PICKLES, sink);
        safe_reader_check(crate::torch::validate(data, sink.limits), sink, false);
        return FileFormat::TorchLegacy;
    }
    let first = if sniff(data) == FileKind::Pickle {
        Start::Pickle
    } else {
        Start::Guess
    };
    match scan_pickles(data, 0, (first, Start::Guess), usize::MAX, sink) {
        Scanned::NotPickle => FileFormat::Unknown,
        // A broken stream is already reported; loading it again with the
        // safe reader could only fail once more.
        Scanned::Broken => FileFormat::Pickle,
        Scanned::Complete(_) => {
            safe_reader_check(crate::torch::validate_pickle(data, sink.limits), sink, true);
            FileFormat::Pickle
        }
    }
}

/// Reports that the safe reader refuses the data, so resource bombs that
/// contain no import at all are still flagged. For bare pickles only limit
/// errors count: other refusals are already reported opcode by opcode.
fn safe_reader_check(result: crate::Result<()>, sink: &mut Sink<'_>, limits_only: bool) {
    let Err(e) = result else { return };
    if limits_only && !matches!(e.root(), crate::Error::LimitExceeded { .. }) {
        return;
    }
    sink.add(Finding::new(
        "refused by the safe reader",
        0,
        Verdict::Suspicious,
        e.to_string(),
    ));
}

fn check_safetensors(data: &[u8], sink: &mut Sink<'_>) {
    if let Err(e) = safeweights::read::SafeTensors::parse(data) {
        sink.add(Finding::new(
            "invalid safetensors file",
            0,
            Verdict::Suspicious,
            format!("{e}; a malformed header can hide a polyglot file"),
        ));
    }
}

fn scan_npy(data: &[u8], sink: &mut Sink<'_>) {
    // np.load unpickles the data of object arrays, structured dtypes with
    // object fields included. A body that cannot be ruled out is scanned
    // as a possible pickle (reported only if it imports something).
    let (body_at, start) = match numpy::parse_raw_header(data) {
        Ok(h) if numpy::descr_has_objects(&h.descr) => {
            sink.add(Finding::new(
                "npy object array",
                h.data_offset,
                Verdict::Suspicious,
                "object arrays are pickles; np.load(allow_pickle=True) would run the pickle below",
            ));
            (h.data_offset, Start::Pickle)
        }
        Ok(h) if numpy::map_descr(&h.descr).is_ok() => return,
        Ok(h) => (h.data_offset, Start::Guess),
        Err(e) => {
            sink.add(Finding::new(
                "invalid npy header",
                0,
                Verdict::Suspicious,
                e.to_string(),
            ));
            match numpy::header_end(data) {
                Some(end) => (end, Start::Guess),
                None => return,
            }
        }
    };
    let body = data.get(body_at..).unwrap_or_default();
    sink.nested(&format!("array data at offset {body_at}"), |sink| {
        scan_pickles(body, 0, (start, Start::Guess), usize::MAX, sink);
    });
}

fn scan_zip(data: &[u8], sink: &mut Sink<'_>) -> FileFormat {
    let limits = sink.limits.clone();
    let archive = match ZipArchive::parse_lenient(data, &limits) {
        Ok((archive, issues)) => {
            for issue in issues {
                sink.add(Finding::new(
                    "inconsistent zip archive",
                    0,
                    Verdict::Suspicious,
                    issue,
                ));
            }
            archive
        }
        Err(e) => {
            sink.add(Finding::new(
                "invalid zip archive",
                0,
                Verdict::Suspicious,
                e.to_string(),
            ));
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
        if raw_storage {
            continue;
        }
        let bytes = match archive.read(data, entry, &limits) {
            Ok(b) => b,
            Err(e) => {
                sink.nested(&entry.name, |sink| {
                    sink.add(Finding::new(
                        "unreadable member",
                        0,
                        Verdict::Suspicious,
                        e.to_string(),
                    ));
                });
                // Lenient loaders skip the CRC check: look at what they load.
                match archive.read_unverified(data, entry, &limits) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            }
        };
        if is_torchscript_marker(&entry.name, torch_prefix.as_deref()) {
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
            if is_pickle_name && data_is_not_other_format(&bytes) {
                scan_pickles(&bytes, 0, (Start::Pickle, Start::Guess), usize::MAX, sink);
            } else {
                scan_any(&bytes, sink);
            }
        });
    }
    if torch_prefix.is_some() {
        safe_reader_check(crate::torch::validate(data, &limits), sink, false);
        FileFormat::TorchZip
    } else {
        FileFormat::Zip
    }
}

fn data_is_not_other_format(bytes: &[u8]) -> bool {
    !matches!(sniff(bytes), FileKind::Zip | FileKind::Numpy)
}

fn is_torchscript_marker(name: &str, prefix: Option<&str>) -> bool {
    let rel = prefix.and_then(|p| name.strip_prefix(p)).unwrap_or(name);
    crate::torch::is_torchscript_member(rel)
}
