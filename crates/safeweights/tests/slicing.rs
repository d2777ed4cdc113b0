//! Property: slicing agrees with a naive element-by-element gather, for
//! in-memory views and for files read through both backends.

use proptest::prelude::*;
use safeweights::read::{Backend, OpenOptions, SafeTensors, SafetensorsFile};
use safeweights::slice::SliceArg;
use safeweights::write::{serialize, TensorRef, WriteOptions};
use safeweights::{Dtype, Error};

/// Python's rules, written independently of the library: the indices one
/// argument selects along a dimension of `len`, and whether it is kept.
/// `None` means the request is invalid.
fn naive_indices(arg: SliceArg, len: usize) -> Option<(Vec<usize>, bool)> {
    let len = len as i64;
    match arg {
        SliceArg::Index(i) => {
            let i = if i < 0 { i + len } else { i };
            (0..len).contains(&i).then(|| (vec![i as usize], false))
        }
        SliceArg::Range { start, stop, step } => {
            let step = step.unwrap_or(1);
            if step <= 0 {
                return None;
            }
            let bound = |v: Option<i64>, default: i64| {
                let v = v.unwrap_or(default);
                if v < 0 {
                    (v + len).max(0)
                } else {
                    v.min(len)
                }
            };
            let (start, stop) = (bound(start, 0), bound(stop, len));
            let indices = (start..stop)
                .step_by(step as usize)
                .map(|i| i as usize)
                .collect();
            Some((indices, true))
        }
    }
}

