//! `scan`: report which files would run code when loaded.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safeweights::resolve::is_url;
use safeweights::FileKind;
use safeweights_pickle::dcp::DcpMetadata;
use safeweights_pickle::scan::{
    scan_distcp, scan_path, FileFormat, Finding, ScanReport, Verdict, DISTCP_EXTENSION,
};
use safeweights_pickle::Limits;
use serde_json::{json, Value};

use crate::cli::ScanArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, ErrorKind, Status};
use crate::output::{print_error, progress, write_json, Painter, DIM, GREEN, RED, YELLOW};
use crate::source::fetch_whole;

/// Runs `scan`: exit 0 if every file is safe, 1 if anything is suspicious
/// or dangerous, 2 if a file cannot be read (the answer is incomplete).
pub fn run(ctx: Context, args: &ScanArgs, out: &mut Out) -> CliResult {
    let files = collect_files(&args.paths)?;
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let bar = progress(total, "scanning");
    let limits = Limits::default();
    let painter = Painter::stdout();
    let mut results = Vec::with_capacity(files.len());
    let mut unreadable = false;
    let mut dcp = DcpDirectories::default();
    for (path, len) in &files {
        bar.set_message(path.display().to_string());
        if is_temporary(path) {
            // Our own partial output, not a file anyone would load: a
            // truncated header would otherwise look like a tampered file.
            if !ctx.json {
                bar.suspend(|| print_incomplete(out, path, painter))?;
            }
            results.push(Outcome::Incomplete(path.clone()));
            bar.inc(*len);
            continue;
        }
        let scanned = bar.suspend(|| scan_one(path, &limits, &ctx, &mut dcp));
        match scanned {
            Ok(report) => {
                if !ctx.json {
                    bar.suspend(|| print_report(out, &report, args.all, painter))?;
                }
                results.push(Outcome::Scanned(report));
            }
            Err(error) => {
                unreadable = true;
                let message = format!("{}: {error}", path.display());
                bar.suspend(|| print_error(&message));
                results.push(Outcome::Unreadable(path.clone(), message));
            }
        }
        bar.inc(*len);
    }
    bar.finish_and_clear();
    let worst = results
        .iter()
        .filter_map(Outcome::report)
        .map(ScanReport::verdict)
        .max()
        .unwrap_or(Verdict::Safe);
    if ctx.json {
        let files: Vec<Value> = results.iter().map(|r| report_json(r, args.all)).collect();
        write_json(out, &json!({"verdict": worst.to_string(), "files": files}))?;
    } else {
        print_summary(out, &results, painter)?;
    }
    if unreadable {
        Err(CliError::reported(ErrorKind::Input))
    } else {
        Ok(Status::negative_if(worst != Verdict::Safe))
    }
}

/// Scans one file; a URL is first downloaded whole into a temporary file
/// (removed afterwards), and the report names the URL.
fn scan_one(
    path: &Path,
    limits: &Limits,
    ctx: &Context,
    dcp: &mut DcpDirectories,
) -> Result<ScanReport, String> {
    let url = path.to_str().filter(|text| is_url(text));
    let fetched = url
        .map(|url| fetch_whole(url, ctx))
        .transpose()
        .map_err(|e| e.to_string())?;
    let local = fetched.as_ref().map_or(path, |temp| temp.path());
    let metadata = if url.is_none() {
        dcp.metadata_for(path, limits)
    } else {
        None
    };
    let mut report = if crate::gguf::is_gguf(local) {
        crate::gguf::scan_report(local).map_err(|e| e.to_string())?
    } else if let Some(metadata) = metadata {
        scan_distcp(local, metadata, limits).map_err(|e| e.to_string())?
    } else {
        scan_path(local, limits).map_err(|e| e.to_string())?
    };
    if let Some(url) = url {
        report.file = url.to_owned();
        for finding in &mut report.findings {
            finding.file = url.to_owned();
        }
    }
    Ok(report)
}

/// The decoded `.metadata` of the directories holding `.distcp` files,
/// read once per directory (`None` where it is missing or does not decode:
/// those files keep the strict whole-file scan).
#[derive(Default)]
struct DcpDirectories(HashMap<PathBuf, Option<DcpMetadata>>);

impl DcpDirectories {
    /// The metadata that places `path`'s items, if `path` is a `.distcp`
    /// file beside a `.metadata` that decodes.
    fn metadata_for(&mut self, path: &Path, limits: &Limits) -> Option<&DcpMetadata> {
        if path.extension()? != DISTCP_EXTENSION {
            return None;
        }
        let directory = path.parent()?.to_path_buf();
        self.0
            .entry(directory)
            .or_insert_with_key(|directory| DcpMetadata::open(directory, limits).ok())
            .as_ref()
    }
}

/// Expands directories recursively, in sorted order. Symbolic links to
/// directories are not followed, so a link cycle cannot loop forever.
pub fn collect_files(paths: &[PathBuf]) -> CliResult<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for path in paths {
        if path.to_str().is_some_and(is_url) {
            // Its length is known once it is fetched.
            files.push((path.clone(), 0));
            continue;
        }
        let metadata = std::fs::metadata(path).map_err(|e| CliError::from(e).at(path.display()))?;
        if metadata.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push((path.clone(), metadata.len()));
        }
    }
    Ok(files)
}

fn walk(directory: &Path, files: &mut Vec<(PathBuf, u64)>) -> CliResult<()> {
    let error = |e: std::io::Error| CliError::from(e).at(directory.display());
    let mut entries: Vec<PathBuf> = std::fs::read_dir(directory)
        .map_err(error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    entries.sort();
    for path in entries {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            walk(&path, files)?;
        } else if metadata.is_file() {
            files.push((path, metadata.len()));
        } else if let Ok(target) = std::fs::metadata(&path) {
            if target.is_file() {
                files.push((path, target.len()));
            }
        }
    }
    Ok(())
}

