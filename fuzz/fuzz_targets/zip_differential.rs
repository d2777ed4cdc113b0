//! Parser differentials: for any input our zip reader accepts, Python's
//! zipfile (through the faithful in-process model that
//! `crates/safeweights-pickle/tests/zipfile_model.rs` checks against the
//! real one) must see exactly the same members: same names in the same
//! order, same local header offsets, data starts, sizes, methods and CRCs.
//! Anything where they could differ must be refused as ambiguous. Seeds
//! are real torch.save / np.savez / zipfile archives (make_zip_corpus.py),
//! so byte mutations land on real central directories and end records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safeweights_pickle::zip::{Method, ZipArchive};
use safeweights_pickle::Limits;

#[path = "../../crates/safeweights-pickle/tests/support/zipfile_model.rs"]
mod zipfile_model;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_zip_entries: 10_000,
        ..Limits::default()
    };
    let Ok(ours) = ZipArchive::parse(data, &limits) else {
        return;
    };
    let theirs = zipfile_model::infolist(data).expect("zipfile opens every archive we accept");
    let ours: Vec<_> = ours
        .entries()
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.local_header as i128,
                // zipfile's open() raises NotImplementedError for a method it
                // cannot decompress, as our reader refuses to read one: neither
                // reads such a member's data, so neither has a data start.
                match e.method {
                    Method::Unsupported(_) => None,
                    _ => Some(e.data.start as u64),
                },
                e.data.len() as u64,
                e.size,
                e.method.code(),
                e.crc32,
            )
        })
        .collect();
    let theirs: Vec<_> = theirs
        .into_iter()
        .map(|i| {
            (
                i.filename,
                i.header_offset,
                i.data_start,
                i.compress_size,
                i.file_size,
                i.compress_type,
                i.crc,
            )
        })
        .collect();
    assert_eq!(ours, theirs, "zipfile sees other members than our reader");
});
