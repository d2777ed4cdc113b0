//! Files holding what `torch.load(weights_only=True)` accepts beyond plain
//! tensors (written by the real torch and numpy): the reader reads them and
//! the scanner calls none of torch's own allowed globals dangerous.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use safeweights_pickle::scan::{scan_path, Verdict};
use safeweights_pickle::torch::Checkpoint;
use safeweights_pickle::Limits;

static FILES: OnceLock<Option<PathBuf>> = OnceLock::new();

fn files() -> Option<&'static Path> {
    common::generate!("gen_torch_allowed.py", &FILES)
}

#[test]
fn trainer_rng_state_and_torch_allowed_values_read_and_scan_clean() {
    let Some(dir) = files() else { return };
    for name in ["rng_state.pth", "allowed.pt", "allowed_legacy.pt"] {
        let path = dir.join(name);
        let checkpoint = Checkpoint::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(checkpoint
            .root()
            .get(if name == "rng_state.pth" {
                "numpy"
            } else {
                "state_dict"
            })
            .is_some());
        let report = scan_path(&path, &Limits::default()).unwrap();
        assert_eq!(report.issues().count(), 0, "{name}: {:#?}", report.findings);
    }
}

/// Regression: `scan` called DCP's `.metadata` dangerous because of
/// `torch.serialization._get_layout`, which torch itself allows. Its own
/// classes stay suspicious (torch refuses them too unless allowed).
#[test]
fn dcp_metadata_is_not_dangerous_because_of_get_layout() {
    let Some(dir) = files() else { return };
    let report = scan_path(&dir.join("dcp").join(".metadata"), &Limits::default()).unwrap();
    assert_eq!(
        report.verdict(),
        Verdict::Suspicious,
        "{:#?}",
        report.findings
    );
    assert!(
        report.issues().all(|f| !f.subject.contains("_get_layout")),
        "{:#?}",
        report.findings
    );
    assert!(report
        .issues()
        .any(|f| f.subject.contains("checkpoint.metadata.Metadata")));
}
