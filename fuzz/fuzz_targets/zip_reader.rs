//! The strict zip reader, `.npz` arrays and zip checkpoints on arbitrary
//! bytes: never panic, and what is accepted is consistent (sizes match,
//! a member's prefix is the start of the member, the lenient parse of a
//! strictly valid archive finds the same members and no issues).
#![no_main]

use libfuzzer_sys::fuzz_target;
use safeweights_pickle::numpy::{data_len, Npz};
use safeweights_pickle::torch::Checkpoint;
use safeweights_pickle::zip::ZipArchive;
use safeweights_pickle::Limits;

fn limits() -> Limits {
    Limits {
        max_zip_entries: 1_000,
        max_decompressed: 16 << 20,
        max_ops: 100_000,
        max_nodes: 100_000,
        ..Limits::default()
    }
}

fn check_archive(data: &[u8], limits: &Limits) {
    let Ok(zip) = ZipArchive::parse(data, limits) else {
        let _ = ZipArchive::parse_lenient(data, limits);
        return;
    };
    for entry in zip.entries() {
        let Ok(full) = zip.read(data, entry, limits) else {
            continue;
        };
        assert_eq!(full.len() as u64, entry.size, "{}", entry.name);
        let prefix = zip
            .read_prefix(data, entry, 64)
            .expect("a readable member has a readable prefix");
        assert!(full.starts_with(&prefix), "{}", entry.name);
        assert_eq!(prefix.len(), full.len().min(64), "{}", entry.name);
    }
    let (lenient, issues) = ZipArchive::parse_lenient(data, limits).expect("strict accepted it");
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(lenient.entries(), zip.entries());
}

fn check_npz(data: &[u8], limits: &Limits) {
    let Ok(npz) = Npz::parse(data, limits) else {
        return;
    };
    let Ok(headers) = npz.headers(data) else {
        return;
    };
    for (name, header) in headers {
        if let Ok((read, bytes)) = npz.read(data, &name, limits) {
            assert_eq!(read, header, "{name}: peeked and read headers differ");
            assert_eq!(Some(bytes.len() as u64), data_len(&header).ok(), "{name}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    check_archive(data, &limits);
    check_npz(data, &limits);
    if let Ok(ckpt) = Checkpoint::from_bytes_with_limits(data.to_vec(), limits) {
        for entry in ckpt.tensors() {
            if let Ok(bytes) = ckpt.read_tensor(entry) {
                assert_eq!(bytes.len() as u64, entry.nbytes(), "{}", entry.name);
            }
        }
    }
});
