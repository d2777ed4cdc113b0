//! Scanner unit tests on hand-written pickles and containers.

use super::*;

fn scan(data: &[u8]) -> ScanReport {
    scan_bytes("t", data, &Limits::default())
}

fn has(report: &ScanReport, subject: &str, verdict: Verdict) -> bool {
    report
        .findings
        .iter()
        .any(|f| f.subject == subject && f.verdict == verdict)
}

#[test]
fn reduce_os_system_is_dangerous() {
    let r = scan(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.");
    assert_eq!(r.format, FileFormat::Pickle);
    assert!(has(&r, "os.system", Verdict::Dangerous));
    assert_eq!(r.verdict(), Verdict::Dangerous);
    assert_eq!(r.findings[0].offset, 2);
}

#[test]
fn memo_tricks_resolve_stack_global_operands() {
    // 'system' and 'os' memoized in the wrong order, fetched back swapped.
    let p = b"\x80\x04\x8c\x06system\x94\x8c\x02os\x94h\x01h\x00\x93N\x85R.";
    let r = scan(p);
    assert!(has(&r, "os.system", Verdict::Dangerous), "{:?}", r.findings);
    // PUT/GET by text index (protocol 0 style).
    let p = b"\x80\x02X\x05\x00\x00\x00posixp7\n0X\x06\x00\x00\x00systemp8\n0g7\ng8\n\x93.";
    assert!(has(&scan(p), "posix.system", Verdict::Dangerous));
}

#[test]
fn refused_opcodes_are_reported_and_scanning_goes_on() {
    // INST hides a call; POP discards an OBJ call's result; then a GLOBAL.
    let p = b"(S'touch x'\nios\nsystem\n0(cbuiltins\nexec\nS'1'\no0cbuiltins\neval\n.";
    let r = scan(p);
    assert_eq!(r.format, FileFormat::Pickle);
    for s in ["os.system", "builtins.exec", "builtins.eval"] {
        assert!(has(&r, s, Verdict::Dangerous), "{s}: {:?}", r.findings);
    }
    for op in ["opcode INST", "opcode OBJ", "opcode POP"] {
        assert!(has(&r, op, Verdict::Suspicious), "{op}");
    }
}

#[test]
fn payload_before_a_broken_opcode_is_still_reported() {
    let r = scan(b"\x80\x02cos\nsystem\nX\x01\x00\x00\x00x\x85R\xff\xff");
    assert!(has(&r, "os.system", Verdict::Dangerous));
    assert!(has(&r, "malformed pickle", Verdict::Suspicious));
}

#[test]
fn pickle_inside_a_pickle_is_scanned() {
    let inner = b"\x80\x02cos\nsystem\nX\x01\x00\x00\x00x\x85R.";
    let mut p = b"\x80\x03c_pickle\nloads\nC".to_vec();
    p.push(inner.len() as u8);
    p.extend(inner);
    p.extend(b"\x85R.");
    let r = scan(&p);
    assert!(has(&r, "_pickle.loads", Verdict::Dangerous));
    let nested = r
        .findings
        .iter()
        .find(|f| f.subject == "os.system")
        .expect("nested finding");
    assert!(nested.member.as_deref().unwrap().contains("nested pickle"));
}

#[test]
fn benign_pickles_have_no_issues() {
    let r = scan(b"\x80\x02ccollections\nOrderedDict\n)R}q\x00X\x01\x00\x00\x00aK\x01s.");
    assert_eq!(r.issues().count(), 0, "{:?}", r.findings);
    assert_eq!(r.findings.len(), 1);
}

#[test]
fn text_files_are_unknown_not_pickles() {
    for text in [&b"Some README text\n"[..], b"(hello", b"", b"\x00\x01"] {
        let r = scan(text);
        assert_eq!(r.issues().count(), 0, "{text:?}: {:?}", r.findings);
    }
}

#[test]
fn deeply_nested_pickles_stop_at_the_depth_limit() {
    let mut p = b"\x80\x02cos\nsystem\n.".to_vec();
    for _ in 0..6 {
        let mut outer = b"\x80\x03cpickle\nloads\nB".to_vec();
        outer.extend((p.len() as u32).to_le_bytes());
        outer.extend(&p);
        outer.extend(b"\x85R.");
        p = outer;
    }
    let r = scan(&p);
    assert!(r
        .findings
        .iter()
        .any(|f| f.reason.contains("max_archive_depth")));
}

#[test]
fn floods_of_findings_are_capped() {
    let mut p = b"\x80\x02".to_vec();
    for _ in 0..20_000 {
        p.extend(b"cos\nsystem\n0");
    }
    p.extend(b"N.");
    let r = scan(&p);
    assert_eq!(r.findings.len(), MAX_FINDINGS);
    assert!(r.omitted > 0);
}

/// `pickle.load` needs no PROTO opcode; each of these runs `os.system`.
#[test]
fn pickles_without_proto_are_simulated() {
    let body = b"\x8c\x02os\x8c\x06system\x93\x8c\x01x\x85R.";
    let mut framed = b"\x95".to_vec();
    framed.extend((body.len() as u64).to_le_bytes());
    framed.extend(body);
    for p in [
        &framed[..],
        body,
        b"(cos\nsystem\nS'x'\ntR.",
        b"X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93N\x85R.",
        b"N0cos\nsystem\n.",
    ] {
        let r = scan(p);
        assert_eq!(r.format, FileFormat::Pickle, "{p:?}");
        assert_eq!(r.verdict(), Verdict::Dangerous, "{p:?}: {:?}", r.findings);
    }
}

#[test]
fn memo_keys_cpython_accepts_resolve() {
    // PUT/GET with `1_0` (CPython's int() reads 10) around STACK_GLOBAL operands.
    let p = b"Vos\np1_0\n0Vsystem\np 11 \n0g10\ng11\n\x93.";
    let r = scan(p);
    assert!(has(&r, "os.system", Verdict::Dangerous), "{:?}", r.findings);
}

#[test]
fn a_stopped_simulation_makes_the_verdict_worse() {
    let limits = Limits {
        max_ops: 3,
        ..Limits::default()
    };
    let r = scan_bytes("t", b"\x80\x02N0N0N0cos\nsystem\n.", &limits);
    assert!(
        has(&r, "pickle not fully simulated", Verdict::Dangerous),
        "{:?}",
        r.findings
    );
    // A guessed stream cut short by the budget is still a pickle.
    let r = scan_bytes("t", b"N0N0N0N0cos\nsystem\n.", &limits);
    assert_eq!(r.verdict(), Verdict::Dangerous);
    // A global whose name a call computed can be anything.
    let p = b"\x80\x04cbuiltins\nstr\n)R\x8c\x06system\x93.";
    let r = scan(p);
    assert!(has(&r, "global with a computed name", Verdict::Dangerous));
}

#[test]
fn escaped_names_are_decoded_before_they_are_judged() {
    for p in [
        &b"S'o\\x73'\nS'sys\\164em'\n\x93."[..],
        b"V\\u006fs\nVsystem\n\x93.",
        b"\x80\x02U\x02osU\x06system\x93.",
    ] {
        let r = scan(p);
        assert!(
            has(&r, "os.system", Verdict::Dangerous),
            "{p:?}: {:?}",
            r.findings
        );
    }
}

#[test]
fn every_pickle_of_a_stream_is_scanned() {
    // A harmless pickle, then one without PROTO that runs a command.
    let r = scan(b"\x80\x02K\x01.cos\nsystem\n(S'x'\ntR.");
    assert!(has(&r, "os.system", Verdict::Dangerous), "{:?}", r.findings);
    // Trailing bytes that are no pickle are not reported.
    let r = scan(b"\x80\x02K\x01.\x00\x01\x02");
    assert_eq!(r.issues().count(), 0, "{:?}", r.findings);
}

#[test]
fn npy_descr_spelled_object_is_an_object_array() {
    for descr in ["'object'", "'|O'", "'O8'"] {
        let header = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}");
        let mut p = b"\x93NUMPY\x01\x00".to_vec();
        p.extend((header.len() as u16).to_le_bytes());
        p.extend(header.as_bytes());
        p.extend(b"\x80\x02cos\nsystem\n.");
        let r = scan(&p);
        assert!(
            has(&r, "os.system", Verdict::Dangerous),
            "{descr}: {:?}",
            r.findings
        );
    }
}

