//! What the client prints on standard output (listings, as a table or JSON) and the units
//! every figure is shown in: sizes in KiB/MiB/GiB and rates in MiB/s, as the progress bar
//! shows them. Names from the server are always passed through [`sanitize_bytes`].

use super::failure::Failure;
use indicatif::HumanBytes;
use std::io::{self, Write};
use std::time::Duration;
use udpft::client::ClientError;
use udpft::proto::checksum::Checksum;
use udpft::proto::listing::Entry;
use udpft::proto::wire::Algo;
pub(crate) use udpft::text::duration;
use udpft::text::{json_string, sanitize_bytes};

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
    json_array(entries, |_| String::new())
}

/// The listing as JSON with each file's checksum: `{name, size, mtime, ALGO}`, the
/// checksum `null` where the server could not give it.
pub(crate) fn summed_json(
    entries: &[Entry],
    sums: &[Result<Checksum, String>],
    algo: Algo,
) -> String {
    json_array(entries, |i| {
        let value = match sums.get(i) {
            Some(Ok(sum)) => format!("\"{}\"", sum.hex()),
            _ => "null".into(),
        };
        format!(",\"{}\":{value}", algo.name())
    })
}

/// A JSON array of the entries' `{name, size, mtime…}`, `more(i)` adding fields to the
/// `i`th.
fn json_array(entries: &[Entry], more: impl Fn(usize) -> String) -> String {
    let items: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "{{\"name\":{},\"size\":{},\"mtime\":{}{}}}",
                json_string(&String::from_utf8_lossy(&e.name)),
                e.size,
                e.mtime,
                more(i)
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

/// One line of `sum`: `HEX  NAME`, as sha256sum prints it (two spaces: binary and text
/// mode are the same here), the name made safe to print.
pub(crate) fn sum_line(sum: &Checksum, name: &str) -> String {
    format!("{}  {}\n", sum.hex(), sanitize_bytes(name.as_bytes()))
}

/// The listing as a table with each file's checksum (or why there is none) after its name.
pub(crate) fn summed_table(
    entries: &[Entry],
    sums: &[Result<Checksum, String>],
    human: bool,
) -> String {
    let mut text = String::new();
    for (entry, sum) in entries.iter().zip(sums) {
        let line = listing_table(std::slice::from_ref(entry), human);
        let shown = match sum {
            Ok(sum) => sum.hex(),
            Err(why) => format!("({})", why),
        };
        text.push_str(&format!("{}  {shown}\n", line.trim_end()));
    }
    if entries.is_empty() {
        text.push_str("(the library is empty)\n");
    }
    text
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
