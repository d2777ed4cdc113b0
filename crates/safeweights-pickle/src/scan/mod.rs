//! A scanner that reports what loading a file would import and run.
//!
//! It detects formats by content (never by file name), recurses into zip
//! members and nested archives, simulates pickles (including the opcodes
//! the safe reader refuses), and classifies every global it finds.
//!
//! ```no_run
//! use safeweights_pickle::{scan, Limits};
//! let report = scan::scan_path("model.bin".as_ref(), &Limits::default())?;
//! for f in report.findings.iter().filter(|f| f.verdict != scan::Verdict::Safe) {
//!     println!("{f}");
//! }
//! # Ok::<(), safeweights_pickle::Error>(())
//! ```

mod archive;
mod compat;
mod container;
mod danger;
mod distcp;
mod pickle;
mod seven_zip;
mod tar;
mod text;

use std::fmt;
use std::path::Path;

use crate::error::Result;
use crate::limits::Limits;
use crate::source::Source;

pub use distcp::{scan_distcp, DISTCP_EXTENSION};

/// How bad a finding is. Ordered: `Safe < Suspicious < Dangerous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Needed to rebuild tensors; the safe reader accepts it.
    Safe,
    /// Unknown global or opcode, or a malformed container: the safe reader
    /// refuses it, and it may hide something.
    Suspicious,
    /// A global known to execute code or reach the operating system.
    Dangerous,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Safe => "safe",
            Verdict::Suspicious => "suspicious",
            Verdict::Dangerous => "dangerous",
        })
    }
}

/// One thing the scanner noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The scanned file as given.
    pub file: String,
    /// Archive member / nested pickle path inside the file, if any.
    pub member: Option<String>,
    /// What: a global (`os.system`), `opcode INST`, or a container issue.
    pub subject: String,
    /// Byte offset inside the member (or file).
    pub offset: u64,
    /// How bad it is.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

impl Finding {
    pub(crate) fn new(
        subject: impl Into<String>,
        offset: usize,
        verdict: Verdict,
        reason: impl Into<String>,
    ) -> Self {
        Finding {
            file: String::new(),
            member: None,
            subject: subject.into(),
            offset: offset as u64,
            verdict,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.verdict, self.file)?;
        if let Some(m) = &self.member {
            write!(f, ": {m}")?;
        }
        write!(f, " @{}: {}: {}", self.offset, self.subject, self.reason)
    }
}

/// The format detected from a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// A zip archive holding `data.pkl` (torch.save).
    TorchZip,
    /// A legacy torch checkpoint (stream of pickles).
    TorchLegacy,
    /// Any other zip archive (including `.npz`).
    Zip,
    /// A bare pickle.
    Pickle,
    /// torch's pre-0.4 checkpoint: a tar with `storages`, `tensors` and
    /// `pickle` members.
    TorchTar,
    /// Any other tar archive.
    Tar,
    /// A numpy `.npy` array.
    Npy,
    /// A safetensors file.
    Safetensors,
    /// A gzip, bzip2 or xz stream (joblib, pandas and `gzip.open` read
    /// through it); its content is scanned.
    Compressed,
    /// A 7z archive: no loader opens it directly, but users extract it and
    /// load what is inside, so every member is scanned (a member that
    /// cannot be read makes it suspicious).
    SevenZip,
    /// Not a model file at all but what stands in for one: a git-lfs
    /// pointer or a web page ([`safeweights::FileKind::is_placeholder`]).
    NotAModel(safeweights::FileKind),
    /// A GGUF file (llama.cpp's format): tensors and metadata, nothing
    /// executable. The pickle scanner never reports it; callers that
    /// recognise GGUF (the command line) do.
    Gguf,
    /// A data file of torch's default distributed checkpoint format
    /// (`.distcp`), scanned item by item at the ranges its `.metadata`
    /// records ([`scan_distcp`]).
    DcpStorage,
    /// Not recognized; nothing to scan.
    Unknown,
}

/// The result of scanning one file.
#[derive(Debug, Clone)]
pub struct ScanReport {
    /// The scanned file as given.
    pub file: String,
    /// Its detected format.
    pub format: FileFormat,
    /// Everything noticed, safe findings included, in file order.
    pub findings: Vec<Finding>,
    /// Findings dropped after the per-file cap (a flood is itself a sign).
    pub omitted: u64,
}

