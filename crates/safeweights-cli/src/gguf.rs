//! GGUF files (llama.cpp's format), recognised by content whatever their
//! name: `inspect` and `validate` read them through `safeweights-gguf`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use safeweights::format::sniff::SNIFF_LEN;
use safeweights::{sniff, FileKind};
use safeweights_gguf::{Gguf, GgufFile, Value};
use serde_json::{json, Value as Json};

use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{group_digits, human_bytes, json_float, write_json, Painter, Table, BOLD, DIM};

/// Arrays longer than this are summarised in text output.
const SHOWN_ITEMS: usize = 8;
/// Strings longer than this (in characters) are cut in text output.
const SHOWN_CHARS: usize = 60;

/// Whether `path` is a local file whose content is GGUF.
pub fn is_gguf(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut prefix = Vec::with_capacity(SNIFF_LEN);
    // An unreadable file is not GGUF here; the usual reader reports why.
    file.take(SNIFF_LEN as u64).read_to_end(&mut prefix).is_ok()
        && path.is_file()
        && sniff(&prefix) == FileKind::Gguf
}

/// Opens and validates a GGUF file, returning its tensor count.
pub fn validate(path: &Path) -> CliResult<usize> {
    let file = GgufFile::open(path)?;
    let gguf = file.parse()?;
    Ok(gguf.tensors().len())
}

/// `inspect` of a GGUF file.
pub fn inspect(ctx: Context, path: &Path, out: &mut Out) -> CliResult {
    let shown = path.display().to_string();
    let file = GgufFile::open(path).map_err(CliError::from)?;
    let gguf = file.parse().map_err(|e| CliError::from(e).at(&shown))?;
    let parameters: u64 = gguf.tensors().iter().map(|t| t.numel()).sum();
    let bytes: u64 = gguf.tensors().iter().map(|t| t.byte_len).sum();
    let mut per_type: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for t in gguf.tensors() {
        let slot = per_type.entry(t.ggml_type.name()).or_default();
        slot.0 += t.byte_len;
        slot.1 += 1;
    }
    if ctx.json {
        return write_json(out, &inspect_json(&gguf, parameters, bytes, &per_type))
            .map(|()| Status::Success)
            .map_err(CliError::from);
    }
    let painter = Painter::stdout();
    writeln!(out, "{}", painter.paint(BOLD, "metadata"))?;
    let width = gguf
        .metadata()
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    for (key, value) in gguf.metadata() {
        writeln!(out, "  {key:<width$}  {}", summary(value))?;
    }
    writeln!(out)?;
    let mut table = Table::new(
        &["name", "type", "shape", "size"],
        &[false, false, false, true],
    );
    for t in gguf.tensors() {
        let shape: Vec<String> = t.shape().iter().map(u64::to_string).collect();
        table.row(vec![
            t.name.to_owned(),
            t.ggml_type.name().to_owned(),
            format!("[{}]", shape.join(", ")),
            human_bytes(t.byte_len),
        ]);
    }
    table.write(out, painter)?;
    writeln!(out)?;
    writeln!(out, "{}", painter.paint(BOLD, "summary"))?;
    writeln!(
        out,
        "  format      GGUF v{} (alignment {})",
        gguf.version(),
        gguf.alignment()
    )?;
    writeln!(
        out,
        "  tensors     {}",
        group_digits(gguf.tensors().len() as u64)
    )?;
    writeln!(out, "  parameters  {}", group_digits(parameters))?;
    writeln!(
        out,
        "  data        {} ({} bytes)",
        human_bytes(bytes),
        group_digits(bytes)
    )?;
    for (ty, (bytes, count)) in &per_type {
        let noun = if *count == 1 { "tensor" } else { "tensors" };
        let note = painter.paint(DIM, format!("({count} {noun})"));
        writeln!(out, "    {ty:<12}{} {note}", human_bytes(*bytes))?;
    }
    writeln!(
        out,
        "  header      {} bytes",
        group_digits(gguf.data_offset())
    )?;
    Ok(Status::Success)
}

fn inspect_json(
    gguf: &Gguf<'_>,
    parameters: u64,
    bytes: u64,
    per_type: &BTreeMap<&str, (u64, usize)>,
) -> Json {
    let metadata: serde_json::Map<String, Json> = gguf
        .metadata()
        .iter()
        .map(|(key, value)| {
            let mut entry = json!({"type": value.value_type().name(), "value": to_json(value)});
            if let Value::Array(array) = value {
                entry["element_type"] = json!(array.element_type().name());
            }
            ((*key).to_owned(), entry)
        })
        .collect();
    let tensors: Vec<Json> = gguf
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "ggml_type": t.ggml_type.name(),
                "shape": t.shape(),
                "ggml_dims": t.dims,
                "offset": gguf.data_offset() + t.offset,
                "bytes": t.byte_len,
            })
        })
        .collect();
    json!({
        "format": "gguf",
        "version": gguf.version(),
        "alignment": gguf.alignment(),
        "data_offset": gguf.data_offset(),
        "metadata": metadata,
        "tensors": tensors,
        "summary": {
            "tensors": gguf.tensors().len(),
            "parameters": parameters,
            "bytes": bytes,
            "bytes_per_type": per_type.iter().map(|(t, (b, _))| (*t, *b)).collect::<BTreeMap<_, _>>(),
        },
    })
}

