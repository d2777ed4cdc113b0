//! 7z archives written by sevenz-rust2's own encoder: members are opened
//! and scanned, within the output budget and the nesting depth.

use std::io::Cursor;

use sevenz_rust2::{ArchiveEntry, ArchiveWriter, EncoderMethod};

use super::super::{scan_bytes, FileFormat, ScanReport, Verdict};
use crate::Limits;

const EVIL: &[u8] = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.";
const BENIGN: &[u8] = b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01s.";

fn seven_zip(members: &[(&str, &[u8])], method: EncoderMethod) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    writer.set_content_methods(vec![method.into()]);
    for (name, data) in members {
        writer
            .push_archive_entry(ArchiveEntry::new_file(name), Some(*data))
            .unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn scan(data: &[u8], limits: &Limits) -> ScanReport {
    scan_bytes("t.7z", data, limits)
}

fn find<'a>(r: &'a ScanReport, subject: &str) -> Option<&'a super::super::Finding> {
    r.findings.iter().find(|f| f.subject.contains(subject))
}

#[test]
fn a_pickle_payload_in_a_7z_is_dangerous_whatever_the_method() {
    for method in [
        EncoderMethod::LZMA2,
        EncoderMethod::COPY,
        EncoderMethod::LZMA,
    ] {
        let r = scan(
            &seven_zip(&[("model/data.pkl", EVIL)], method),
            &Limits::default(),
        );
        assert_eq!(r.format, FileFormat::SevenZip);
        assert_eq!(r.verdict(), Verdict::Dangerous, "{:?}", r.findings);
        let hit = find(&r, "os.system").expect("the payload's global");
        assert_eq!(hit.member.as_deref(), Some("model/data.pkl"));
    }
}

#[test]
fn benign_members_are_safe_and_a_later_payload_in_a_solid_block_is_found() {
    let benign = seven_zip(&[("a.pkl", BENIGN)], EncoderMethod::LZMA2);
    let r = scan(&benign, &Limits::default());
    assert_eq!(r.verdict(), Verdict::Safe, "{:?}", r.findings);
    let solid = seven_zip(&[("a.pkl", BENIGN), ("b.pkl", EVIL)], EncoderMethod::LZMA2);
    let r = scan(&solid, &Limits::default());
    assert_eq!(r.verdict(), Verdict::Dangerous, "{:?}", r.findings);
    assert_eq!(
        find(&r, "os.system").unwrap().member.as_deref(),
        Some("b.pkl")
    );
}

#[test]
fn output_past_the_budget_is_a_bomb_and_never_allocated_whole() {
    let zeros = vec![0u8; 1 << 20];
    let data = seven_zip(
        &[("zeros.bin", &zeros), ("b.pkl", EVIL)],
        EncoderMethod::LZMA2,
    );
    let limits = Limits {
        max_decompressed: 64 << 10,
        ..Limits::default()
    };
    let r = scan(&data, &limits);
    let bomb = find(&r, "7z member").expect("the bomb is reported");
    assert_eq!(bomb.verdict, Verdict::Suspicious);
    assert!(
        bomb.reason.contains("more than 65536 bytes"),
        "{}",
        bomb.reason
    );
    assert!(r.verdict() >= Verdict::Suspicious);
    // The whole-file budget counts across members too.
    let limits = Limits {
        max_total_decompressed: 64 << 10,
        ..Limits::default()
    };
    assert!(find(&scan(&data, &limits), "7z member").is_some());
}

#[test]
fn corrupt_and_truncated_archives_are_suspicious_never_safe() {
    let data = seven_zip(&[("a.pkl", BENIGN)], EncoderMethod::LZMA2);
    for cut in [8, 32, data.len() - 3] {
        let r = scan(&data[..cut], &Limits::default());
        assert_eq!(r.format, FileFormat::SevenZip);
        assert!(
            r.verdict() >= Verdict::Suspicious,
            "{cut}: {:?}",
            r.findings
        );
    }
    let mut flipped = seven_zip(&[("a.pkl", BENIGN)], EncoderMethod::COPY);
    flipped[32] ^= 0xff;
    assert!(scan(&flipped, &Limits::default()).verdict() >= Verdict::Suspicious);
}

#[test]
fn nested_7z_counts_towards_the_archive_depth() {
    let mut data = seven_zip(&[("p.pkl", EVIL)], EncoderMethod::LZMA2);
    for level in 0..2 {
        data = seven_zip(&[(&format!("l{level}.7z"), &data)], EncoderMethod::LZMA2);
    }
    assert_eq!(
        scan(&data, &Limits::default()).verdict(),
        Verdict::Dangerous
    );
    let shallow = Limits {
        max_archive_depth: 2,
        ..Limits::default()
    };
    let r = scan(&data, &shallow);
    assert_eq!(r.verdict(), Verdict::Suspicious, "{:?}", r.findings);
    assert!(r
        .findings
        .iter()
        .any(|f| f.reason.contains("max_archive_depth")));
}
