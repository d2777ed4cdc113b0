//! Zip reader unit tests on archives built by a tiny test writer.

use super::*;

/// One member: (name in central dir, name in local header, data, deflate?,
/// CRC override).
type Member<'a> = (&'a str, &'a str, &'a [u8], bool, Option<u32>);

/// Builds a zip archive.
fn build(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for &(name, local_name, data, deflate, crc) in members {
        let crc = crc.unwrap_or_else(|| crc32fast::hash(data));
        let body = if deflate {
            miniz_oxide::deflate::compress_to_vec(data, 6)
        } else {
            data.to_vec()
        };
        let method: u16 = if deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        out.extend(LOCAL_SIG.to_le_bytes());
        out.extend([20, 0, 0, 0]);
        out.extend(method.to_le_bytes());
        out.extend([0; 4]);
        out.extend(crc.to_le_bytes());
        out.extend((body.len() as u32).to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend((local_name.len() as u16).to_le_bytes());
        out.extend([0, 0]);
        out.extend(local_name.as_bytes());
        out.extend(&body);
        central.extend(CENTRAL_SIG.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0]);
        central.extend(method.to_le_bytes());
        central.extend([0; 4]);
        central.extend(crc.to_le_bytes());
        central.extend((body.len() as u32).to_le_bytes());
        central.extend((data.len() as u32).to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0; 12]);
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let n = members.len() as u16;
    out.extend(&central);
    out.extend(EOCD_SIG.to_le_bytes());
    out.extend([0; 4]);
    out.extend(n.to_le_bytes());
    out.extend(n.to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend([0, 0]);
    out
}

#[test]
fn reads_stored_zero_copy_and_deflated() {
    let zip = build(&[
        ("a/x", "a/x", b"hello", false, None),
        ("a/y", "a/y", &[7u8; 5000], true, None),
    ]);
    let limits = Limits::default();
    let archive = ZipArchive::parse(&zip, &limits).unwrap();
    assert_eq!(archive.entries().len(), 2);
    let x = archive
        .read(&zip, archive.find("a/x").unwrap(), &limits)
        .unwrap();
    assert!(matches!(x, Cow::Borrowed(b"hello")));
    let y = archive
        .read(&zip, archive.find("a/y").unwrap(), &limits)
        .unwrap();
    assert_eq!(&*y, &[7u8; 5000][..]);
}

#[test]
fn bad_crc_is_refused_on_read() {
    let zip = build(&[("x", "x", b"hello", false, Some(1))]);
    let limits = Limits::default();
    let archive = ZipArchive::parse(&zip, &limits).unwrap();
    let err = archive
        .read(&zip, &archive.entries()[0], &limits)
        .unwrap_err();
    assert!(err.to_string().contains("CRC-32"), "{err}");
}

#[test]
fn local_name_mismatch_is_refused() {
    let zip = build(&[("data.pkl", "evil.pkl", b"x", false, None)]);
    let err = ZipArchive::parse(&zip, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("local header"), "{err}");
}

#[test]
fn escaping_and_duplicate_names_are_refused() {
    for name in ["../x", "/etc/passwd", "a/../../b", "C:/x", "a\\b", ""] {
        let zip = build(&[(name, name, b"x", false, None)]);
        assert!(
            ZipArchive::parse(&zip, &Limits::default()).is_err(),
            "{name}"
        );
    }
    let zip = build(&[("a", "a", b"x", false, None), ("a", "a", b"y", false, None)]);
    assert!(ZipArchive::parse(&zip, &Limits::default()).is_err());
}

#[test]
fn find_looks_members_up_by_exact_name_and_duplicates_name_the_smallest() {
    let zip = build(&[
        ("a/x", "a/x", b"1", false, None),
        ("a/xy", "a/xy", b"2", false, None),
        ("b", "b", b"3", false, None),
    ]);
    let archive = ZipArchive::parse(&zip, &Limits::default()).unwrap();
    assert_eq!(archive.find("a/xy").unwrap().size, 1);
    assert_eq!(
        archive.find_with_index("b").map(|(i, e)| (i, e.size)),
        Some((2, 1))
    );
    assert!(archive.find("a/").is_none() && archive.find("x").is_none());
    let zip = build(&[
        ("d", "d", b"1", false, None),
        ("c", "c", b"2", false, None),
        ("d", "d", b"3", false, None),
        ("c", "c", b"4", false, None),
    ]);
    let err = ZipArchive::parse(&zip, &Limits::default()).unwrap_err();
    assert!(
        err.to_string().contains("duplicate member name `c`"),
        "{err}"
    );
}

#[test]
fn deflate_bombs_are_refused_before_inflating() {
    let zip = build(&[("bomb", "bomb", &vec![0u8; 10 << 20], true, None)]);
    let limits = Limits::default();
    let archive = ZipArchive::parse(&zip, &limits).unwrap();
    let err = archive
        .read(&zip, &archive.entries()[0], &limits)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "max_ratio",
                ..
            }
        ),
        "{err}"
    );
    let small = Limits {
        max_decompressed: 1000,
        max_ratio: u64::MAX,
        ..Limits::default()
    };
    let err = archive
        .read(&zip, &archive.entries()[0], &small)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "max_decompressed",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_and_garbage_archives_are_errors() {
    let zip = build(&[("a", "a", b"hello", false, None)]);
    for cut in 0..zip.len() {
        let _ = ZipArchive::parse(&zip[..cut], &Limits::default());
        let mut flipped = zip.clone();
        flipped[cut] ^= 0xff;
        if let Ok(a) = ZipArchive::parse(&flipped, &Limits::default()) {
            for e in a.entries() {
                let _ = a.read(&flipped, e, &Limits::default());
            }
        }
    }
    assert!(ZipArchive::parse(b"PK\x03\x04", &Limits::default()).is_err());
}

#[test]
fn prefixes_are_read_without_inflating_the_rest() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let zip = build(&[
        ("s", "s", &data, false, None),
        ("d", "d", &data, true, None),
    ]);
    let archive = ZipArchive::parse(&zip, &Limits::default()).unwrap();
    for name in ["s", "d"] {
        let entry = archive.find(name).unwrap();
        assert_eq!(
            &*archive.read_prefix(&zip, entry, 100).unwrap(),
            &data[..100]
        );
        assert_eq!(
            &*archive.read_prefix(&zip, entry, 1 << 20).unwrap(),
            &data[..]
        );
    }
    let mut broken = zip.clone();
    let d = archive.find("d").unwrap().data.clone();
    broken[d.start..d.end].fill(0xff);
    let entry = archive.find("d").unwrap();
    assert!(archive.read_prefix(&broken, entry, 100).is_err());
}
