//! Result tables of the benchmarks: rows of cells that print as a Markdown table and write
//! as CSV or JSON, plus the small statistics (median) and unit helpers the scenarios share.
//!
//! A cell keeps its number beside its text, so CSV and JSON carry full-precision values while
//! the Markdown table shows rounded ones.

use clap::Args;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where to write a benchmark's summary table besides printing it.
#[derive(Args, Debug, Default)]
pub struct OutputArgs {
    /// Also write the summary table as CSV to this file.
    #[arg(long, value_name = "PATH")]
    pub csv: Option<PathBuf>,
    /// Also write the summary table as JSON (an array of objects) to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// One value of a table: the text shown, and the number behind it if it is one.
#[derive(Clone, Debug)]
pub struct Cell {
    text: String,
    number: Option<f64>,
}

impl Cell {
    /// A text cell.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            number: None,
        }
    }

    /// A number shown with `decimals` digits after the point.
    pub fn num(value: f64, decimals: usize) -> Self {
        Self {
            text: format!("{value:.decimals$}"),
            number: Some(value),
        }
    }

    /// A whole number.
    pub fn int(value: u64) -> Self {
        Self {
            text: value.to_string(),
            number: Some(value as f64),
        }
    }

    /// A missing value (shown as `-`, written as empty / null).
    pub fn missing() -> Self {
        Self::text("-")
    }
}

/// A table: named columns, rows of cells.
#[derive(Clone, Debug)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; it must have one cell per column.
    pub fn push(&mut self, row: Vec<Cell>) {
        assert_eq!(row.len(), self.headers.len(), "one cell per column");
        self.rows.push(row);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A GitHub-flavoured Markdown table; numeric columns are right-aligned.
    pub fn to_markdown(&self) -> String {
        let numeric: Vec<bool> = (0..self.headers.len())
            .map(|c| !self.rows.is_empty() && self.rows.iter().all(|r| r[c].number.is_some()))
            .collect();
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].text.chars().count())
                    .chain([self.headers[c].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<&str>| {
            out.push('|');
            for (c, text) in cells.into_iter().enumerate() {
                let w = widths[c];
                if numeric[c] {
                    let _ = write!(out, " {text:>w$} |");
                } else {
                    let _ = write!(out, " {text:<w$} |");
                }
            }
            out.push('\n');
        };
        line(&mut out, self.headers.iter().map(String::as_str).collect());
        out.push('|');
        for (c, w) in widths.iter().enumerate() {
            let dashes = "-".repeat(w.saturating_sub(1));
            if numeric[c] {
                let _ = write!(out, " {dashes}: |");
            } else {
                let _ = write!(out, " -{dashes} |");
            }
        }
        out.push('\n');
        for row in &self.rows {
            line(&mut out, row.iter().map(|c| c.text.as_str()).collect());
        }
        out
    }

    /// CSV with a header line; numbers at full precision, missing values empty.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        let header: Vec<String> = self.headers.iter().map(|h| quote(h)).collect();
        out.push_str(&header.join(","));
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c.number {
                    Some(n) => n.to_string(),
                    None if c.text == "-" => String::new(),
                    None => quote(&c.text),
                })
                .collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// A JSON array with one object per row, keyed by column name.
    pub fn to_json(&self) -> String {
        let mut out = String::from("[\n");
        for (i, row) in self.rows.iter().enumerate() {
            out.push_str("  {");
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    out.push_str(", ");
                }
                let value = match cell.number {
                    Some(n) if n.is_finite() => n.to_string(),
                    Some(_) => "null".into(),
                    None if cell.text == "-" => "null".into(),
                    None => json_string(&cell.text),
                };
                let _ = write!(out, "{}: {value}", json_string(&self.headers[c]));
            }
            out.push('}');
            if i + 1 < self.rows.len() {
                out.push(',');
            }
            out.push('\n');
        }
        out.push_str("]\n");
        out
    }

    /// Writes CSV and/or JSON files if paths are given.
    ///
    /// # Errors
    /// If a file cannot be written.
    pub fn write_files(&self, csv: Option<&Path>, json: Option<&Path>) -> io::Result<()> {
        if let Some(path) = csv {
            std::fs::write(path, self.to_csv())?;
        }
        if let Some(path) = json {
            std::fs::write(path, self.to_json())?;
        }
        Ok(())
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The end of a scenario: every round's table printed if `verbose`, and the summary
/// written as CSV and JSON where `output` asks.
///
/// # Errors
/// If a file cannot be written.
pub fn finish(
    summary: &Table,
    every_round: &Table,
    verbose: bool,
    output: &OutputArgs,
) -> io::Result<()> {
    if verbose {
        println!("\n### Every round\n");
        print!("{}", every_round.to_markdown());
    }
    summary.write_files(output.csv.as_deref(), output.json.as_deref())
}

/// The median of `values` (the mean of the middle two for an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Bytes per second in MB/s (1 MB = 10^6 bytes).
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
}

/// A duration in microseconds.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A byte count the way people write it: `64 MiB`, `1.40 KiB`, `12 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    for (unit, name) in UNITS {
        if bytes >= unit {
            return format!("{:.2} {name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn markdown_right_aligns_numeric_columns() {
        let mut t = Table::new(&["name", "value"]);
        t.push(vec![Cell::text("a"), Cell::num(1.5, 1)]);
        let md = t.to_markdown();
        assert!(md.contains("| ----: |") || md.contains("----: |"), "{md}");
        assert!(md.starts_with("| name | value |"), "{md}");
    }

    #[test]
    fn csv_and_json_carry_full_precision_and_nulls() {
        let mut t = Table::new(&["x", "y"]);
        t.push(vec![Cell::num(1.23456, 1), Cell::missing()]);
        assert_eq!(t.to_csv(), "x,y\n1.23456,\n");
        assert_eq!(t.to_json(), "[\n  {\"x\": 1.23456, \"y\": null}\n]\n");
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(1430), "1.40 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