impl ScanReport {
    /// The worst verdict among the findings (`Safe` when none).
    pub fn verdict(&self) -> Verdict {
        let worst = self
            .findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Safe);
        if self.omitted > 0 {
            worst.max(Verdict::Suspicious)
        } else {
            worst
        }
    }

    /// Findings that are not safe.
    pub fn issues(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.verdict != Verdict::Safe)
    }
}

/// Most findings kept per file.
const MAX_FINDINGS: usize = 10_000;

/// Collects findings with their location.
pub(crate) struct Sink<'f> {
    pub(crate) limits: &'f Limits,
    file: &'f str,
    member: Option<String>,
    depth: usize,
    findings: Vec<Finding>,
    omitted: u64,
    /// Bytes decompressed so far, over all nesting levels; bounded by
    /// `max_total_decompressed` so nested bombs cannot multiply.
    decompressed: u64,
}

impl<'f> Sink<'f> {
    /// Takes `bytes` from the decompression budget; false (and a finding)
    /// when the budget cannot cover them.
    pub(crate) fn spend(&mut self, bytes: u64, what: &str) -> bool {
        let total = self.decompressed.saturating_add(bytes);
        if total > self.limits.max_total_decompressed {
            self.add(Finding::new(
                what,
                0,
                Verdict::Suspicious,
                format!(
                    "not scanned: decompressing it would pass max_total_decompressed ({} bytes \
                     for the whole file), a decompression bomb or an implausibly large model",
                    self.limits.max_total_decompressed
                ),
            ));
            return false;
        }
        self.decompressed = total;
        true
    }

    pub(crate) fn add(&mut self, mut finding: Finding) {
        if self.findings.len() >= MAX_FINDINGS {
            self.omitted += 1;
            return;
        }
        finding.file = self.file.to_owned();
        finding.member = self.member.clone();
        self.findings.push(finding);
    }

    /// An empty sink at the same place, whose findings are kept only if
    /// `commit` is called (for data that may turn out not to be a pickle).
    pub(crate) fn trial(&self) -> Sink<'f> {
        Sink {
            limits: self.limits,
            file: self.file,
            member: self.member.clone(),
            depth: self.depth,
            findings: Vec::new(),
            omitted: 0,
            decompressed: self.decompressed,
        }
    }

    /// Keeps a trial's findings.
    pub(crate) fn commit(&mut self, trial: Sink<'f>) {
        self.omitted += trial.omitted;
        self.decompressed = self.decompressed.max(trial.decompressed);
        for finding in trial.findings {
            // Already located (member paths included) by the trial sink.
            if self.findings.len() >= MAX_FINDINGS {
                self.omitted += 1;
            } else {
                self.findings.push(finding);
            }
        }
    }

    /// Runs `scan` with `label` appended to the member path, one level
    /// deeper; refuses to go past `max_archive_depth`.
    pub(crate) fn nested(&mut self, label: &str, scan: impl FnOnce(&mut Self)) {
        if self.depth >= self.limits.max_archive_depth {
            self.add(Finding::new(
                label,
                0,
                Verdict::Suspicious,
                format!(
                    "nested deeper than max_archive_depth ({}); not scanned",
                    self.limits.max_archive_depth
                ),
            ));
            return;
        }
        let saved = self.member.clone();
        self.member = Some(match &saved {
            Some(m) => format!("{m} > {label}"),
            None => label.to_owned(),
        });
        self.depth += 1;
        scan(self);
        self.depth -= 1;
        self.member = saved;
    }
}

/// Scans bytes; `file` names them in findings.
pub fn scan_bytes(file: &str, data: &[u8], limits: &Limits) -> ScanReport {
    let mut sink = Sink {
        limits,
        file,
        member: None,
        depth: 0,
        findings: Vec::new(),
        omitted: 0,
        decompressed: 0,
    };
    let format = container::scan_any(data, &mut sink);
    ScanReport {
        file: file.to_owned(),
        format,
        findings: sink.findings,
        omitted: sink.omitted,
    }
}

/// Scans a file (memory-mapped). Fails only if the file cannot be read.
pub fn scan_path(path: &Path, limits: &Limits) -> Result<ScanReport> {
    let source = Source::open(path)?;
    Ok(scan_bytes(
        &path.display().to_string(),
        source.bytes(),
        limits,
    ))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
