//! An input truncated while it is converted is an error naming it, never a
//! `SIGBUS` (issue 15): the converter copies out of its input map under
//! `safeweights::read::bus_error::guard`.

use std::path::{Path, PathBuf};

use safeweights_convert::{convert_with_progress, ConvertOptions, Progress, Stage};
use safeweights_convert::{ConvertReport, Error};
use safeweights_testkit::files::{npy_u8_head, truncate};

/// The values of the input array: 1, 2, 3, ..., 251, 1, 2, ...
fn values() -> Vec<u8> {
    (0..1usize << 20).map(|i| (i % 251) as u8 + 1).collect()
}

/// Converts a 1 MiB `.npy` file, with verification, in a fresh folder
/// named `name`, and cuts the input to one page at the first progress
/// report for which `when` holds. Returns the input, the output and what
/// the conversion returned.
fn convert_truncating(
    name: &str,
    when: impl Fn(&Progress<'_>) -> bool,
) -> (PathBuf, PathBuf, Result<ConvertReport, Error>) {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("truncation")
        .join(name);
    std::fs::remove_dir_all(&work).ok();
    std::fs::create_dir_all(&work).unwrap();
    let input = work.join("array.npy");
    let mut bytes = npy_u8_head(1 << 20);
    bytes.extend(values());
    std::fs::write(&input, bytes).unwrap();
    let output = work.join("out.safetensors");
    let options = ConvertOptions {
        verify: true,
        ..ConvertOptions::default()
    };
    let mut truncated = false;
    let result = convert_with_progress(&input, &output, &options, &mut |progress| {
        if !truncated && when(&progress) {
            truncate(&input, 4096);
            truncated = true;
        }
    });
    assert!(truncated, "no progress report matched");
    (input, output, result)
}

#[test]
fn an_input_truncated_while_it_is_written_out_is_an_io_error_naming_it() {
    // The writer's next write(2) from the map fails (EFAULT).
    let (input, _, result) = convert_truncating("write", |_| true);
    let error = result.unwrap_err();
    match error.root() {
        Error::Io { path, source } => {
            assert_eq!(path, &input);
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
            assert!(source.to_string().contains("became shorter"), "{source}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn an_input_truncated_after_it_was_written_out_does_not_touch_the_verification() {
    // Verification checks the digests taken while the input was read
    // against the output read back: it never reads the input again, so a
    // cut after the write changes nothing, and the output holds the data as
    // it was read.
    let (_, output, result) = convert_truncating("after-write", |p| {
        p.stage == Stage::Write && p.bytes_done == p.bytes_total
    });
    assert!(result.unwrap().verified);
    let written = std::fs::read(&output).unwrap();
    assert!(written.ends_with(&values()));
}
