//! The one-pass verification of `convert`: digests taken while writing,
//! checked against the output read back. A byte flipped in the output, or
//! in the source the digests were taken from, fails it.

use std::path::{Path, PathBuf};

use super::verify_written;
use crate::output::{plan, Plan};
use crate::{input, metadata, ConvertOptions, Reporter, Stage};

/// A `.npy` file of little-endian f32 values.
fn write_npy(path: &Path, values: &[f32]) {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    let mut bytes = safeweights_testkit::files::npy_head(&dict);
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sw-verify-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn flip(path: &Path, at_end: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - at_end as usize;
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

/// Writes `source` to `output` as `convert` does; returns the plan and
/// the digests of the write pass.
fn write(source: &Path, output: &Path) -> (Plan, Vec<u128>, safeweights::Metadata) {
    let options = ConvertOptions::default();
    let input = input::open(source, &options.limits).unwrap();
    let plan = plan(&input, &options, output).unwrap();
    let metadata = metadata(&input, options.keep_checkpoint_metadata);
    let mut ignore = |_: crate::Progress<'_>| {};
    let mut reporter = Reporter {
        stage: Stage::Write,
        done: 0,
        total: plan.total_bytes(),
        callback: &mut ignore,
    };
    let digests = plan
        .write(&input, &metadata, &options.write, &mut reporter)
        .unwrap();
    (plan, digests, metadata)
}

fn verify(plan: &Plan, digests: &[u128], metadata: &safeweights::Metadata, output: &Path) -> bool {
    let mut ignore = |_: crate::Progress<'_>| {};
    let mut reporter = Reporter {
        stage: Stage::Verify,
        done: 0,
        total: plan.total_bytes(),
        callback: &mut ignore,
    };
    match verify_written(&plan.items, digests, metadata, output, &mut reporter) {
        Ok(()) => true,
        Err(crate::Error::Verify { path, message }) => {
            assert_eq!(path, output, "{message}");
            assert!(message.contains("differ"), "{message}");
            false
        }
        Err(other) => panic!("expected a verification error, got {other}"),
    }
}

#[test]
fn a_byte_flipped_in_the_output_fails_verification() {
    let dir = scratch("output");
    let (source, output) = (dir.join("w.npy"), dir.join("w.safetensors"));
    let values: Vec<f32> = (0..10_000).map(|i| i as f32 * 0.5).collect();
    write_npy(&source, &values);
    let (plan, digests, metadata) = write(&source, &output);
    assert!(verify(&plan, &digests, &metadata, &output));
    for at_end in [1, 4, 20_000, 40_000] {
        flip(&output, at_end);
        assert!(!verify(&plan, &digests, &metadata, &output), "{at_end}");
        flip(&output, at_end);
        assert!(verify(&plan, &digests, &metadata, &output), "{at_end}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn digests_of_a_source_with_a_flipped_byte_fail_against_the_output() {
    let dir = scratch("source");
    let (source, output) = (dir.join("w.npy"), dir.join("w.safetensors"));
    let values: Vec<f32> = (0..10_000).map(|i| (i as f32).sin()).collect();
    write_npy(&source, &values);
    let (plan, _, metadata) = write(&source, &output);
    for at_end in [1, 7, 39_999] {
        let other = dir.join(format!("flipped-{at_end}.npy"));
        std::fs::copy(&source, &other).unwrap();
        flip(&other, at_end);
        let (_, flipped, _) = write(&other, &dir.join(format!("flipped-{at_end}.safetensors")));
        assert!(!verify(&plan, &flipped, &metadata, &output), "{at_end}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