/// A hidden `.NAME.XXXXXX.tmp` file of a safeweights write.
pub fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(safeweights::write::is_temporary_file_name)
}

const INCOMPLETE: &str = "an incomplete safeweights write";

fn print_incomplete(out: &mut Out, path: &Path, painter: Painter) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} {}",
        path.display(),
        painter.paint(DIM, INCOMPLETE),
        painter.paint(
            DIM,
            "(a temporary file an interrupted save left; `safeweights clean` removes it)"
        )
    )
}

fn format_name(format: FileFormat) -> &'static str {
    match format {
        FileFormat::TorchZip => "torch zip checkpoint",
        FileFormat::TorchLegacy => "legacy torch checkpoint",
        FileFormat::Zip => "zip archive",
        FileFormat::TorchTar => "torch tar checkpoint (pre-0.4)",
        FileFormat::Tar => "tar archive",
        FileFormat::Pickle => "pickle",
        FileFormat::Npy => "numpy .npy",
        FileFormat::Safetensors => "safetensors",
        FileFormat::Compressed => "compressed stream (gzip, bzip2 or xz)",
        FileFormat::SevenZip => "7z archive",
        FileFormat::Gguf => "GGUF (llama.cpp)",
        FileFormat::DcpStorage => "torch distributed checkpoint data (.distcp), item by item",
        FileFormat::NotAModel(FileKind::GitLfsPointer) => {
            "not a model file: a git-lfs pointer (fetch the file with `git lfs pull`)"
        }
        FileFormat::NotAModel(_) => "not a model file: an HTML page saved in place of the file",
        _ => "unrecognised: nothing to load",
    }
}

fn verdict_style(verdict: Verdict) -> anstyle::Style {
    match verdict {
        Verdict::Safe => GREEN,
        Verdict::Suspicious => YELLOW,
        Verdict::Dangerous => RED,
    }
}

fn print_report(
    out: &mut Out,
    report: &ScanReport,
    all: bool,
    painter: Painter,
) -> std::io::Result<()> {
    let verdict = report.verdict();
    writeln!(
        out,
        "{}: {} {}",
        report.file,
        painter.paint(verdict_style(verdict), verdict),
        painter.paint(DIM, format!("({})", format_name(report.format)))
    )?;
    for finding in report
        .findings
        .iter()
        .filter(|f| all || f.verdict != Verdict::Safe)
    {
        let place = match &finding.member {
            Some(member) => format!("{member} @{}", finding.offset),
            None => format!("@{}", finding.offset),
        };
        writeln!(
            out,
            "  {:<10} {}  {}  {}",
            painter.paint(verdict_style(finding.verdict), finding.verdict),
            finding.subject,
            painter.paint(DIM, place),
            finding.reason
        )?;
    }
    if report.omitted > 0 {
        writeln!(out, "  ... {} more findings omitted", report.omitted)?;
    }
    Ok(())
}

/// What scanning one file gave.
enum Outcome {
    Scanned(ScanReport),
    /// A temporary file of an interrupted safeweights write.
    Incomplete(PathBuf),
    Unreadable(PathBuf, String),
}

impl Outcome {
    fn report(&self) -> Option<&ScanReport> {
        match self {
            Outcome::Scanned(report) => Some(report),
            _ => None,
        }
    }
}

fn print_summary(out: &mut Out, results: &[Outcome], painter: Painter) -> std::io::Result<()> {
    let count = |verdict| {
        results
            .iter()
            .filter(|r| r.report().is_some_and(|report| report.verdict() == verdict))
            .count()
    };
    let incomplete = results
        .iter()
        .filter(|r| matches!(r, Outcome::Incomplete(_)))
        .count();
    let errors = results
        .iter()
        .filter(|r| matches!(r, Outcome::Unreadable(..)))
        .count();
    let mut summary = format!(
        "{} files scanned: {} safe, {} suspicious, {} dangerous",
        results.len(),
        painter.paint(GREEN, count(Verdict::Safe)),
        painter.paint(YELLOW, count(Verdict::Suspicious)),
        painter.paint(RED, count(Verdict::Dangerous)),
    );
    if incomplete > 0 {
        summary.push_str(&format!(", {incomplete} incomplete safeweights writes"));
    }
    if errors > 0 {
        summary.push_str(&format!(", {errors} unreadable"));
    }
    writeln!(out, "\n{summary}")
}

fn finding_json(finding: &Finding) -> Value {
    json!({
        "member": finding.member,
        "subject": finding.subject,
        "offset": finding.offset,
        "verdict": finding.verdict.to_string(),
        "reason": finding.reason,
    })
}

fn report_json(result: &Outcome, all: bool) -> Value {
    match result {
        Outcome::Scanned(report) => json!({
            "path": report.file,
            "format": format_name(report.format),
            "verdict": report.verdict().to_string(),
            "findings": report
                .findings
                .iter()
                .filter(|f| all || f.verdict != Verdict::Safe)
                .map(finding_json)
                .collect::<Vec<_>>(),
            "omitted": report.omitted,
            "error": null,
        }),
        Outcome::Incomplete(path) => json!({
            "path": path.display().to_string(),
            "format": INCOMPLETE,
            "verdict": Verdict::Safe.to_string(),
            "findings": [],
            "omitted": 0,
            "error": null,
        }),
        Outcome::Unreadable(path, message) => json!({
            "path": path.display().to_string(),
            "verdict": null,
            "findings": [],
            "error": message,
        }),
    }
}
