//! Reading arbitrary files: parse, touch every tensor, slice a few with
//! arguments taken from the input, and compare the in-memory reader with
//! both file backends when the file is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safeweights::read::{Backend, OpenOptions, SafeTensors, SafetensorsFile};
use safeweights::slice::SliceArg;

fn args_from(seed: &[u8], rank: usize) -> Vec<SliceArg> {
    seed.chunks(4)
        .take(rank + 1)
        .map(|c| {
            let v = |i: usize| c.get(i).map(|&b| i64::from(b as i8) % 9);
            match c.first().map(|b| b % 3) {
                Some(0) => SliceArg::Index(v(1).unwrap_or(0)),
                _ => SliceArg::Range {
                    start: v(1),
                    stop: v(2),
                    step: v(3).map(|s| s % 4),
                },
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = SafeTensors::parse(data) else {
        return;
    };
    let seed = &data[data.len().saturating_sub(16)..];
    let mut slices = Vec::new();
    for (i, tensor) in file.tensors().enumerate() {
        let checksum = tensor
            .data()
            .iter()
            .fold(0u8, |acc, &b| acc.wrapping_add(b));
        std::hint::black_box(checksum);
        assert_eq!(tensor.data().len(), tensor.info().byte_len());
        if i < 4 {
            let args = args_from(&seed[i.min(seed.len())..], tensor.shape().len());
            let result = tensor.slice(&args);
            if let Ok((shape, bytes)) = &result {
                let numel: usize = shape.iter().product();
                assert_eq!(Some(bytes.len()), tensor.dtype().bytes_for(numel));
            }
            slices.push((tensor.name().to_owned(), args, result.ok()));
        }
    }

    // The same through both file backends.
    let Ok(mut temp) = tempfile::NamedTempFile::new() else {
        return;
    };
    if std::io::Write::write_all(&mut temp, data).is_err() {
        return;
    }
    for backend in [Backend::Mmap, Backend::Pread] {
        let options = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        let opened = SafetensorsFile::open_with(temp.path(), &options)
            .expect("valid in memory, valid on disk");
        assert!(opened.header().tensors().eq(file.header().tensors()));
        for tensor in file.tensors() {
            assert_eq!(
                &opened.tensor_bytes(tensor.name()).unwrap()[..],
                tensor.data()
            );
        }
        for (name, args, expected) in &slices {
            assert_eq!(
                &opened.read_slice(name, args).ok(),
                expected,
                "{backend:?} {name} {args:?}"
            );
        }
    }
});
