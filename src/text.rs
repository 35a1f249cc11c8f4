//! Showing text that came from the network: file names a server lists, the texts of its
//! Error messages. Such text must not drive the user's terminal (escape sequences) nor
//! lie about what it says (a right-to-left override makes `\u{202e}txt.exe` display as
//! `exe.txt`), so every character that is not plainly visible is shown as an escape.
//! The server's log and the client's every message use the same rule, and the same few
//! formats (JSON strings, durations).

use std::time::Duration;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` is shown as an escape: control characters (C0, DEL, C1: terminal escapes
/// among them), format characters (bidirectional overrides and isolates, zero-width
/// characters, the byte-order mark, tag characters...), and line and paragraph separators.
pub fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// `text` with every [hidden](is_hidden) character replaced by a visible escape
/// (`\u{1b}`, `\n`, `\u{202e}`); everything else is kept as it is.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`sanitize`] for raw bytes, with invalid UTF-8 shown as U+FFFD.
pub fn sanitize_bytes(bytes: &[u8]) -> String {
    sanitize(&String::from_utf8_lossy(bytes))
}

/// A JSON string literal (RFC 8259 escaping). Characters that would mislead a terminal
/// that shows the JSON (bidi overrides, invisible format characters) are escaped too:
/// `\u202e` is the same string to every JSON reader.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_hidden(c) => {
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

/// A duration for a person: `850 ms`, `2.4 s`, `95 s`.
pub fn duration(elapsed: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_controls_and_format_characters() {
        assert_eq!(json_string("a\"b\\c\x1b"), "\"a\\\"b\\\\c\\u001b\"");
        assert_eq!(json_string("\u{202e}txt.exe"), "\"\\u202etxt.exe\"");
        assert_eq!(json_string("\u{e0041}"), "\"\\udb40\\udc41\"");
        assert_eq!(json_string("été"), "\"été\"");
    }

    #[test]
    fn terminal_escapes_and_line_breaks_become_visible() {
        assert_eq!(sanitize("a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(sanitize("line\nbreak\r"), "line\\nbreak\\r");
        assert_eq!(sanitize("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(sanitize("\x7f"), "\\u{7f}");
    }

    #[test]
    fn bidirectional_and_invisible_format_characters_become_visible() {
        assert_eq!(sanitize("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        for c in [
            '\u{200b}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202d}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
            '\u{61c}',
        ] {
            let shown = sanitize(&format!("a{c}b"));
            assert_eq!(shown, format!("a{}b", c.escape_default()), "{:x}", c as u32);
        }
    }

    #[test]
    fn visible_text_is_kept() {
        for text in [
            "plain été",
            "résumé 2026.pdf",
            "日本語.txt",
            "emoji 🎉",
            "a\\b",
        ] {
            assert_eq!(sanitize(text), text);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(sanitize_bytes(b"a\xffb\x1b"), "a\u{fffd}b\\u{1b}");
    }
}