/// A valid safetensors file whose header length reads as `S'`: a STRING
/// quoting everything up to `'\n` in the tensor data, after which the
/// data is a pickle that torch.load's legacy path runs.
#[test]
fn safetensors_pickle_polyglot_is_dangerous() {
    let data = b"'\ncos\nsystem\n(S'x'\ntR.";
    let json = format!(
        "{{\"t\":{{\"dtype\":\"U8\",\"shape\":[{n}],\"data_offsets\":[0,{n}]}}}}",
        n = data.len()
    );
    let len: u64 = 0x0002_2753;
    let mut file = len.to_le_bytes().to_vec();
    file.extend(json.as_bytes());
    file.resize(8 + len as usize, b' ');
    file.extend(data);
    assert!(safeweights::read::SafeTensors::parse(&file).is_ok());
    let r = scan(&file);
    assert_eq!(r.format, FileFormat::Safetensors);
    assert!(has(&r, "os.system", Verdict::Dangerous), "{:?}", r.findings);
    // A genuine file's header length starts no pickle.
    let mut genuine = 0x0063u64.to_le_bytes().to_vec();
    genuine.extend(b"{\"t\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}");
    genuine.resize(8 + 0x63, b' ');
    genuine.extend(b"\n\n");
    assert_eq!(scan(&genuine).issues().count(), 0);
}

