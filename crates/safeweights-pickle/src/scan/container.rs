//! Format detection and the containers: zip archives, legacy torch
//! streams, `.npy` files and safetensors files.

use super::pickle::scan_pickles;
use super::{FileFormat, Finding, Sink, Verdict};
use crate::numpy;
use crate::zip::ZipArchive;
use safeweights::{sniff, FileKind};

/// Pickles in a legacy torch file before the raw storages begin.
const LEGACY_PICKLES: usize = 5;
/// Bare pickle files may hold a few pickles back to back.
const MAX_STREAM_PICKLES: usize = 64;
/// First bytes of protocol 0/1 pickles, used only when nothing else matches.
const PROTOCOL0_STARTS: &[u8] = b"(}])cdlNIFSVLipgtKJMUGTXBC";

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
            FileFormat::Safetensors
        }
        FileKind::Pickle if crate::torch::is_legacy(data) => {
            scan_pickles(data, 0, LEGACY_PICKLES, sink);
            safe_reader_check(crate::torch::validate(data, sink.limits), sink, false);
            FileFormat::TorchLegacy
        }
        FileKind::Pickle => {
            scan_pickles(data, 0, MAX_STREAM_PICKLES, sink);
            safe_reader_check(crate::torch::validate_pickle(data, sink.limits), sink, true);
            FileFormat::Pickle
        }
        // Protocol 0 and 1 pickles have no PROTO mark: the sniffer cannot
        // tell them from text, so the scanner tries them by simulation.
        FileKind::Unknown if data.first().is_some_and(|b| PROTOCOL0_STARTS.contains(b)) => {
            scan_protocol0_guess(data, sink)
        }
        kind if kind.is_placeholder() => FileFormat::NotAModel(kind),
        _ => FileFormat::Unknown,
    }
}

/// A file that merely starts with a protocol 0 opcode byte counts as a
/// pickle only if simulating it finds something (text files often start
/// with such a byte).
fn scan_protocol0_guess(data: &[u8], sink: &mut Sink<'_>) -> FileFormat {
    let mut trial = Sink {
        limits: sink.limits,
        file: sink.file,
        member: sink.member.clone(),
        depth: sink.depth,
        findings: Vec::new(),
        omitted: 0,
    };
    scan_pickles(data, 0, 1, &mut trial);
    let malformed = trial
        .findings
        .iter()
        .any(|f| f.subject == "malformed pickle");
    let imports = trial
        .findings
        .iter()
        .any(|f| f.subject != "malformed pickle" && !f.subject.starts_with("opcode "));
    // Without a single import a broken "pickle" can run nothing: treat it
    // as the text or binary file it most likely is.
    if malformed && !imports {
        return FileFormat::Unknown;
    }
    for f in trial.findings {
        sink.add(f);
    }
    FileFormat::Pickle
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
    match numpy::parse_raw_header(data) {
        Err(e) => sink.add(Finding::new(
            "invalid npy header",
            0,
            Verdict::Suspicious,
            e.to_string(),
        )),
        Ok(h)
            if h.descr
                .trim_start_matches(['<', '>', '|', '='])
                .starts_with('O') =>
        {
            sink.add(Finding::new(
                "npy object array",
                h.data_offset,
                Verdict::Suspicious,
                "object arrays are pickles; np.load(allow_pickle=True) would run the pickle below",
            ));
            let body = data.get(h.data_offset..).unwrap_or_default();
            sink.nested(
                &format!("object array pickle at offset {}", h.data_offset),
                |sink| {
                    scan_pickles(body, 0, MAX_STREAM_PICKLES, sink);
                },
            );
        }
        Ok(_) => {}
    }
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
                scan_pickles(&bytes, 0, MAX_STREAM_PICKLES, sink);
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
