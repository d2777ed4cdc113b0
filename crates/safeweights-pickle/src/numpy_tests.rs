//! `.npy` unit tests on hand-built files.

use super::*;

fn npy(header: &str, body: &[u8]) -> Vec<u8> {
    let mut out = safeweights_testkit::files::npy_head(header);
    out.extend(body);
    out
}

#[test]
fn c_order_little_endian_is_borrowed() {
    let f = npy(
        "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 2), }",
        &[1, 0, 2, 0, 3, 0, 4, 0],
    );
    let (h, data) = read_npy(&f, &Limits::default()).unwrap();
    assert_eq!((h.dtype, h.shape.clone()), (Dtype::I16, vec![2, 2]));
    assert!(matches!(data, Cow::Borrowed(_)));
    assert_eq!(&*data, &[1, 0, 2, 0, 3, 0, 4, 0]);
}

#[test]
fn fortran_order_and_big_endian_are_normalized() {
    // [[1, 2], [3, 4]] stored column-major, big-endian.
    let f = npy(
        "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 2), }",
        &[0, 1, 0, 3, 0, 2, 0, 4],
    );
    let (_, data) = read_npy(&f, &Limits::default()).unwrap();
    assert_eq!(&*data, &[1, 0, 2, 0, 3, 0, 4, 0]);
}

#[test]
fn scalars_and_empty_arrays() {
    let f = npy(
        "{'descr': '|u1', 'fortran_order': False, 'shape': (), }",
        &[9],
    );
    assert_eq!(&*read_npy(&f, &Limits::default()).unwrap().1, &[9]);
    let f = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }",
        &[],
    );
    assert!(read_npy(&f, &Limits::default()).unwrap().1.is_empty());
}

#[test]
fn object_arrays_and_bad_headers_are_refused() {
    let obj = npy(
        "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
        b"\x80\x04N.",
    );
    let err = read_npy(&obj, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("pickles"), "{err}");
    for header in [
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': __import__('os'), 'shape': (1,)}",
        "{'descr': '<f16', 'fortran_order': False, 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
    ] {
        assert!(
            read_npy(&npy(header, &[0; 4]), &Limits::default()).is_err(),
            "{header}"
        );
    }
    let short = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        &[0; 4],
    );
    assert!(read_npy(&short, &Limits::default()).is_err());
}

#[test]
fn truncation_never_panics() {
    let f = npy(
        "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1), }",
        &[0; 8],
    );
    for cut in 0..f.len() {
        let _ = read_npy(&f[..cut], &Limits::default());
    }
}
