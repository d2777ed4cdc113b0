//! Format detection and the containers: zip archives, legacy torch
//! streams, `.npy` files and safetensors files.

use super::archive;
use super::pickle::scan_pickles;
use super::{FileFormat, Finding, Sink, Verdict};
use crate::decompress::Wrapper;
use crate::numpy;
use crate::pickle::ops;
use crate::zip;

/// Pickles in a legacy torch file before the raw storages begin.
const LEGACY_PICKLES: usize = 5;
/// Bare pickle files may hold a few pickles back to back.
pub(super) const MAX_STREAM_PICKLES: usize = 64;
/// First bytes of protocol 0/1 pickles, used only when nothing else matches.
const PROTOCOL0_STARTS: &[u8] = b"(}])cdlNIFSVLipgtKJMUGTXBC";

/// Detects the format of `data` by content and scans it.
pub(crate) fn scan_any(data: &[u8], sink: &mut Sink<'_>) -> FileFormat {
    if zip::is_zip(data) {
        return archive::scan_zip(data, sink);
    }
    if let Some(wrapper) = Wrapper::sniff(data) {
        archive::scan_compressed(data, wrapper, sink);
        return FileFormat::Compressed;
    }
    if data.starts_with(archive::SEVEN_ZIP_MAGIC) {
        archive::report_seven_zip(sink);
        return FileFormat::SevenZip;
    }
    if data.starts_with(numpy::MAGIC) {
        scan_npy(data, sink);
        return FileFormat::Npy;
    }
    if looks_like_safetensors(data) {
        check_safetensors(data, sink);
        return FileFormat::Safetensors;
    }
    if data.first() == Some(&ops::PROTO) && data.get(1).is_some_and(|&p| p <= 5) {
        if crate::torch::is_legacy(data) {
            scan_pickles(data, 0, LEGACY_PICKLES, sink);
            safe_reader_check(crate::torch::validate(data, sink.limits), sink, false);
            return FileFormat::TorchLegacy;
        }
        scan_pickles(data, 0, MAX_STREAM_PICKLES, sink);
        safe_reader_check(crate::torch::validate_pickle(data, sink.limits), sink, true);
        return FileFormat::Pickle;
    }
    if data.first().is_some_and(|b| PROTOCOL0_STARTS.contains(b)) {
        return scan_protocol0_guess(data, sink);
    }
    FileFormat::Unknown
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
        decompressed: sink.decompressed,
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
pub(super) fn safe_reader_check(result: crate::Result<()>, sink: &mut Sink<'_>, limits_only: bool) {
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

fn looks_like_safetensors(data: &[u8]) -> bool {
    let Some(len) = data.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        return false;
    };
    let n = u64::from_le_bytes(len);
    let fits = n.checked_add(8).is_some_and(|end| end <= data.len() as u64);
    let body = data.get(8..).unwrap_or_default();
    fits && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
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
