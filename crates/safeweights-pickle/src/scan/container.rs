//! Format detection (the core's sniffer) and the containers: zip
//! archives, legacy torch streams, `.npy` files and safetensors files.
//! Whatever is no zip or `.npy` is also simulated as a pickle, because
//! `pickle.load` (and torch.load's legacy path) reads any bytes as one.

use super::archive;
use super::pickle::{scan_pickles, Scanned, Start};
use super::{FileFormat, Finding, Sink, Verdict};
use crate::decompress::Wrapper;
use crate::numpy;
use safeweights::{sniff, FileKind};

/// Pickles in a legacy torch file before the raw storages begin.
const LEGACY_PICKLES: usize = 5;

/// Detects the format of `data` with the core's sniffer and scans it.
pub(crate) fn scan_any(data: &[u8], sink: &mut Sink<'_>) -> FileFormat {
    match sniff(data) {
        FileKind::Zip => archive::scan_zip(data, sink),
        FileKind::Gzip => archive::scan_compressed(data, Wrapper::Gzip, sink),
        FileKind::Bzip2 => archive::scan_compressed(data, Wrapper::Bzip2, sink),
        FileKind::Xz => archive::scan_compressed(data, Wrapper::Xz, sink),
        FileKind::SevenZip => super::seven_zip::scan_seven_zip(data, sink),
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
        kind if kind.is_placeholder() => FileFormat::NotAModel(kind),
        // pickle.load needs no magic number: whatever is no archive,
        // array or safetensors file is simulated as a pickle.
        _ => {
            // Python's zipfile opens a zip after other data (a pickle, a
            // self-extractor's stub) from its end records: so do we.
            if crate::zip::ends_like_zip(data) {
                archive::scan_zip(data, sink);
            }
            match super::tar::scan_tar(data, sink) {
                Some(format) => format,
                None => scan_pickle_file(data, sink),
            }
        }
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
