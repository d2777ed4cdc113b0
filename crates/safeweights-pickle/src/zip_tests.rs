//! Zip reader unit tests on archives built by a tiny test writer: one
//! test (at least) per ambiguity rule, named after the attack.

use super::*;

/// One member as the test writer lays it out.
#[derive(Clone)]
struct M<'a> {
    name: &'a str,
    local_name: Option<&'a str>,
    data: &'a [u8],
    method: u16,
    flags: u16,
    crc: Option<u32>,
    local_crc: Option<u32>,
    local_method: Option<u16>,
    /// Write a data descriptor (flag bit 3, zero local CRC and sizes).
    descriptor: bool,
}

fn m<'a>(name: &'a str, data: &'a [u8]) -> M<'a> {
    M {
        name,
        local_name: None,
        data,
        method: 0,
        flags: 0,
        crc: None,
        local_crc: None,
        local_method: None,
        descriptor: false,
    }
}

fn compress(method: u16, data: &[u8]) -> Vec<u8> {
    match method {
        0 => data.to_vec(),
        8 => miniz_oxide::deflate::compress_to_vec(data, 6),
        12 => {
            use std::io::Write;
            let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        }
        14 => {
            // lzma-rs writes props (5 bytes), an 8-byte size, the stream;
            // zipfile's layout is version, props length, props, stream.
            let mut alone = Vec::new();
            lzma_rs::lzma_compress(&mut &data[..], &mut alone).unwrap();
            let mut out = vec![9, 4, 5, 0];
            out.extend(&alone[..5]);
            out.extend(&alone[13..]);
            out
        }
        _ => data.to_vec(),
    }
}

/// The parts of an archive, for tests that splice them differently.
struct Parts {
    records: Vec<u8>,
    central: Vec<u8>,
    count: u16,
}

