//! 7z archives (the "nullifAI" models): opened and every member scanned,
//! as a user who extracts the archive and loads what is inside would load
//! it.
//!
//! The archive is read with `sevenz-rust2` under three bounds: its memory
//! limit (header buffers and decoder dictionaries, [`DECODER_MEMORY`]),
//! the scan's output budget (each member is read through a capped buffer,
//! never past `max_decompressed` nor the file's remaining
//! `max_total_decompressed`), and the scan's nesting depth. Whatever cannot
//! be read (encrypted or unsupported members, corrupt data, a bomb) makes
//! the file at least *suspicious*: a member we could not see is never safe.

use std::io::{Cursor, Read};

use sevenz_rust2::{ArchiveReader, EntryDecision, Password};

use super::container::scan_any;
use super::{FileFormat, Finding, Sink, Verdict};

/// Most memory the 7z decoder may take for header buffers and one
/// dictionary (KiB): 7-Zip's largest preset (`-mx9`) uses a 64 MiB
/// dictionary; anything past this is refused rather than allocated.
const DECODER_MEMORY: usize = 1 << 20;

/// Scans a 7z archive: every member is decompressed within the scan's
/// limits and scanned like a file of its own.
pub(super) fn scan_seven_zip(data: &[u8], sink: &mut Sink<'_>) -> FileFormat {
    let opened =
        ArchiveReader::new_with_memory_limit(Cursor::new(data), Password::empty(), DECODER_MEMORY);
    let mut reader = match opened {
        Ok(reader) => reader,
        Err(e) => {
            unreadable(sink, "7z archive", &e.to_string());
            return FileFormat::SevenZip;
        }
    };
    // One decoder thread: a scan must not fan out on a shared machine, and
    // the members are read one after the other anyway.
    reader.set_thread_count(1);
    let result = reader.for_each_entries_with_decision(|entry, stream| {
        if entry.is_directory() || !entry.has_stream() {
            return Ok(EntryDecision::Continue);
        }
        Ok(scan_member(entry.name(), stream, sink))
    });
    if let Err(e) = result {
        unreadable(sink, "7z archive", &e.to_string());
    }
    FileFormat::SevenZip
}

/// Reads one member through a buffer capped by the scan's budget and
/// scans what it read. The declared size is only a hint: a member that
/// decodes to more stops at the cap all the same. Like the bytes an
/// extractor leaves on disk before it reports an error, whatever decoded
/// before corrupt data is scanned too.
fn scan_member(name: &str, stream: &mut dyn Read, sink: &mut Sink<'_>) -> EntryDecision {
    let cap = sink.limits.max_decompressed.min(
        sink.limits
            .max_total_decompressed
            .saturating_sub(sink.decompressed),
    );
    // Grows with the data: a lying declared size allocates nothing.
    let mut bytes = Vec::new();
    let read = stream.take(cap.saturating_add(1)).read_to_end(&mut bytes);
    let too_large = bytes.len() as u64 > cap;
    bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    sink.decompressed = sink.decompressed.saturating_add(bytes.len() as u64);
    sink.nested(name, |sink| {
        if too_large {
            sink.add(Finding::new(
                "7z member",
                0,
                Verdict::Suspicious,
                format!(
                    "decompresses to more than {cap} bytes (max_decompressed or the file's \
                     remaining max_total_decompressed): a decompression bomb or an implausibly \
                     large model; only its first {cap} bytes were scanned and no later member"
                ),
            ));
        }
        if let Err(e) = &read {
            unreadable(sink, "7z member", &e.to_string());
        }
        scan_any(&bytes, sink);
    });
    if too_large || read.is_err() {
        EntryDecision::Stop
    } else {
        EntryDecision::Continue
    }
}

fn unreadable(sink: &mut Sink<'_>, subject: &str, why: &str) {
    sink.add(Finding::new(
        subject,
        0,
        Verdict::Suspicious,
        format!(
            "cannot be read ({why}); what it holds could not be checked: unpack it in a sandbox \
             and scan every file inside"
        ),
    ));
}

#[cfg(test)]
#[path = "seven_zip_tests.rs"]
mod tests;
