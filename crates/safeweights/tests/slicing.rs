//! Property: slicing (negative steps, new axes and `...` included) agrees
//! with a naive element-by-element gather, for in-memory views and for files
//! read through both backends.

use proptest::prelude::*;
use safeweights::read::{Backend, OpenOptions, SafeTensors, SafetensorsFile};
use safeweights::slice::SliceArg;
use safeweights::write::{serialize, TensorRef, WriteOptions};
use safeweights::{Dtype, Error};

/// Python's rules, written independently of the library: the indices one
/// argument selects along a dimension of `len`, in order, and whether the
/// dimension is kept. `None` means the request is invalid.
fn naive_indices(arg: SliceArg, len: usize) -> Option<(Vec<usize>, bool)> {
    let len = len as i64;
    match arg {
        SliceArg::Index(i) => {
            let i = if i < 0 { i + len } else { i };
            (0..len).contains(&i).then(|| (vec![i as usize], false))
        }
        SliceArg::Range { start, stop, step } => {
            let step = step.unwrap_or(1);
            if step == 0 {
                return None;
            }
            // Python clamps the start into the walkable range (not onto the
            // step's grid), then walks until the stop or the tensor's end.
            let normal = |v: i64| if v < 0 { v + len } else { v };
            let mut i = match (start, step > 0) {
                (None, true) => 0,
                (None, false) => len - 1,
                (Some(v), true) => normal(v).max(0),
                (Some(v), false) => normal(v).min(len - 1),
            };
            let before_stop = |i: i64| match (stop, step > 0) {
                (None, _) => true,
                (Some(v), true) => i < normal(v),
                (Some(v), false) => i > normal(v),
            };
            let mut indices = Vec::new();
            while (0..len).contains(&i) && before_stop(i) {
                indices.push(i as usize);
                i += step;
            }
            Some((indices, true))
        }
        _ => None,
    }
}

/// Gathers element by element; returns the shape and bytes, or `None`.
fn naive_slice(
    shape: &[usize],
    elem: usize,
    data: &[u8],
    args: &[SliceArg],
) -> Option<(Vec<usize>, Vec<u8>)> {
    let consuming = args
        .iter()
        .filter(|a| !matches!(a, SliceArg::NewAxis | SliceArg::Ellipsis))
        .count();
    let ellipses = args.iter().filter(|a| **a == SliceArg::Ellipsis).count();
    if consuming > shape.len() || ellipses > 1 {
        return None;
    }
    // Expand `...` (or append it) into whole dimensions.
    let mut expanded = Vec::new();
    let fill = vec![SliceArg::FULL; shape.len() - consuming];
    for &arg in args {
        if arg == SliceArg::Ellipsis {
            expanded.extend_from_slice(&fill);
        } else {
            expanded.push(arg);
        }
    }
    if ellipses == 0 {
        expanded.extend_from_slice(&fill);
    }
    let mut per_dim = Vec::new();
    let mut out_shape = Vec::new();
    for arg in expanded {
        if arg == SliceArg::NewAxis {
            out_shape.push(1);
            continue;
        }
        let (indices, keep) = naive_indices(arg, shape[per_dim.len()])?;
        if keep {
            out_shape.push(indices.len());
        }
        per_dim.push(indices);
    }
    let mut strides = vec![1usize; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    let mut out = Vec::new();
    let mut position = vec![0usize; shape.len()];
    if per_dim.iter().any(Vec::is_empty) {
        return Some((out_shape, out));
    }
    loop {
        let flat: usize = position
            .iter()
            .zip(&per_dim)
            .zip(&strides)
            .map(|((&p, idx), &s)| idx[p] * s)
            .sum();
        out.extend_from_slice(&data[flat * elem..(flat + 1) * elem]);
        let mut axis = shape.len();
        loop {
            if axis == 0 {
                return Some((out_shape, out));
            }
            axis -= 1;
            position[axis] += 1;
            if position[axis] < per_dim[axis].len() {
                break;
            }
            position[axis] = 0;
        }
    }
}

fn any_arg() -> impl Strategy<Value = SliceArg> {
    prop_oneof![
        4 => (-7i64..7).prop_map(SliceArg::Index),
        8 => (
            prop::option::of(-8i64..8),
            prop::option::of(-8i64..8),
            prop::option::weighted(0.7, -4i64..4),
        )
            .prop_map(|(start, stop, step)| SliceArg::Range { start, stop, step }),
        1 => Just(SliceArg::NewAxis),
        1 => Just(SliceArg::Ellipsis),
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