/// The whole value, arrays as (nested) lists.
/// The value as JSON, NaN and infinities as strings.
fn to_json(value: &Value<'_>) -> Json {
    value.to_json(&json_float)
}

/// One line for text output: long strings cut, long arrays summarised as
/// their type, length and first elements.
fn summary(value: &Value<'_>) -> String {
    match value {
        Value::String(text) => {
            let count = text.chars().count();
            if count <= SHOWN_CHARS {
                format!("{text:?}")
            } else {
                let head: String = text.chars().take(SHOWN_CHARS).collect();
                format!("{head:?}… ({count} characters)")
            }
        }
        Value::Array(array) => {
            let items: Vec<String> = array
                .iter()
                .take(SHOWN_ITEMS)
                .map(|v| summary(&v))
                .collect();
            let more = if array.len() > SHOWN_ITEMS {
                ", …"
            } else {
                ""
            };
            format!(
                "[{} × {}] [{}{more}]",
                array.element_type().name(),
                group_digits(array.len() as u64),
                items.join(", ")
            )
        }
        // f32's own shortest form (0.1), not that of its f64 widening.
        Value::F32(v) => v.to_string(),
        other => match to_json(other) {
            Json::String(text) => text,
            json => json.to_string(),
        },
    }
}

/// `scan` of a GGUF file: what it is (tensors and metadata, nothing that
/// runs), whether the strict reader accepts it, and its chat templates,
/// which are data: safeweights never evaluates them, and only template
/// constructs that escape a Jinja sandbox make one suspicious.
pub fn scan_report(path: &Path) -> CliResult<safeweights_pickle::scan::ScanReport> {
    use safeweights_pickle::scan::{FileFormat, Finding, ScanReport, Verdict};
    let shown = path.display().to_string();
    let finding = |subject: String, verdict, reason: String| Finding {
        file: shown.clone(),
        member: None,
        subject,
        offset: 0,
        verdict,
        reason,
    };
    let file = GgufFile::open(path).map_err(CliError::from)?;
    let mut findings = Vec::new();
    match file.parse() {
        Err(error) => findings.push(finding(
            "malformed GGUF".into(),
            Verdict::Suspicious,
            format!("{error}; the strict reader refuses it, and llama.cpp's parser has had memory-safety bugs from such files"),
        )),
        Ok(gguf) => {
            findings.push(finding(
                "GGUF".into(),
                Verdict::Safe,
                format!(
                    "{} tensors and {} metadata keys: data only, nothing in a GGUF file is executed when it is loaded",
                    gguf.tensors().len(),
                    gguf.metadata().len()
                ),
            ));
            for (key, text) in safeweights_gguf::template::chat_templates(&gguf) {
                let escapes = safeweights_gguf::template::template_escapes(text);
                findings.push(if escapes.is_empty() {
                    finding(
                        key.into(),
                        Verdict::Safe,
                        "a Jinja chat template: data, never code to safeweights; front-ends render it, which is safe in a sandboxed Jinja".into(),
                    )
                } else {
                    finding(
                        key.into(),
                        Verdict::Suspicious,
                        format!(
                            "a Jinja chat template using {}, which chat templates never need and sandbox escapes do; render it only with a sandboxed Jinja (jinja2.sandbox), or not at all",
                            escapes.join(", ")
                        ),
                    )
                });
            }
        }
    }
    Ok(ScanReport {
        file: shown,
        format: FileFormat::Gguf,
        findings,
        omitted: 0,
    })
}

/// Dequantizes a GGUF file into a temporary safetensors file (in the
/// system's temporary directory) and returns its path; the caller removes it.
pub fn dequantized_copy(path: &Path, sync: bool) -> CliResult<std::path::PathBuf> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let temp = std::env::temp_dir().join(format!(
        "safeweights-gguf-{}-{}.safetensors",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = safeweights_convert::gguf::GgufToSafetensors {
        force: true,
        ..Default::default()
    };
    options.write.sync = sync;
    safeweights_convert::gguf::gguf_to_safetensors(path, &temp, &options)?;
    Ok(temp)
}
