//! torch.distributed.checkpoint's default format, written by the real
//! torch (`tests/fixtures/gen_dcp.py`): the `.metadata` pickle decodes as
//! data to what torch itself reads from it, and `scan` judges `.distcp`
//! files item by item at the ranges it records, hostile items included.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use safeweights_pickle::dcp::{DcpMetadata, Entry};
use safeweights_pickle::pickle::Value;
use safeweights_pickle::scan::{scan_distcp, scan_path, FileFormat, Verdict};
use safeweights_pickle::Limits;
use serde_json::{json, Value as Json};

static FILES: OnceLock<Option<PathBuf>> = OnceLock::new();

fn files() -> Option<&'static Path> {
    common::generate!("gen_dcp.py", &FILES)
}

/// Our decoding of `dir/.metadata` in the shape of the generator's oracle.
fn as_oracle(metadata: &DcpMetadata) -> Json {
    let entries: serde_json::Map<String, Json> = metadata
        .entries
        .iter()
        .map(|(fqn, entry)| {
            let value = match entry {
                Entry::Tensor(t) => json!({
                    "dtype": t.dtype.name,
                    "size": t.size,
                    "chunks": t.chunks.iter().map(|c| json!([c.offsets, c.sizes])).collect::<Vec<_>>(),
                }),
                Entry::Bytes => json!("bytes"),
                other => panic!("unexpected entry {other:?}"),
            };
            (fqn.clone(), value)
        })
        .collect();
    let storage: Vec<Json> = metadata
        .storage
        .iter()
        .map(|s| {
            assert!(s.transforms.is_empty());
            json!({"fqn": s.fqn, "chunk_offsets": s.chunk_offsets, "relative_path": s.relative_path,
                   "start": s.start, "length": s.length})
        })
        .collect();
    let paths: serde_json::Map<String, Json> = metadata
        .paths
        .iter()
        .map(|(fqn, parts)| {
            let parts = parts
                .iter()
                .map(|p| match p {
                    Value::Str(s) => json!(&**s),
                    Value::Int(i) => json!(i),
                    other => panic!("unexpected path part {other:?}"),
                })
                .collect::<Vec<_>>();
            (fqn.clone(), Json::Array(parts))
        })
        .collect();
    json!({"entries": entries, "storage": storage, "paths": paths})
}

#[test]
fn metadata_decodes_to_what_torch_reads() {
    let Some(dir) = files() else { return };
    for name in ["plain", "sharded"] {
        let dir = dir.join(name);
        let metadata =
            DcpMetadata::open(&dir, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let oracle: Json =
            serde_json::from_slice(&std::fs::read(dir.join("oracle.json")).unwrap()).unwrap();
        assert_eq!(as_oracle(&metadata), oracle, "{name}");
    }
}

#[test]
fn metadata_with_a_foreign_global_is_refused() {
    let Some(dir) = files() else { return };
    let mut data = std::fs::read(dir.join("plain").join(".metadata")).unwrap();
    // Same length, another module: the VM must refuse it, not record it.
    let at = find(&data, b"torch.distributed.checkpoint.filesystem").unwrap();
    data[at..at + 5].copy_from_slice(b"posix");
    let error = DcpMetadata::parse(&data, &Limits::default()).unwrap_err();
    assert!(error.to_string().contains("posix"), "{error}");
}

#[test]
fn distcp_items_of_torch_default_format_scan_safe() {
    let Some(dir) = files() else { return };
    for (name, file) in [
        ("plain", "__0_0.distcp"),
        ("sharded", "__0_0.distcp"),
        ("sharded", "__1_0.distcp"),
    ] {
        let dir = dir.join(name);
        let metadata = DcpMetadata::open(&dir, &Limits::default()).unwrap();
        let report = scan_distcp(&dir.join(file), &metadata, &Limits::default()).unwrap();
        assert_eq!(report.format, FileFormat::DcpStorage, "{name}/{file}");
        assert_eq!(
            report.verdict(),
            Verdict::Safe,
            "{name}/{file}: {:#?}",
            report.findings
        );
        let items = metadata.items_in(file).len();
        assert!(items >= 1);
        assert!(
            report.findings.iter().any(|f| f.member.is_some()),
            "{name}/{file}: the items were scanned"
        );
    }
}

/// Scanned whole, items after the first are zips after other data: the
/// strict rule without the metadata, kept for files it does not cover.
#[test]
fn distcp_scanned_whole_stays_strict() {
    let Some(dir) = files() else { return };
    let report = scan_path(&dir.join("plain").join("__0_0.distcp"), &Limits::default()).unwrap();
    assert_eq!(
        report.verdict(),
        Verdict::Dangerous,
        "{:#?}",
        report.findings
    );
}

#[test]
fn payload_in_a_distcp_item_is_dangerous() {
    let Some(dir) = files() else { return };
    let dir = dir.join("hostile");
    let metadata = DcpMetadata::open(&dir, &Limits::default()).unwrap();
    let report = scan_distcp(&dir.join("__0_0.distcp"), &metadata, &Limits::default()).unwrap();
    assert_eq!(report.format, FileFormat::DcpStorage);
    let finding = report
        .findings
        .iter()
        .find(|f| f.verdict == Verdict::Dangerous)
        .unwrap_or_else(|| panic!("{:#?}", report.findings));
    assert!(finding.subject.contains("system"), "{finding}");
    assert!(
        finding.member.as_deref().unwrap().contains("value evil"),
        "{finding}"
    );
}

#[test]
fn bytes_the_metadata_does_not_cover_keep_the_strict_verdict() {
    let Some(dir) = files() else { return };
    let dir = dir.join("appended");
    let metadata = DcpMetadata::open(&dir, &Limits::default()).unwrap();
    let report = scan_distcp(&dir.join("__0_0.distcp"), &metadata, &Limits::default()).unwrap();
    assert_ne!(report.format, FileFormat::DcpStorage);
    assert_eq!(
        report.verdict(),
        Verdict::Dangerous,
        "{:#?}",
        report.findings
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
