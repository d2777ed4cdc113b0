use super::*;
use crate::format::Dtype;

fn range(start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> SliceArg {
    SliceArg::Range { start, stop, step }
}

fn spec(text: &str) -> Result<Vec<SliceArg>, SliceParseError> {
    text.parse::<SliceSpec>().map(|s| s.0)
}

#[test]
fn slice_spec_parses_python_syntax() {
    assert_eq!(
        spec("0:2, :, ::4").unwrap(),
        vec![
            range(Some(0), Some(2), None),
            SliceArg::FULL,
            range(None, None, Some(4))
        ]
    );
    assert_eq!(spec("-1").unwrap(), vec![SliceArg::Index(-1)]);
    assert_eq!(spec(" 3 ").unwrap(), vec![SliceArg::Index(3)]);
    assert_eq!(
        spec("-3:-1:2").unwrap(),
        vec![range(Some(-3), Some(-1), Some(2))]
    );
    assert_eq!(spec("::").unwrap(), vec![SliceArg::FULL]);
    assert_eq!(spec(":5").unwrap(), vec![range(None, Some(5), None)]);
    assert_eq!(spec("").unwrap(), Vec::<SliceArg>::new());
    assert_eq!(spec("   ").unwrap(), Vec::<SliceArg>::new());
}

#[test]
fn slice_spec_rejects_malformed_expressions() {
    for bad in [
        "1:2:3:4",
        "a",
        "1:b",
        ",",
        "0,",
        "1.5",
        "::x",
        "99999999999999999999",
    ] {
        let error = spec(bad).unwrap_err();
        assert!(
            error.to_string().starts_with("invalid slice expression"),
            "{bad:?}"
        );
    }
}

#[test]
fn plan_follows_python_clamping_and_negative_indices() {
    let dims = plan("t", &[10], &[range(Some(-3), None, None)])
        .unwrap()
        .dims;
    assert_eq!(
        dims[0],
        DimSlice {
            start: 7,
            count: 3,
            step: 1,
            keep: true
        }
    );
    let dims = plan("t", &[10], &[range(Some(-100), Some(100), Some(3))])
        .unwrap()
        .dims;
    assert_eq!(
        dims[0],
        DimSlice {
            start: 0,
            count: 4,
            step: 3,
            keep: true
        }
    );
    let dims = plan("t", &[10], &[range(Some(8), Some(2), None)])
        .unwrap()
        .dims;
    assert_eq!(dims[0].count, 0);
    let selection = plan("t", &[4, 5], &[SliceArg::Index(-1)]).unwrap();
    let dims = selection.dims();
    assert_eq!(
        dims[0],
        DimSlice {
            start: 3,
            count: 1,
            step: 1,
            keep: false
        }
    );
    assert_eq!(
        dims[1],
        DimSlice {
            start: 0,
            count: 5,
            step: 1,
            keep: true
        }
    );
    assert_eq!(selection.shape(), vec![5]);
}

#[test]
fn plan_rejects_bad_requests_naming_the_tensor() {
    let cases = [
        (vec![SliceArg::Index(4)], "out of range"),
        (vec![SliceArg::Index(-5)], "out of range"),
        (vec![SliceArg::Index(i64::MIN)], "out of range"),
        (vec![range(None, None, Some(0))], "cannot be zero"),
        (vec![SliceArg::FULL, SliceArg::FULL], "too many indices"),
        (
            vec![SliceArg::Ellipsis, SliceArg::Ellipsis],
            "single ellipsis",
        ),
    ];
    for (args, needle) in cases {
        let error = plan("weight", &[4], &args).unwrap_err();
        assert!(matches!(error, Error::InvalidSlice { .. }), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains("\"weight\"") && text.contains(needle),
            "{text}"
        );
    }
}

#[test]
fn sub_byte_slices_must_fall_on_byte_boundaries() {
    // F4, shape [2, 4]: a row is 2 bytes, so rows can be sliced ...
    let data = [0x10u8, 0x32, 0x54, 0x76];
    let dims = plan("q", &[2, 4], &[SliceArg::Index(1)]).unwrap();
    assert_eq!(
        gather("q", Dtype::F4, &[2, 4], &data, &dims).unwrap(),
        vec![0x54, 0x76]
    );
    // ... but a single column cannot.
    let dims = plan(
        "q",
        &[2, 4],
        &[SliceArg::FULL, range(Some(1), Some(2), None)],
    )
    .unwrap();
    let error = gather("q", Dtype::F4, &[2, 4], &data, &dims).unwrap_err();
    assert!(matches!(error, Error::InvalidSlice { .. }), "{error:?}");
    // Nor can the last axis run backwards, while rows can.
    let dims = plan("q", &[2, 4], &[range(None, None, Some(-1))]).unwrap();
    assert_eq!(
        gather("q", Dtype::F4, &[2, 4], &data, &dims).unwrap(),
        vec![0x54, 0x76, 0x10, 0x32]
    );
    let dims = plan("q", &[2, 4], &[SliceArg::FULL, range(None, None, Some(-1))]).unwrap();
    let error = gather("q", Dtype::F4, &[2, 4], &data, &dims).unwrap_err();
    assert!(matches!(error, Error::InvalidSlice { .. }), "{error:?}");
}

#[test]
fn negative_steps_and_new_axes_follow_numpy() {
    // A 3x4 tensor of u8 values 0..12.
    let data: Vec<u8> = (0..12).collect();
    let shape = [3, 4];
    let cases: &[(&str, &[usize], &[u8])] = &[
        ("::-1", &[3, 4], &[8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]),
        (":, ::-2", &[3, 2], &[3, 1, 7, 5, 11, 9]),
        ("2:0:-1, 3", &[2], &[11, 7]),
        ("-1:-4:-1, 1:3", &[3, 2], &[9, 10, 5, 6, 1, 2]),
        ("None, 1", &[1, 4], &[4, 5, 6, 7]),
        ("..., None", &[3, 4, 1], &data),
        ("1, ..., ::-3", &[2], &[7, 4]),
        (
            "::-1, None, ::-1",
            &[3, 1, 4],
            &[11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        ),
        ("0:3:-1", &[0, 4], &[]),
        ("5::-10", &[1, 4], &[8, 9, 10, 11]),
    ];
    for (text, want_shape, want) in cases {
        let args = spec(text).unwrap();
        let selection = plan("t", &shape, &args).unwrap();
        assert_eq!(selection.shape(), *want_shape, "{text}");
        let got = gather("t", Dtype::U8, &shape, &data, &selection).unwrap();
        assert_eq!(got, *want, "{text}");
        let mut runs = Vec::new();
        for_each_run("t", Dtype::U8, &shape, &selection, |offset, len| {
            runs.extend_from_slice(&data[offset..offset + len]);
            Ok(())
        })
        .unwrap();
        selection.finish("t", Dtype::U8, &mut runs).unwrap();
        assert_eq!(runs, *want, "{text} through runs");
    }
}
