//! Writes header JSON byte for byte as the reference does (serde_json's
//! compact form), so files are identical for the same input.

use std::fmt::Write;

use crate::format::{Metadata, TensorEntry, METADATA_KEY};

/// Appends `value` as a JSON string with serde_json's escaping rules:
/// quote, backslash and control characters only; non-ASCII stays raw.
pub(crate) fn push_string(out: &mut String, value: &str) {
    out.push('"');
    let mut run_start = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[run_start..i]);
        if escape.is_empty() {
            // Infallible: writing to a String.
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        run_start = i + 1;
    }
    out.push_str(&value[run_start..]);
    out.push('"');
}

/// The compact header JSON: metadata first, then tensors in file order.
pub(crate) fn header_json<'a>(
    metadata: Option<&Metadata>,
    tensors: impl ExactSizeIterator<Item = TensorEntry<'a>>,
) -> String {
    let mut out = String::with_capacity(64 + tensors.len() * 96);
    out.push('{');
    let mut first = true;
    if let Some(metadata) = metadata {
        push_string(&mut out, METADATA_KEY);
        out.push_str(":{");
        for (i, (key, value)) in metadata.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_string(&mut out, key);
            out.push(':');
            push_string(&mut out, value);
        }
        out.push('}');
        first = false;
    }
    for tensor in tensors {
        if !first {
            out.push(',');
        }
        first = false;
        push_entry(&mut out, tensor);
    }
    out.push('}');
    out
}

fn push_entry(out: &mut String, tensor: TensorEntry<'_>) {
    push_string(out, tensor.name);
    out.push_str(":{\"dtype\":\"");
    out.push_str(tensor.dtype.name());
    out.push_str("\",\"shape\":[");
    for (i, dim) in tensor.shape.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{dim}");
    }
    let _ = write!(
        out,
        "],\"data_offsets\":[{},{}]}}",
        tensor.begin, tensor.end
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde_json() {
        for sample in [
            "plain",
            "q\"b\\s",
            "ctl\u{1}\u{1f}\u{7f}",
            "tab\tnl\nff\u{c}bs\u{8}",
            "é/😀",
        ] {
            let mut ours = String::new();
            push_string(&mut ours, sample);
            assert_eq!(ours, serde_json::to_string(sample).unwrap(), "{sample:?}");
        }
    }
}