fn parts(members: &[M<'_>]) -> Parts {
    let mut records = Vec::new();
    let mut central = Vec::new();
    for mb in members {
        let crc = mb.crc.unwrap_or_else(|| crc32fast::hash(mb.data));
        let body = compress(mb.method, mb.data);
        let flags =
            mb.flags | if mb.descriptor { 8 } else { 0 } | if mb.method == 14 { 2 } else { 0 };
        let local_name = mb.local_name.unwrap_or(mb.name);
        let offset = records.len() as u32;
        let (lcrc, lcsize, lsize) = if mb.descriptor {
            (0, 0, 0)
        } else {
            (crc, body.len() as u32, mb.data.len() as u32)
        };
        records.extend(LOCAL_SIG.to_le_bytes());
        records.extend([20, 0]);
        records.extend(flags.to_le_bytes());
        records.extend(mb.local_method.unwrap_or(mb.method).to_le_bytes());
        records.extend([0; 4]);
        records.extend(mb.local_crc.unwrap_or(lcrc).to_le_bytes());
        records.extend(lcsize.to_le_bytes());
        records.extend(lsize.to_le_bytes());
        records.extend((local_name.len() as u16).to_le_bytes());
        records.extend([0, 0]);
        records.extend(local_name.as_bytes());
        records.extend(&body);
        if mb.descriptor {
            records.extend(0x0807_4b50u32.to_le_bytes());
            records.extend(crc.to_le_bytes());
            records.extend((body.len() as u32).to_le_bytes());
            records.extend((mb.data.len() as u32).to_le_bytes());
        }
        central.extend(CENTRAL_SIG.to_le_bytes());
        central.extend([20, 0, 20, 0]);
        central.extend(flags.to_le_bytes());
        central.extend(mb.method.to_le_bytes());
        central.extend([0; 4]);
        central.extend(crc.to_le_bytes());
        central.extend((body.len() as u32).to_le_bytes());
        central.extend((mb.data.len() as u32).to_le_bytes());
        central.extend((mb.name.len() as u16).to_le_bytes());
        central.extend([0; 12]);
        central.extend(offset.to_le_bytes());
        central.extend(mb.name.as_bytes());
    }
    Parts {
        records,
        central,
        count: members.len() as u16,
    }
}

fn eocd(count: u16, size: u32, offset: u32, comment: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(EOCD_SIG.to_le_bytes());
    out.extend([0; 4]);
    out.extend(count.to_le_bytes());
    out.extend(count.to_le_bytes());
    out.extend(size.to_le_bytes());
    out.extend(offset.to_le_bytes());
    out.extend((comment.len() as u16).to_le_bytes());
    out.extend(comment);
    out
}

/// A well-formed archive.
fn build(members: &[M<'_>]) -> Vec<u8> {
    let p = parts(members);
    let mut out = p.records;
    let offset = out.len() as u32;
    out.extend(&p.central);
    out.extend(eocd(p.count, p.central.len() as u32, offset, b""));
    out
}

fn parse(zip: &[u8]) -> Result<ZipArchive> {
    ZipArchive::parse(zip, &Limits::default())
}

/// Asserts the strict parse refuses `zip` as ambiguous with a message
/// containing `what`, and the lenient parse reports it; returns the
/// members the lenient (torch-like) parse sees.
#[track_caller]
fn assert_ambiguous(zip: &[u8], what: &str) -> Vec<String> {
    match parse(zip) {
        Err(Error::AmbiguousArchive { message }) => assert!(message.contains(what), "{message}"),
        other => panic!("expected an ambiguous archive ({what}), got {other:?}"),
    }
    let (archive, issues) = ZipArchive::parse_lenient(zip, &Limits::default()).unwrap();
    assert!(issues.iter().any(|i| i.contains(what)), "{issues:?}");
    archive.entries().iter().map(|e| e.name.clone()).collect()
}

fn names(zip: &[u8]) -> Vec<String> {
    parse(zip)
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

#[test]
fn reads_every_method_numpy_can_write_and_stored_zero_copy() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
    let zip = build(&[
        m("a/x", b"hello"),
        M {
            method: 8,
            ..m("a/d", &data)
        },
        M {
            method: 12,
            ..m("a/b", &data)
        },
        M {
            method: 14,
            ..m("a/l", &data)
        },
    ]);
    let limits = Limits::default();
    let archive = ZipArchive::parse(&zip, &limits).unwrap();
    let x = archive
        .read(&zip, archive.find("a/x").unwrap(), &limits)
        .unwrap();
    assert!(matches!(x, Cow::Borrowed(b"hello")));
    for name in ["a/d", "a/b", "a/l"] {
        let entry = archive.find(name).unwrap();
        assert_eq!(
            &*archive.read(&zip, entry, &limits).unwrap(),
            &data[..],
            "{name}"
        );
        assert_eq!(
            &*archive.read_prefix(&zip, entry, 100).unwrap(),
            &data[..100],
            "{name}"
        );
    }
}

#[test]
fn unsupported_methods_parse_but_fail_to_read() {
    let zip = build(&[M {
        method: 93,
        ..m("z.npy", b"zstd?")
    }]);
    let archive = parse(&zip).unwrap();
    assert_eq!(archive.entries()[0].method, Method::Unsupported(93));
    let err = archive
        .read(&zip, &archive.entries()[0], &Limits::default())
        .unwrap_err();
    assert!(err.to_string().contains("method 93"), "{err}");
}

#[test]
fn bad_crc_is_refused_and_zero_crc_only_where_torch_accepts_it() {
    let limits = Limits::default();
    let zip = build(&[m("x", b"hello")]);
    let mut bad = zip.clone();
    let at = bad.len() - 22 - 46 - 1 + 16; // the central CRC
    bad[at] ^= 1;
    // The local header still has the old CRC: refused as ambiguous.
    assert_ambiguous(&bad, "another CRC");
    let wrong = build(&[M {
        crc: Some(1),
        ..m("x", b"hello")
    }]);
    let archive = parse(&wrong).unwrap();
    let entry = &archive.entries()[0];
    for crc in [CrcCheck::Always, CrcCheck::ZeroMeansUnset] {
        let err = archive
            .read_checked(&wrong, entry, &limits, crc)
            .unwrap_err();
        assert!(err.to_string().contains("CRC-32"), "{err}");
    }
    // torch.serialization.set_crc32_options(False) writes 0 (with descriptors).
    let zero = build(&[M {
        crc: Some(0),
        descriptor: true,
        ..m("x", b"hello")
    }]);
    let archive = parse(&zero).unwrap();
    let entry = &archive.entries()[0];
    assert!(archive.read(&zero, entry, &limits).is_err());
    let read = archive.read_checked(&zero, entry, &limits, CrcCheck::ZeroMeansUnset);
    assert_eq!(&*read.unwrap(), b"hello");
}

#[test]
fn local_header_that_disagrees_is_ambiguous() {
    let hidden = M {
        local_name: Some("evil.pkl"),
        ..m("data.pkl", b"x")
    };
    assert_ambiguous(&build(&[hidden]), "another name in its local header");
    let method = M {
        local_method: Some(8),
        ..m("a", b"x")
    };
    assert_ambiguous(&build(&[method]), "another compression method");
    let crc = M {
        local_crc: Some(7),
        ..m("a", b"x")
    };
    assert_ambiguous(&build(&[crc]), "another CRC or size");
    let mut flags = build(&[m("a", b"x")]);
    flags[6] = 0x08; // local flags only
    assert_ambiguous(&flags, "other flags");
}

#[test]
fn data_descriptors_must_repeat_the_central_values() {
    let zip = build(&[
        M {
            descriptor: true,
            ..m("a", b"one")
        },
        M {
            descriptor: true,
            method: 8,
            ..m("b", &[5u8; 300])
        },
    ]);
    assert_eq!(names(&zip), ["a", "b"]);
    let mut lying = zip.clone();
    let desc = 30 + 1 + 3; // after member a's data
    lying[desc + 4] ^= 1; // the descriptor's CRC
    assert_ambiguous(&lying, "data descriptor");
}

#[test]
fn duplicate_names_even_differing_in_case_are_ambiguous() {
    let zip = build(&[m("d", b"1"), m("c", b"2"), m("d", b"3"), m("c", b"4")]);
    assert_ambiguous(&zip, "duplicate member name `c`");
    let zip = build(&[m("arc/data.pkl", b"1"), m("arc/DATA.pkl", b"2")]);
    assert_ambiguous(&zip, "duplicate member name");
}

#[test]
fn names_readers_decode_differently_are_ambiguous_and_escaping_names_invalid() {
    assert_ambiguous(&build(&[m("data.pkl\0.npy", b"x")]), "NUL byte");
    assert_ambiguous(&build(&[m("caf\u{e9}.npy", b"x")]), "cp437");
    let marked = build(&[M {
        flags: 1 << 11,
        ..m("caf\u{e9}.npy", b"x")
    }]);
    assert_eq!(names(&marked), ["caf\u{e9}.npy"]);
    for name in ["../x", "/etc/passwd", "a/../../b", "C:/x", "a\\b", ""] {
        let err = parse(&build(&[m(name, b"x")])).unwrap_err();
        assert!(matches!(err, Error::Zip { .. }), "{name}: {err}");
    }
}

/// Records A (decoy) and B (payload), each with its own central directory.
fn two_directories() -> (Vec<u8>, Vec<u8>, Vec<u8>, u32, u32) {
    let p = parts(&[m("arc/data.pkl", b"decoy"), m("arc/evil.pkl", b"payload")]);
    let records = p.records;
    let split = 46 + "arc/data.pkl".len();
    let decoy = p.central[..split].to_vec();
    let evil = p.central[split..].to_vec();
    let decoy_at = records.len() as u32;
    let evil_at = decoy_at + decoy.len() as u32;
    (records, decoy, evil, decoy_at, evil_at)
}

#[test]
fn eocd_hidden_in_a_comment_is_ambiguous() {
    let (records, decoy, evil, decoy_at, evil_at) = two_directories();
    // The payload's EOCD comes last but its comment length overshoots, so
    // a reader that checks comment lengths falls back to the decoy's EOCD,
    // whose comment covers it; torch's reader and zipfile take the last.
    let mut zip = records;
    zip.extend(&decoy);
    zip.extend(&evil);
    let last = eocd(1, evil.len() as u32, evil_at, b"");
    let mut last_overshooting = last.clone();
    last_overshooting[20] = 9;
    let mut first = eocd(1, decoy.len() as u32, decoy_at, b"");
    first[20] = last.len() as u8;
    zip.extend(&first);
    zip.extend(&last_overshooting);
    let torch_sees = assert_ambiguous(&zip, "comment length");
    assert_eq!(torch_sees, ["arc/evil.pkl"]);
    // Exact comment lengths: two complete records, still ambiguous.
    let n = zip.len();
    zip[n - 2] = 0;
    let torch_sees = assert_ambiguous(&zip, "two end-of-central-directory records");
    assert_eq!(torch_sees, ["arc/evil.pkl"]);
}

#[test]
fn bytes_after_the_end_record_are_ambiguous_but_a_comment_is_fine() {
    let zip = build(&[m("a", b"x")]);
    let mut commented = zip.clone();
    let n = commented.len();
    commented[n - 2] = 5;
    commented.extend(b"hello");
    assert_eq!(names(&commented), ["a"]);
    let mut trailing = zip.clone();
    trailing.extend(b"junk");
    assert_ambiguous(&trailing, "comment length");
    let mut signature_at_end = zip.clone();
    signature_at_end.extend(b"PK\x05\x06\0\0");
    assert_ambiguous(&signature_at_end, "last 22 bytes");
}

#[test]
fn bytes_before_between_or_overlapping_records_are_ambiguous() {
    let p = parts(&[m("a", b"x")]);
    let mut prepended = b"JUNK".to_vec();
    prepended.extend(&p.records);
    let offset = prepended.len() as u32;
    prepended.extend(&p.central);
    prepended.extend(eocd(1, p.central.len() as u32, offset, b""));
    // The central header still says offset 0, where no local header is.
    assert!(parse(&prepended).is_err());
    // Shifting the offsets as Python's zipfile would still leaves data
    // before the first record.
    let mut shifted = prepended.clone();
    let at = offset as usize + 42;
    shifted[at] = 4;
    assert_ambiguous(&shifted, "4 bytes before member `a`");
    // Two central headers for one local record: overlapping members.
    let one = parts(&[m("a", b"x")]);
    let mut central = one.central.clone();
    central.extend(&one.central);
    let mut zip = one.records.clone();
    let offset = zip.len() as u32;
    zip.extend(&central);
    zip.extend(eocd(2, central.len() as u32, offset, b""));
    assert!(matches!(parse(&zip), Err(Error::AmbiguousArchive { .. })));
    let (_, issues) = ZipArchive::parse_lenient(&zip, &Limits::default()).unwrap();
    assert!(issues.iter().any(|i| i.contains("overlap")), "{issues:?}");
}

#[test]
fn directory_shifted_from_the_end_record_is_ambiguous() {
    // Python's zipfile adds the gap between the central directory's end
    // and the EOCD to every offset; torch's reader does not.
    let (records, decoy, evil, decoy_at, _) = two_directories();
    let mut zip = records;
    zip.extend(&decoy);
    zip.extend(&evil);
    zip.extend(eocd(1, decoy.len() as u32, decoy_at, b""));
    let torch_sees = assert_ambiguous(&zip, "shifts every offset");
    assert_eq!(torch_sees, ["arc/data.pkl"]);
}

#[test]
fn directory_longer_than_its_count_is_ambiguous() {
    let p = parts(&[m("a", b"x"), m("b", b"y")]);
    let mut zip = p.records;
    let offset = zip.len() as u32;
    zip.extend(&p.central);
    zip.extend(eocd(1, p.central.len() as u32, offset, b""));
    let torch_sees = assert_ambiguous(&zip, "after its 1 declared entries");
    assert_eq!(torch_sees, ["a"]);
}

/// A zip64 end record and locator for a directory.
fn zip64_tail(count: u64, size: u64, offset: u64, record_at: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(ZIP64_EOCD_SIG.to_le_bytes());
    out.extend(44u64.to_le_bytes());
    out.extend([45, 0, 45, 0]);
    out.extend([0; 8]);
    out.extend(count.to_le_bytes());
    out.extend(count.to_le_bytes());
    out.extend(size.to_le_bytes());
    out.extend(offset.to_le_bytes());
    out.extend(ZIP64_LOCATOR_SIG.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(record_at.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    out
}

#[test]
fn zip64_records_must_agree_with_the_classic_one_and_the_locator() {
    let (records, decoy, evil, decoy_at, evil_at) = two_directories();
    let mut base = records;
    base.extend(&decoy);
    base.extend(&evil);
    let at = base.len() as u64;
    // Consistent zip64 (classic fields 0xFFFF...): fine.
    let mut good = base.clone();
    let both = (decoy.len() + evil.len()) as u64;
    good.extend(zip64_tail(2, both, u64::from(decoy_at), at));
    good.extend(eocd(0xffff, 0xffff_ffff, 0xffff_ffff, b""));
    assert_eq!(names(&good), ["arc/data.pkl", "arc/evil.pkl"]);
    // Classic fields that are not 0xFFFF and point at the decoy, beside a
    // zip64 record that points at the payload: miniz and zipfile use the
    // zip64 one whatever the classic fields say.
    let mut split = base.clone();
    split.truncate(at as usize);
    let mut zip = split.clone();
    zip.extend(zip64_tail(1, evil.len() as u64, u64::from(evil_at), at));
    zip.extend(eocd(1, decoy.len() as u32, decoy_at, b""));
    let torch_sees = assert_ambiguous(&zip, "zip64 record says");
    assert_eq!(torch_sees, ["arc/evil.pkl"]);
    // A locator pointing somewhere else than the record before it.
    // torch's reader follows the locator to the payload's record; Python
    // 3.11's zipfile reads the decoy's record just before the locator.
    let mut elsewhere = split.clone();
    elsewhere.extend(&zip64_tail(1, evil.len() as u64, u64::from(evil_at), 0)[..56]);
    elsewhere.extend(zip64_tail(1, decoy.len() as u64, u64::from(decoy_at), at));
    elsewhere.extend(eocd(0xffff, 0xffff_ffff, 0xffff_ffff, b""));
    let torch_sees = assert_ambiguous(&elsewhere, "zip64 locator points at byte");
    assert_eq!(torch_sees, ["arc/evil.pkl"]);
}

#[test]
fn zero_matrices_decompress_and_only_output_size_is_bounded() {
    // A zero-initialised LoRA B matrix compresses far past 1000:1.
    let zeros = vec![0u8; 16 << 20];
    let zip = build(&[M {
        method: 8,
        ..m("b.npy", &zeros)
    }]);
    assert!(zip.len() * 1000 < zeros.len());
    let limits = Limits::default();
    let archive = ZipArchive::parse(&zip, &limits).unwrap();
    let entry = &archive.entries()[0];
    assert_eq!(
        archive.read(&zip, entry, &limits).unwrap().len(),
        zeros.len()
    );
    let small = Limits {
        max_decompressed: 1000,
        ..Limits::default()
    };
    let err = archive.read(&zip, entry, &small).unwrap_err();
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
    let total = Limits {
        max_total_decompressed: (16 << 20) - 1,
        ..Limits::default()
    };
    let err = ZipArchive::parse(&zip, &total).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "max_total_decompressed",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_member_that_inflates_past_its_declared_size_is_refused() {
    let zeros = vec![0u8; 100_000];
    let mut zip = build(&[M {
        method: 8,
        ..m("b", &zeros)
    }]);
    // Declare 10 bytes in the central and local headers.
    let central = zip.len() - 22 - 46 - 1;
    zip[central + 24..central + 28].copy_from_slice(&10u32.to_le_bytes());
    zip[22..26].copy_from_slice(&10u32.to_le_bytes());
    let archive = parse(&zip).unwrap();
    let err = archive
        .read(&zip, &archive.entries()[0], &Limits::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("more than its declared 10"),
        "{err}"
    );
}

#[test]
fn truncated_and_garbage_archives_never_panic() {
    let zip = build(&[
        m("a", b"hello"),
        M {
            method: 8,
            ..m("b", &[1u8; 64])
        },
    ]);
    for cut in 0..zip.len() {
        assert!(ZipArchive::parse(&zip[..cut], &Limits::default()).is_err());
        let mut flipped = zip.clone();
        flipped[cut] ^= 0xff;
        if let Ok(a) = ZipArchive::parse(&flipped, &Limits::default()) {
            for e in a.entries() {
                let read = a.read(&flipped, e, &Limits::default());
                let prefix = a.read_prefix(&flipped, e, 4);
                if let (Ok(full), Ok(prefix)) = (read, prefix) {
                    assert!(full.starts_with(&prefix));
                }
            }
        }
    }
    assert!(ZipArchive::parse(b"PK\x03\x04", &Limits::default()).is_err());
}

#[test]
fn find_looks_members_up_by_exact_name() {
    let zip = build(&[m("a/x", b"1"), m("a/xy", b"2"), m("b", b"3")]);
    let archive = parse(&zip).unwrap();
    assert_eq!(archive.find("a/xy").unwrap().size, 1);
    assert_eq!(
        archive.find_with_index("b").map(|(i, e)| (i, e.size)),
        Some((2, 1))
    );
    assert!(archive.find("a/").is_none() && archive.find("x").is_none());
}

#[test]
fn prefixes_are_read_without_decompressing_the_rest() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let zip = build(&[
        m("s", &data),
        M {
            method: 8,
            ..m("d", &data)
        },
    ]);
    let archive = parse(&zip).unwrap();
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

#[test]
fn a_zip_after_other_data_is_found_from_its_end_and_ambiguous() {
    // Offsets relative to the zip's own start, as `cat stub a.zip` leaves
    // them: Python's zipfile shifts them and reads the members, torch's
    // reader cannot; the lenient parse calls it ambiguous, not invalid.
    let zip = build(&[m("arc/data.pkl", b"\x80\x02}q\x00.")]);
    let mut shifted = b"\x80\x02N.".to_vec();
    shifted.extend(&zip);
    assert!(ends_like_zip(&shifted) && ends_like_zip(&zip));
    assert!(matches!(
        ZipArchive::parse_lenient(&shifted, &Limits::default()),
        Err(Error::AmbiguousArchive { .. })
    ));
    // No directory where the end record says: not a zip that zipfile opens.
    let mut cut = zip.clone();
    cut.drain(..4);
    let tail = cut.len() - EOCD_LEN;
    cut[tail + 12] ^= 1;
    assert!(!ends_like_zip(&cut));
    assert!(!ends_like_zip(b"PK\x05\x06"));
    assert!(!ends_like_zip(b""));
}
