//! The safe pickle VM, the torch checkpoint reader (legacy streams are
//! pickles) and the scanner on arbitrary bytes: never panic, stay within
//! the limits, and agree: a file the reader accepts is never "dangerous".
#![no_main]

use libfuzzer_sys::fuzz_target;
use safeweights_pickle::pickle::{load_pickle, Policy};
use safeweights_pickle::scan::{scan_bytes, Verdict};
use safeweights_pickle::torch::Checkpoint;
use safeweights_pickle::Limits;

/// Small limits, so bombs fail in microseconds instead of timing out.
fn limits() -> Limits {
    Limits {
        max_ops: 100_000,
        max_stack: 10_000,
        max_memo: 10_000,
        max_string_len: 1 << 20,
        max_container_len: 100_000,
        max_nodes: 100_000,
        max_decompressed: 16 << 20,
        ..Limits::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    for policy in [Policy::Literals, Policy::Torch, Policy::TorchLegacy] {
        if let Ok(loaded) = load_pickle(data, 0, &limits, policy) {
            assert!(loaded.end <= data.len());
            if policy == Policy::Literals {
                assert!(
                    loaded.storages.is_empty(),
                    "literals cannot reference storages"
                );
            }
        }
    }
    let accepted = match Checkpoint::from_bytes_with_limits(data.to_vec(), limits.clone()) {
        Ok(ckpt) => {
            for entry in ckpt.tensors() {
                if let Ok(bytes) = ckpt.read_tensor(entry) {
                    assert_eq!(bytes.len() as u64, entry.nbytes(), "{}", entry.name);
                }
            }
            true
        }
        Err(_) => false,
    };
    let report = scan_bytes("fuzz", data, &limits);
    if accepted {
        assert!(
            report.verdict() < Verdict::Dangerous,
            "the reader accepted a file the scanner calls dangerous: {report:?}"
        );
    }
});
