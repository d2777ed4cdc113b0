//! Terminal output: colour, tables, number formatting, JSON, progress bars.
//!
//! Colour is used only when the stream is a terminal and `NO_COLOR` is
//! unset or empty (<https://no-color.org>). Progress bars go to stderr and
//! only when stderr is a terminal, so pipes and logs stay clean.

use std::io::{self, IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Bold, for headings.
pub const BOLD: Style = Style::new().bold();
/// Red, for removals, failures and non-finite values.
pub const RED: Style = AnsiColor::Red.on_default();
/// Green, for additions and success.
pub const GREEN: Style = AnsiColor::Green.on_default();
/// Yellow, for changes.
pub const YELLOW: Style = AnsiColor::Yellow.on_default();
/// Dimmed, for secondary details.
pub const DIM: Style = Style::new().dimmed();

fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Applies styles to text when the target stream supports colour.
#[derive(Debug, Clone, Copy)]
pub struct Painter {
    enabled: bool,
}

impl Painter {
    /// A painter for stdout.
    pub fn stdout() -> Self {
        Painter {
            enabled: colour_allowed() && io::stdout().is_terminal(),
        }
    }

    /// A painter for stderr.
    pub fn stderr() -> Self {
        Painter {
            enabled: colour_allowed() && io::stderr().is_terminal(),
        }
    }

    /// `text` wrapped in `style`'s escape codes, or unchanged.
    pub fn paint(&self, style: Style, text: impl std::fmt::Display) -> String {
        if self.enabled {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }
}

/// Prints `safeweights: error: MESSAGE` on stderr.
pub fn print_error(message: &str) {
    let painter = Painter::stderr();
    let _ = writeln!(
        io::stderr(),
        "safeweights: {} {message}",
        painter.paint(RED.bold(), "error:")
    );
}

/// Prints a failed command's JSON error document on stdout; a closed
/// stdout is ignored, as the exit code still tells.
pub fn print_json_error(doc: &serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{doc}").and_then(|()| out.flush());
}

/// Prints a warning line on stderr.
pub fn print_warning(message: &str) {
    let painter = Painter::stderr();
    let _ = writeln!(
        io::stderr(),
        "safeweights: {} {message}",
        painter.paint(YELLOW.bold(), "warning:")
    );
}

/// Writes `value` as one pretty-printed JSON document and a newline.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// A plain-text table with left-aligned text and right-aligned numbers.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<(String, Option<Style>)>>,
}

impl Table {
    /// A table with these column titles; `right[i]` right-aligns column `i`.
    pub fn new(header: &[&str], right: &[bool]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            right: right.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of unstyled cells.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| (c, None)).collect());
    }

    /// Adds a row where some cells carry a style.
    pub fn styled_row(&mut self, cells: Vec<(String, Option<Style>)>) {
        self.rows.push(cells);
    }

    /// Writes the table, padding by character count (styles excluded).
    pub fn write(&self, out: &mut impl Write, painter: Painter) -> io::Result<()> {
        let columns = Columns {
            header: &self.header,
            right: &self.right,
        };
        columns.write(out, painter, || {
            self.rows.iter().map(|row| row.iter().cloned())
        })
    }
}

/// Column titles and alignment of a table whose rows are produced twice,
/// once to measure the columns and once to print them, instead of being
/// held: `inspect` of a million tensors prints with no per-row memory.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a, H: AsRef<str>> {
    /// Column titles.
    pub header: &'a [H],
    /// `right[i]` right-aligns column `i`.
    pub right: &'a [bool],
}

impl<H: AsRef<str>> Columns<'_, H> {
    /// Writes the header and the rows `rows()` yields, padding by character
    /// count (styles excluded). `rows` must yield the same rows each call.
    pub fn write<R, C>(
        &self,
        out: &mut impl Write,
        painter: Painter,
        rows: impl Fn() -> R,
    ) -> io::Result<()>
    where
        R: Iterator<Item = C>,
        C: Iterator<Item = (String, Option<Style>)>,
    {
        let mut widths: Vec<usize> = self
            .header
            .iter()
            .map(|h| h.as_ref().chars().count())
            .collect();
        for row in rows() {
            for (i, (cell, _)) in row.enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let header = self
            .header
            .iter()
            .map(|h| (h.as_ref().to_owned(), Some(BOLD)));
        self.write_row(out, painter, &widths, header)?;
        for row in rows() {
            self.write_row(out, painter, &widths, row)?;
        }
        Ok(())
    }

    fn write_row(
        &self,
        out: &mut impl Write,
        painter: Painter,
        widths: &[usize],
        row: impl Iterator<Item = (String, Option<Style>)>,
    ) -> io::Result<()> {
        let mut line = String::new();
        let mut row = row.enumerate().peekable();
        while let Some((i, (cell, style))) = row.next() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            let text = match style {
                Some(style) => painter.paint(style, &cell),
                None => cell,
            };
            let last = row.peek().is_none();
            if self.right.get(i).copied().unwrap_or(false) {
                line.push_str(&pad);
                line.push_str(&text);
            } else {
                line.push_str(&text);
                if !last {
                    line.push_str(&pad);
                }
            }
            if !last {
                line.push_str("  ");
            }
        }
        writeln!(out, "{line}")
    }
}

/// `1536` → `"1.50 KiB"`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// `1234567` → `"1,234,567"`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `[2, 3]` → `"[2, 3]"`.
pub fn shape_string(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// A float in a short form that round-trips (`6`, `0.1`, `1e-12`, `nan`).
pub fn float(value: f64) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.into()
    } else if value != 0.0 && (value.abs() >= 1e16 || value.abs() < 1e-4) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// A JSON number for a finite float, or a string (`"nan"`, `"inf"`,
/// `"-inf"`) since JSON has no non-finite numbers.
pub fn json_float(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or_else(
        || serde_json::Value::String(float(value)),
        serde_json::Value::Number,
    )
}

/// A byte-counting progress bar on stderr, hidden unless stderr is a terminal.
pub fn progress(total_bytes: u64, message: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar
}

/// A progress bar of a download, saying the bytes fetched so far
/// ("fetched 12.3 MiB of 40 MiB"); hidden unless stderr is a terminal.
pub fn fetch_progress(total_bytes: u64, message: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] fetched {bytes} of {total_bytes} ({bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(group_digits(12), "12");
        assert_eq!(float(6.0), "6");
        assert_eq!(float(1e-12), "1e-12");
        assert_eq!(float(f64::NEG_INFINITY), "-inf");
        assert_eq!(shape_string(&[2, 3]), "[2, 3]");
    }
}