/// Regression: valid safetensors files whose header length's low byte is
/// also a pickle opcode were flagged (EXT1..EXT4 as suspicious; BINUNICODE8,
/// BINBYTES8 and BYTEARRAY8, whose 8-byte length runs past the file, as a
/// stopped simulation, dangerous), although `pickle.load` fails on them
/// before importing anything.
#[test]
fn valid_safetensors_files_scan_safe_for_every_header_length_residue() {
    for residue in 0..256usize {
        let json = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        // Whitespace after the JSON object is part of a valid header; a few
        // hundred bytes more give the length's second byte non-zero values.
        for extra in [0usize, 256, 512] {
            let pad = (residue + 256 - json.len() % 256) % 256 + extra;
            let mut header = json.to_vec();
            header.resize(json.len() + pad, b' ');
            assert_eq!(header.len() % 256, residue);
            let mut file = (header.len() as u64).to_le_bytes().to_vec();
            file.extend_from_slice(&header);
            file.extend_from_slice(&[0; 4]);
            let r = scan(&file);
            assert_eq!(r.format, FileFormat::Safetensors, "residue {residue}");
            assert_eq!(
                r.verdict(),
                Verdict::Safe,
                "residue {residue}, header {}: {:?}",
                header.len(),
                r.findings
            );
        }
    }
}

#[test]
fn a_zip_after_a_pickle_or_junk_is_an_ambiguous_archive() {
    // torch.load reads the first bytes, Python's zipfile the end records.
    let mut zip = Vec::new();
    {
        let name = b"a/data.pkl";
        let data = b"\x80\x02cos\nsystem\nX\x01\x00\x00\x00x\x85R.";
        let crc = crc32fast::hash(data);
        let mut local = vec![];
        local.extend(0x0403_4b50u32.to_le_bytes());
        local.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        local.extend(crc.to_le_bytes());
        local.extend((data.len() as u32).to_le_bytes());
        local.extend((data.len() as u32).to_le_bytes());
        local.extend((name.len() as u16).to_le_bytes());
        local.extend([0, 0]);
        local.extend(name);
        local.extend(data);
        zip.extend(&local);
        let dir_at = zip.len() as u32;
        let mut central = vec![];
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend(crc.to_le_bytes());
        central.extend((data.len() as u32).to_le_bytes());
        central.extend((data.len() as u32).to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0u8; 12]);
        central.extend(0u32.to_le_bytes());
        central.extend(name);
        zip.extend(&central);
        zip.extend(0x0605_4b50u32.to_le_bytes());
        zip.extend([0, 0, 0, 0, 1, 0, 1, 0]);
        zip.extend((central.len() as u32).to_le_bytes());
        zip.extend(dir_at.to_le_bytes());
        zip.extend([0, 0]);
    }
    assert_eq!(scan(&zip).verdict(), Verdict::Dangerous);
    for stub in [&b"\x80\x02N."[..], &[0u8; 100][..]] {
        let mut file = stub.to_vec();
        file.extend(&zip);
        let r = scan(&file);
        assert!(
            has(&r, "ambiguous archive", Verdict::Dangerous),
            "{:?}",
            r.findings
        );
    }
}
