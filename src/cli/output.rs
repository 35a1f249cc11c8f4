//! What the client prints on standard output (listings, as a table or JSON) and the units
//! every figure is shown in: sizes in KiB/MiB/GiB and rates in MiB/s, as the progress bar
//! shows them. Names from the server are always passed through [`sanitize_bytes`].

use super::failure::Failure;
use indicatif::HumanBytes;
use std::io::{self, Write};
use std::time::Duration;
use udpft::client::ClientError;
use udpft::proto::listing::Entry;
use udpft::text::sanitize_bytes;

/// Writes `text` to standard output at once. A closed pipe (`udpft ls | head -1`) is a
/// quiet end, not an error line.
pub(crate) fn print_out(text: impl AsRef<[u8]>) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_ref())
        .and_then(|()| out.flush())
        .map_err(|e| ClientError::local("cannot write standard output", e).into())
}

/// A size as the progress bar shows it: `1.20 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

/// A rate as the progress bar shows it: `13.80 MiB/s`.
pub(crate) fn rate(bytes: u64, elapsed: Duration) -> String {
    let per_second = bytes as f64 / elapsed.as_secs_f64().max(1e-9);
    format!("{}/s", HumanBytes(per_second as u64))
}

/// A duration for a person: `850 ms`, `2.4 s`, `95 s`.
pub(crate) fn duration(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 0.01 {
        format!("{:.1} ms", secs * 1e3)
    } else if secs < 1.0 {
        format!("{:.0} ms", secs * 1e3)
    } else if secs < 10.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    }
}

/// The listing as a table: size, modification time (UTC), name.
pub(crate) fn listing_table(entries: &[Entry], human: bool) -> String {
    let mut text = String::new();
    for entry in entries {
        let shown = if human {
            size(entry.size)
        } else {
            entry.size.to_string()
        };
        text.push_str(&format!(
            "{shown:>12}  {}  {}\n",
            format_utc(entry.mtime),
            sanitize_bytes(&entry.name)
        ));
    }
    if entries.is_empty() {
        text.push_str("(the library is empty)\n");
    }
    text
}

/// The listing as one JSON array of `{name, size, mtime}`.
pub(crate) fn listing_json(entries: &[Entry]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{{\"name\":{},\"size\":{},\"mtime\":{}}}",
                json_string(&String::from_utf8_lossy(&e.name)),
                e.size,
                e.mtime
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

/// A JSON string literal (RFC 8259 escaping). Characters that would mislead a terminal
/// that shows the JSON (bidi overrides, invisible format characters) are escaped too:
/// `\u202e` is the same string to every JSON reader.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if udpft::text::is_hidden(c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `YYYY-MM-DD HH:MM` in UTC for seconds since the Unix epoch (civil-from-days).
fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06");
    }

    #[test]
    fn json_strings_escape_quotes_controls_and_format_characters() {
        assert_eq!(json_string("a\"b\\c\x1b"), "\"a\\\"b\\\\c\\u001b\"");
        assert_eq!(json_string("\u{202e}txt.exe"), "\"\\u202etxt.exe\"");
        assert_eq!(json_string("\u{e0041}"), "\"\\udb40\\udc41\"");
        assert_eq!(json_string("été"), "\"été\"");
    }

    #[test]
    fn sizes_rates_and_durations_use_the_progress_bar_units() {
        assert_eq!(size(1_258_291), "1.20 MiB");
        assert_eq!(size(512), "512 B");
        assert_eq!(rate(3 << 20, Duration::from_secs(2)), "1.50 MiB/s");
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_micros(1300)), "1.3 ms");
        assert_eq!(duration(Duration::from_millis(2440)), "2.4 s");
        assert_eq!(duration(Duration::from_secs(95)), "95 s");
    }

    #[test]
    fn tables_show_bytes_or_human_sizes_and_safe_names() {
        let entries = [Entry {
            name: b"\x1b]0;pwned\x07.bin".to_vec(),
            size: 1_258_291,
            mtime: 0,
        }];
        assert_eq!(
            listing_table(&entries, false),
            "     1258291  1970-01-01 00:00  \\u{1b}]0;pwned\\u{7}.bin\n"
        );
        assert!(listing_table(&entries, true).starts_with("    1.20 MiB  "));
    }
}
