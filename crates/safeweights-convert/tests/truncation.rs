//! An input truncated while it is converted is an error naming it, never a
//! `SIGBUS` (issue 15): the converter copies out of its input map under
//! `safeweights::read::bus_error::guard`.

use std::io::Write;
use std::path::Path;

use safeweights_convert::Error;
use safeweights_convert::{convert_with_progress, ConvertOptions, Progress, Stage};

/// A `.npy` file of `len` uint8 values (1, 2, 3, ...).
fn npy(path: &Path, len: usize) {
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({len},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(b"\x93NUMPY\x01\x00").unwrap();
    file.write_all(&(header.len() as u16).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
    file.write_all(&data).unwrap();
}

/// Converts with verification, truncating the input at the first progress
/// report for which `when` is true; the error must be an `UnexpectedEof`
/// I/O error naming the input.
fn truncated_during_conversion(name: &str, when: impl Fn(&Progress<'_>) -> bool) {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("truncation")
        .join(name);
    std::fs::remove_dir_all(&work).ok();
    std::fs::create_dir_all(&work).unwrap();
    let input = work.join("array.npy");
    npy(&input, 1 << 20);
    let output = work.join("out.safetensors");
    let options = ConvertOptions {
        verify: true,
        ..ConvertOptions::default()
    };
    // Written, then cut before the verification reads the input again.
    let mut truncated = false;
    let result = convert_with_progress(&input, &output, &options, &mut |progress| {
        if !truncated && when(&progress) {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&input)
                .unwrap()
                .set_len(4096)
                .unwrap();
            truncated = true;
        }
    });
    assert!(truncated);
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
fn an_input_truncated_while_it_is_written_out_is_an_io_error_naming_it() {
    // The writer's next write(2) from the map fails (EFAULT).
    truncated_during_conversion("write", |_| true);
}

#[test]
fn an_input_truncated_after_it_was_written_out_does_not_touch_the_verification() {
    // Verification checks the digests taken while the input was read
    // against the output read back: it never reads the input again, so a
    // cut after the write changes nothing, and the output holds the data as
    // it was read.
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("truncation")
        .join("after-write");
    std::fs::remove_dir_all(&work).ok();
    std::fs::create_dir_all(&work).unwrap();
    let input = work.join("array.npy");
    npy(&input, 1 << 20);
    let output = work.join("out.safetensors");
    let options = ConvertOptions {
        verify: true,
        ..ConvertOptions::default()
    };
    let mut truncated = false;
    let report = convert_with_progress(&input, &output, &options, &mut |p| {
        if !truncated && p.stage == Stage::Write && p.bytes_done == p.bytes_total {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&input)
                .unwrap()
                .set_len(4096)
                .unwrap();
            truncated = true;
        }
    })
    .unwrap();
    assert!(truncated && report.verified);
    let written = std::fs::read(&output).unwrap();
    let expected: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8 + 1).collect();
    assert!(written.ends_with(&expected));
}
