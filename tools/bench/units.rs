//! Numbers with units on the command lines of the tools: sizes (`64MiB`), probabilities
//! (`5%`) and byte rates (`12.5MB/s`, `100Mbit/s`). Shared by `udpft-bench` and
//! `lossy-proxy`, so a size or a rate is written the same way everywhere.

/// Splits `64MiB` into (64.0, "mib"): the number, then its unit in lower case. An `e` right
/// after a digit belongs to the number (`1e6`).
fn number_and_unit(text: &str, what: &str) -> Result<(f64, String), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not {what}"))?;
    Ok((number, unit.trim().to_ascii_lowercase()))
}

/// Bytes in one `unit` (`kb` = 1000, `kib` = 1024); `None` for an unknown unit.
fn byte_scale(unit: &str) -> Option<f64> {
    Some(match unit {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// Parses a byte size: `64MiB`, `16 MiB`, `500KiB`, `10MB`, `1e6`, `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = number_and_unit(text, "a size (e.g. 64MiB, 10MB, 4096)")?;
    let scale =
        byte_scale(&unit).ok_or_else(|| format!("unknown size unit `{unit}` in `{text}`"))?;
    let bytes = number * scale;
    if (1.0..=1e13).contains(&bytes) {
        Ok(bytes.round() as u64)
    } else {
        Err(format!("`{text}` is outside 1 byte ..= 10 TB"))
    }
}

/// Parses a probability: `0.05` or `5%`, within `0..=1`.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("`{t}` is not a probability (e.g. 0.05 or 5%)"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{t}` is outside 0..=1 (0%..=100%)"))
    }
}

/// Parses a rate in bytes per second: `12.5MB/s`, `12.5MB`, `500KiB/s`, `1e6`, or in bits
/// per second: `100Mbit/s`, `1Gbit`. `0` means no limit.
pub fn parse_byte_rate(text: &str) -> Result<u64, String> {
    let what = "a rate (e.g. 12.5MB/s, 100Mbit/s, 1e6)";
    let (number, unit) = number_and_unit(text, what)?;
    let unit = unit.strip_suffix("/s").unwrap_or(&unit).trim_end();
    let scale = match unit.strip_suffix("bit") {
        // `Mbit` is 10^6 bits; `MBbit` or `MiBbit` mean nothing.
        Some(prefix) => byte_scale(prefix)
            .filter(|_| !prefix.ends_with('b'))
            .map(|bytes| bytes / 8.0),
        None => byte_scale(unit),
    }
    .ok_or_else(|| format!("unknown rate unit `{unit}` in `{text}`"))?;
    let rate = number * scale;
    if rate == 0.0 || (1.0..=1e13).contains(&rate) {
        Ok(rate.round() as u64)
    } else {
        Err(format!(
            "`{text}` is outside 1 B/s ..= 10 TB/s (or 0: no limit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1e6"), Ok(1_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn probabilities_accept_fractions_and_percentages() {
        assert_eq!(parse_probability("0.05"), Ok(0.05));
        assert_eq!(parse_probability("5%"), Ok(0.05));
        assert_eq!(parse_probability("100%"), Ok(1.0));
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("-1%").is_err());
        assert!(parse_probability("lots").is_err());
    }

    #[test]
    fn rates_take_bytes_or_bits_per_second() {
        assert_eq!(parse_byte_rate("12.5MB/s"), Ok(12_500_000));
        assert_eq!(parse_byte_rate("12.5 MB"), Ok(12_500_000));
        assert_eq!(parse_byte_rate("100Mbit/s"), Ok(12_500_000));
        assert_eq!(parse_byte_rate("1Gbit"), Ok(125_000_000));
        assert_eq!(parse_byte_rate("8bit/s"), Ok(1));
        assert_eq!(parse_byte_rate("500KiB/s"), Ok(512_000));
        assert_eq!(parse_byte_rate("1e6"), Ok(1_000_000));
        assert_eq!(parse_byte_rate("0"), Ok(0));
        assert!(parse_byte_rate("-5MB/s").is_err());
        assert!(parse_byte_rate("0.1").is_err());
        assert!(parse_byte_rate("5 furlongs/s").is_err());
        assert!(parse_byte_rate("5Mibit/s").is_err());
    }
}
