//! The zipfile model (tests/support/zipfile_model.rs) against the real
//! Python `zipfile` on every variant of many base archives (single-byte
//! flips, truncations, appended bytes, comment-length edits, random
//! splices), and the property the `zip_differential` fuzz target checks
//! on top of it: whenever our reader accepts an archive, Python's zipfile
//! sees exactly the same members at the same places, and torch's own
//! reader (`torch._C.PyTorchFileReader`, what `torch.load` uses) the same
//! records and the same `data.pkl`, or refuses the file.

mod common;
#[path = "support/zipfile_model.rs"]
mod zipfile_model;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use safeweights_pickle::zip::{CrcCheck, ZipArchive};
use safeweights_pickle::Limits;
use zipfile_model::Info;

static BASES: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();

/// Deterministic variants of one base archive.
fn variants(base: &[u8], seed: u64, out: &mut Vec<Vec<u8>>) {
    out.push(base.to_vec());
    let n = base.len();
    // Every byte of the tail (where the directory and end records are)
    // and a stride through the rest.
    let tail = n.saturating_sub(100);
    let stride = (tail / 30).max(1);
    let positions = (0..tail).step_by(stride).chain(tail..n);
    for pos in positions {
        for mask in [0xff, 0x01] {
            let mut v = base.to_vec();
            v[pos] ^= mask;
            out.push(v);
        }
    }
    for cut in [1, 2, 21, 22, 23, 46, n / 2] {
        out.push(base[..n.saturating_sub(cut)].to_vec());
    }
    for junk in [&b"x"[..], b"PK\x05\x06", &[0u8; 22]] {
        let mut v = base.to_vec();
        v.extend(junk);
        out.push(v);
        let mut v = junk.to_vec();
        v.extend(base);
        out.push(v);
    }
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..40 {
        let mut v = base.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % n.max(1);
            let from = (next() as usize) % n.max(1);
            let len = ((next() as usize) % 24).min(n - at).min(n - from);
            let chunk = base[from..from + len].to_vec();
            v[at..at + len].copy_from_slice(&chunk);
        }
        out.push(v);
    }
}

/// Runs `tests/fixtures/<script>` on `dir` with a Python that has
/// `modules` (there, since the generator ran on it) and returns what it
/// prints (JSON).
fn oracle(script: &str, modules: &[&str], dir: &Path) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(script);
    let python = common::python_with(modules).expect("the generator ran, so Python is there");
    let run = Command::new(python)
        .arg(script)
        .arg(dir)
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    run.stdout
}

fn real_zipfile(dir: &Path) -> BTreeMap<String, Option<Vec<serde_json::Value>>> {
    serde_json::from_slice(&oracle("zipfile_infolist.py", &[], dir)).expect("json")
}

/// What torch's reader sees in one file: its records and the CRC-32 of
/// its `data.pkl`.
type TorchView = (Vec<String>, Option<u32>);

/// What torch's reader sees in every file of `dir`: `None` when it refuses
/// the file.
fn real_torch(dir: &Path) -> BTreeMap<String, Option<TorchView>> {
    serde_json::from_slice(&oracle("torch_records.py", &["torch"], dir)).expect("json")
}

/// Our records as torch names them (without the archive's top folder)
/// and the CRC-32 of the `data.pkl` our torch reader would read.
fn ours_as_torch(data: &[u8], ours: &ZipArchive) -> TorchView {
    let names: Vec<_> = ours.entries().iter().map(|e| e.name.clone()).collect();
    let prefix = names
        .first()
        .and_then(|n| n.split_once('/'))
        .map_or(String::new(), |(dir, _)| format!("{dir}/"));
    let records = names
        .iter()
        .map(|n| n.strip_prefix(prefix.as_str()).unwrap_or(n).to_owned())
        .collect();
    let crc = ours
        .find(&format!("{prefix}data.pkl"))
        // As our torch reader reads it: a CRC of 0 means unset, as in torch.
        .and_then(|e| {
            ours.read_checked(data, e, &Limits::default(), CrcCheck::ZeroMeansUnset)
                .ok()
        })
        .map(|b| crc32fast::hash(&b));
    (records, crc)
}

fn as_json(infos: &[Info]) -> Vec<serde_json::Value> {
    infos
        .iter()
        .map(|i| {
            serde_json::json!([
                i.filename,
                i.header_offset.to_string(),
                i.compress_size,
                i.file_size,
                i.compress_type,
                i.crc,
                i.data_start
            ])
        })
        .collect()
}

#[test]
fn model_matches_python_zipfile_and_our_reader_never_sees_other_members() {
    let Some(bases) = common::generate!("gen_zip_variants.py", &BASES) else {
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zipfile_model_variants");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(bases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for (i, path) in names.iter().enumerate() {
        variants(&std::fs::read(path).unwrap(), i as u64 + 1, &mut all);
    }
    for (i, v) in all.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:06}")), v).unwrap();
    }
    let real = real_zipfile(&dir);
    assert_eq!(real.len(), all.len());
    let torch = real_torch(&dir);
    assert_eq!(torch.len(), all.len());
    let mut torch_agreed = 0;
    let (mut opened, mut accepted) = (0, 0);
    for (i, data) in all.iter().enumerate() {
        let key = format!("{i:06}");
        let model = zipfile_model::infolist(data);
        let expected = &real[&key];
        assert_eq!(
            model.as_deref().map(as_json),
            expected.clone(),
            "variant {key}: the model disagrees with zipfile"
        );
        opened += usize::from(model.is_some());
        if let Ok(ours) = ZipArchive::parse(data, &Limits::default()) {
            accepted += 1;
            let Some(model) = model else {
                panic!("variant {key}: we accept what zipfile refuses");
            };
            let ours: Vec<_> = ours
                .entries()
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
                        e.local_header as i128,
                        Some(e.data.start as u64),
                    )
                })
                .collect();
            let theirs: Vec<_> = model
                .iter()
                .map(|m| (m.filename.clone(), m.header_offset, m.data_start))
                .collect();
            assert_eq!(
                ours, theirs,
                "variant {key}: zipfile sees other members than we do"
            );
            if let Some((records, crc)) = &torch[&key] {
                let accepted = ZipArchive::parse(data, &Limits::default()).unwrap();
                let (our_records, our_crc) = ours_as_torch(data, &accepted);
                let mut sorted = our_records.clone();
                sorted.sort();
                let mut theirs = records.clone();
                theirs.sort();
                assert_eq!(
                    sorted, theirs,
                    "variant {key}: torch's reader sees other records"
                );
                // Torch reads records without checking their CRC-32; ours
                // refuses a bad one (and scan looks at the unchecked bytes):
                // a refusal, not another data.pkl.
                if let (Some(ours), Some(theirs)) = (our_crc, crc) {
                    assert_eq!(ours, *theirs, "variant {key}: torch reads another data.pkl");
                }
                torch_agreed += 1;
            }
        }
    }
    // Torch's reader was really compared: it opened many accepted files.
    assert!(torch_agreed > 20, "{torch_agreed}");
    // The corpus exercises both sides: archives zipfile opens and ones it
    // refuses, archives we accept and ones we refuse.
    assert!(all.len() > 2000, "{}", all.len());
    assert!(
        opened > all.len() / 4 && opened < all.len(),
        "{opened}/{}",
        all.len()
    );
    assert!(accepted > 50 && accepted < opened, "{accepted}/{opened}");
}
