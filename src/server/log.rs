//! The server's log on stderr: one timestamped line per session when it ends (peer,
//! operation, `tftp-` before it for a TFTP session, file name, bytes, duration, outcome), the `--stats-every` line, as text for
//! people or as JSON lines (`--log-format json`) for machines. Names and failure texts came
//! from the network and are shown safely ([`crate::text`]).

use crate::proto::endpoint::Record;
use crate::text::{duration, json_string, sanitize, sanitize_bytes};
use indicatif::HumanBytes;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-02T07:12:03Z 127.0.0.1:50122 get report.pdf 12.40 MiB 910 ms ok`
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("unknown log format {s:?} (text or json)")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Writes log lines in one format.
#[derive(Clone, Copy, Debug, Default)]
pub struct Logger {
    format: LogFormat,
}

impl Logger {
    /// A logger writing `format`.
    pub fn new(format: LogFormat) -> Self {
        Self { format }
    }

    /// The line for a session that ended.
    pub fn session(&self, record: &Record) {
        eprintln!("{}", self.session_line(record, SystemTime::now()));
    }

    /// The line for a session that ended at `at`.
    pub fn session_line(&self, record: &Record, at: SystemTime) -> String {
        let time = humantime::format_rfc3339_seconds(at);
        let name = if record.name.is_empty() {
            "-".to_owned()
        } else {
            sanitize_bytes(&record.name)
        };
        let failure = record.failure.as_ref().map(ToString::to_string);
        let protocol = if record.tftp { "tftp" } else { "udpft" };
        let w = &record.window;
        // A windowed sender's congestion window, the one place a download's can be seen.
        let (window_text, window_json) = w.mean_cwnd().map_or_else(Default::default, |mean| {
            (
                format!(
                    " window mean {mean:.1} max {} cuts {} (loss {} timeout {} delay {}) held {}/{} resumed {}",
                    w.max_cwnd,
                    w.cuts(),
                    w.cut_congestion,
                    w.cut_timeout,
                    w.cut_backlog,
                    w.rounds_held,
                    w.rounds,
                    w.resumed
                ),
                format!(
                    ",\"window\":{{\"mean\":{mean:.3},\"max\":{},\"cut_congestion\":{},\"cut_timeout\":{},\"cut_delay\":{},\"rounds_held\":{},\"rounds\":{},\"resumed\":{}}}",
                    w.max_cwnd,
                    w.cut_congestion,
                    w.cut_timeout,
                    w.cut_backlog,
                    w.rounds_held,
                    w.rounds,
                    w.resumed
                ),
            )
        });
        match self.format {
            LogFormat::Text => format!(
                "{time} {} {}{} {name} {} {} {}{window_text}",
                record.peer,
                if record.tftp { "tftp-" } else { "" },
                record.op,
                HumanBytes(record.bytes),
                duration(record.duration),
                match &failure {
                    None => "ok".to_owned(),
                    Some(why) => format!("failed: {}", sanitize(why)),
                }
            ),
            LogFormat::Json => format!(
                "{{\"time\":\"{time}\",\"peer\":\"{}\",\"protocol\":\"{protocol}\",\"op\":\"{}\",\"name\":{},\"bytes\":{},\"seconds\":{:.6},\"outcome\":\"{}\"{}{window_json}}}",
                record.peer,
                record.op,
                json_string(&String::from_utf8_lossy(&record.name)),
                record.bytes,
                record.duration.as_secs_f64(),
                if failure.is_none() { "ok" } else { "failed" },
                failure
                    .map(|why| format!(",\"reason\":{}", json_string(&why)))
                    .unwrap_or_default()
            ),
        }
    }

    /// A statistics line.
    pub fn stats(&self, line: &str) {
        let time = humantime::format_rfc3339_seconds(SystemTime::now());
        match self.format {
            LogFormat::Text => eprintln!("{time} stats {line}"),
            LogFormat::Json => eprintln!("{{\"time\":\"{time}\",\"stats\":{}}}", json_string(line)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::grant::Op;
    use crate::proto::{ErrorCode, Failure};
    use std::time::{Duration, UNIX_EPOCH};

    fn record(failure: Option<Failure>) -> Record {
        Record {
            peer: "127.0.0.1:50122".parse().unwrap(),
            op: Op::Get,
            name: b"report\x1b.pdf".to_vec(),
            bytes: 13_002_342,
            duration: Duration::from_millis(910),
            tftp: false,
            failure,
            window: Default::default(),
        }
    }

    #[test]
    fn a_text_line_names_peer_op_file_bytes_time_and_outcome() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let line = Logger::new(LogFormat::Text).session_line(&record(None), at);
        assert_eq!(
            line,
            "2026-11-18T11:06:40Z 127.0.0.1:50122 get report\\u{1b}.pdf 12.40 MiB 910 ms ok"
        );
        let failed = record(Some(Failure::Local {
            code: ErrorCode::Io,
            text: "disk full".into(),
        }));
        let line = Logger::new(LogFormat::Text).session_line(&failed, at);
        assert!(line.ends_with("failed: disk full"), "{line}");
    }

    #[test]
    fn a_json_line_is_one_object() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let failed = record(Some(Failure::Local {
            code: ErrorCode::Io,
            text: "disk \"full\"".into(),
        }));
        let line = Logger::new(LogFormat::Json).session_line(&failed, at);
        assert_eq!(
            line,
            "{\"time\":\"2026-11-18T11:06:40Z\",\"peer\":\"127.0.0.1:50122\",\"protocol\":\"udpft\",\"op\":\"get\",\"name\":\"report\\u001b.pdf\",\"bytes\":13002342,\"seconds\":0.910000,\"outcome\":\"failed\",\"reason\":\"disk \\\"full\\\"\"}"
        );
    }

    #[test]
    fn a_windowed_senders_line_ends_with_its_congestion_window() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let mut windowed = record(None);
        windowed.window = crate::proto::WindowStats {
            // A window of 40 for one second, then 60 for another: a mean of 50.
            cwnd_ns: 40 * 1_000_000_000 + 60 * 1_000_000_000,
            span: Duration::from_secs(2),
            max_cwnd: 64,
            cut_congestion: 1,
            cut_timeout: 2,
            cut_backlog: 3,
            rounds: 100,
            rounds_held: 7,
            resumed: 1,
        };
        let line = Logger::new(LogFormat::Text).session_line(&windowed, at);
        assert!(
            line.ends_with(
                " ok window mean 50.0 max 64 cuts 6 (loss 1 timeout 2 delay 3) held 7/100 resumed 1"
            ),
            "{line}"
        );
        let line = Logger::new(LogFormat::Json).session_line(&windowed, at);
        assert!(
            line.ends_with(
                ",\"outcome\":\"ok\",\"window\":{\"mean\":50.000,\"max\":64,\"cut_congestion\":1,\"cut_timeout\":2,\"cut_delay\":3,\"rounds_held\":7,\"rounds\":100,\"resumed\":1}}"
            ),
            "{line}"
        );
    }
}