/// Gathers element by element; returns the shape and bytes, or `None`.
fn naive_slice(
    shape: &[usize],
    elem: usize,
    data: &[u8],
    args: &[SliceArg],
) -> Option<(Vec<usize>, Vec<u8>)> {
    if args.len() > shape.len() {
        return None;
    }
    let mut per_dim = Vec::new();
    for (axis, &len) in shape.iter().enumerate() {
        per_dim.push(naive_indices(
            args.get(axis).copied().unwrap_or(SliceArg::FULL),
            len,
        )?);
    }
    let out_shape = per_dim
        .iter()
        .filter(|(_, keep)| *keep)
        .map(|(idx, _)| idx.len())
        .collect();
    let mut strides = vec![1usize; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    let mut out = Vec::new();
    let mut position = vec![0usize; shape.len()];
    if per_dim.iter().any(|(idx, _)| idx.is_empty()) {
        return Some((out_shape, out));
    }
    loop {
        let flat: usize = position
            .iter()
            .zip(&per_dim)
            .zip(&strides)
            .map(|((&p, (idx, _)), &s)| idx[p] * s)
            .sum();
        out.extend_from_slice(&data[flat * elem..(flat + 1) * elem]);
        let mut axis = shape.len();
        loop {
            if axis == 0 {
                return Some((out_shape, out));
            }
            axis -= 1;
            position[axis] += 1;
            if position[axis] < per_dim[axis].0.len() {
                break;
            }
            position[axis] = 0;
        }
    }
}

fn any_arg() -> impl Strategy<Value = SliceArg> {
    prop_oneof![
        (-7i64..7).prop_map(SliceArg::Index),
        (
            prop::option::of(-8i64..8),
            prop::option::of(-8i64..8),
            prop::option::weighted(0.7, -1i64..4),
        )
            .prop_map(|(start, stop, step)| SliceArg::Range { start, stop, step }),
    ]
}

fn any_case() -> impl Strategy<Value = (Dtype, Vec<usize>, Vec<SliceArg>)> {
    (
        prop::sample::select(vec![
            Dtype::U8,
            Dtype::BOOL,
            Dtype::F16,
            Dtype::BF16,
            Dtype::F32,
            Dtype::C64,
        ]),
        prop::collection::vec(0usize..6, 0..=4),
    )
        .prop_flat_map(|(dtype, shape)| {
            let rank = shape.len();
            (
                Just(dtype),
                Just(shape),
                prop::collection::vec(any_arg(), 0..=rank + 1),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn slicing_agrees_with_a_naive_gather((dtype, shape, args) in any_case()) {
        let elem = dtype.byte_size().unwrap();
        let numel: usize = shape.iter().product();
        let data: Vec<u8> = (0..numel * elem).map(|i| (i % 251) as u8).collect();
        let pad = [0xAAu8; 24];
        let tensors = [
            ("pad", TensorRef::new(Dtype::U64, vec![3], &pad)),
            ("t", TensorRef::new(dtype, shape.clone(), &data)),
        ];
        let bytes = serialize(&tensors, None, &WriteOptions::default()).unwrap();
        let expected = naive_slice(&shape, elem, &data, &args);

        let parsed = SafeTensors::parse(&bytes).unwrap();
        let from_view = parsed.tensor("t").unwrap().slice(&args);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let mut results = vec![("view", from_view)];
        for backend in [Backend::Mmap, Backend::Pread] {
            let file = SafetensorsFile::open_with(&path, &OpenOptions { backend, ..OpenOptions::default() }).unwrap();
            results.push((if backend == Backend::Mmap { "mmap" } else { "pread" }, file.read_slice("t", &args)));
        }
        for (source, result) in results {
            match (&expected, result) {
                (Some(expected), Ok(actual)) => prop_assert_eq!(expected, &actual, "{}", source),
                (None, Err(error)) => {
                    prop_assert!(matches!(error.kind(), Error::InvalidSlice { tensor, .. } if tensor == "t"), "{}: {:?}", source, error);
                }
                (expected, actual) => prop_assert!(false, "{}: expected {:?}, got {:?}", source, expected, actual),
            }
        }
    }
}

#[test]
fn read_slice_of_a_missing_tensor_names_it() {
    let bytes = serialize::<&str>(&[], None, &WriteOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let file = SafetensorsFile::open(&path).unwrap();
    let error = file.read_slice("nope", &[]).unwrap_err();
    assert!(
        matches!(error.kind(), Error::TensorNotFound { name } if name == "nope"),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"nope\""));
}

#[test]
fn slicing_a_scalar_with_no_arguments_returns_it() {
    let value = 1.5f32.to_le_bytes();
    let tensors = [("s", TensorRef::new(Dtype::F32, vec![], &value))];
    let bytes = serialize(&tensors, None, &WriteOptions::default()).unwrap();
    let parsed = SafeTensors::parse(&bytes).unwrap();
    let (shape, data) = parsed.tensor("s").unwrap().slice(&[]).unwrap();
    assert!(shape.is_empty());
    assert_eq!(data, value);
    let error = parsed
        .tensor("s")
        .unwrap()
        .slice(&[SliceArg::Index(0)])
        .unwrap_err();
    assert!(
        matches!(error.kind(), Error::InvalidSlice { .. }),
        "{error:?}"
    );
}

#[test]
fn slicing_rows_of_a_sub_byte_tensor_through_every_reader() {
    // F4 [4, 4]: each row is two bytes.
    let data: Vec<u8> = (0..8).collect();
    let tensors = [("q", TensorRef::new(Dtype::F4, vec![4, 4], &data))];
    let bytes = serialize(&tensors, None, &WriteOptions::default()).unwrap();
    let parsed = SafeTensors::parse(&bytes).unwrap();
    let rows = [SliceArg::Range {
        start: Some(1),
        stop: None,
        step: Some(2),
    }];
    assert_eq!(
        parsed.tensor("q").unwrap().slice(&rows).unwrap(),
        (vec![2, 4], vec![2, 3, 6, 7])
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    for backend in [Backend::Mmap, Backend::Pread] {
        let file = SafetensorsFile::open_with(
            &path,
            &OpenOptions {
                backend,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            file.read_slice("q", &rows).unwrap(),
            (vec![2, 4], vec![2, 3, 6, 7])
        );
        let column = [SliceArg::FULL, SliceArg::Index(1)];
        let error = file.read_slice("q", &column).unwrap_err();
        assert!(
            matches!(error.kind(), Error::InvalidSlice { .. }),
            "{backend:?}: {error:?}"
        );
    }
}
