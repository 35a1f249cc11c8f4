//! What a session child tells the parent, over one Unix datagram socket that every child
//! inherits: that its session opened (or was refused), its progress now and then, and how
//! it ended. One record a datagram (a Unix datagram socket keeps them whole), carrying the
//! child's pid so the parent knows whose it is, and at the end what the child's congestion
//! window did, so the parent's log line of a windowed download says it as the other models'
//! do.
//!
//! ```text
//!  kind u8 | pid u32 | bytes u64 | sent u64 | failure u8 | code u16 | tries u32 | ms u64
//!  | final block + 1 u64 (0: none) | window: cwnd_ns u128 | span_ns u64 | max u64
//!  | cuts congestion, timeout, delay u64 ×3 | resumed u64 | rounds u64 | rounds held u64
//!  | text
//! ```

use super::super::log::Logger;
use super::Child;
use crate::proto::endpoint::Endpoint;
use crate::proto::server_session::End;
use crate::proto::wire::ErrorCode;
use crate::proto::{Failure, Outcome, WindowStats};
use byteorder::{ByteOrder, NetworkEndian};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// One record from a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// The session opened.
    Opened,
    /// The store refused to open it (the child told the peer).
    Refused,
    /// Bytes moved so far.
    Progress(u64),
    /// The upload is committed to the library, its final acknowledgement not yet sent: the
    /// parent's listing must show it before the client can ask (its snapshot's generation
    /// lives in the parent's memory, which the child's commit cannot touch).
    Committed,
    /// The session is over.
    Ended { end: End, sent: u64 },
}

/// Where the window's statistics start, and their length.
const WINDOW: usize = 1 + 4 + 8 + 8 + 1 + 2 + 4 + 8 + 8;
const WINDOW_LEN: usize = 16 + 8 * 8;

const HEADER: usize = WINDOW + WINDOW_LEN;

/// The longest failure text carried.
const MAX_TEXT: usize = 512;

/// The longest record: a buffer this large reads any of them whole.
pub(super) const MAX_REPORT: usize = HEADER + MAX_TEXT;

impl Report {
    /// Encodes this record of child `pid`.
    pub(super) fn encode(&self, pid: u32) -> Vec<u8> {
        let mut out = vec![0u8; HEADER];
        let (kind, bytes, sent, outcome, last, window) = match self {
            Self::Opened => (1, 0, 0, None, None, None),
            Self::Refused => (2, 0, 0, None, None, None),
            Self::Progress(bytes) => (3, *bytes, 0, None, None, None),
            Self::Committed => (5, 0, 0, None, None, None),
            Self::Ended { end, sent } => (
                4,
                end.bytes,
                *sent,
                Some(&end.outcome),
                end.final_block,
                Some(&end.window),
            ),
        };
        out[0] = kind;
        NetworkEndian::write_u32(&mut out[1..5], pid);
        NetworkEndian::write_u64(&mut out[5..13], bytes);
        NetworkEndian::write_u64(&mut out[13..21], sent);
        let (failure, code, tries, ms, text) = match outcome {
            None | Some(Some(Outcome::Complete)) => (0, 0, 0, 0, String::new()),
            Some(None) => (1, 0, 0, 0, String::new()),
            Some(Some(Outcome::Failed(Failure::Timeout { tries, elapsed }))) => {
                (2, 0, *tries, elapsed.as_millis() as u64, String::new())
            }
            Some(Some(Outcome::Failed(Failure::Peer { code, text }))) => {
                (3, code.to_u16(), 0, 0, text.clone())
            }
            Some(Some(Outcome::Failed(Failure::Local { code, text }))) => {
                (4, code.to_u16(), 0, 0, text.clone())
            }
        };
        out[21] = failure;
        NetworkEndian::write_u16(&mut out[22..24], code);
        NetworkEndian::write_u32(&mut out[24..28], tries);
        NetworkEndian::write_u64(&mut out[28..36], ms);
        NetworkEndian::write_u64(&mut out[36..44], last.map_or(0, |b| b + 1));
        if let Some(w) = window {
            encode_window(w, &mut out[WINDOW..HEADER]);
        }
        out.extend_from_slice(crate::proto::wire::clip_to(&text, MAX_TEXT).as_bytes());
        out
    }

    /// Decodes a record: the child's pid and the report; `None` if malformed.
    pub(super) fn decode(bytes: &[u8]) -> Option<(u32, Self)> {
        if bytes.len() < HEADER {
            return None;
        }
        let pid = NetworkEndian::read_u32(&bytes[1..5]);
        let moved = NetworkEndian::read_u64(&bytes[5..13]);
        let sent = NetworkEndian::read_u64(&bytes[13..21]);
        let code = ErrorCode::from_u16(NetworkEndian::read_u16(&bytes[22..24]));
        let text = String::from_utf8_lossy(&bytes[HEADER..]).into_owned();
        let failure = match bytes[21] {
            0 => Some(Outcome::Complete),
            1 => None,
            2 => Some(Outcome::Failed(Failure::Timeout {
                tries: NetworkEndian::read_u32(&bytes[24..28]),
                elapsed: Duration::from_millis(NetworkEndian::read_u64(&bytes[28..36])),
            })),
            3 => Some(Outcome::Failed(Failure::Peer { code, text })),
            4 => Some(Outcome::Failed(Failure::Local { code, text })),
            _ => return None,
        };
        let report = match bytes[0] {
            1 => Self::Opened,
            2 => Self::Refused,
            3 => Self::Progress(moved),
            5 => Self::Committed,
            4 => Self::Ended {
                end: End {
                    outcome: failure,
                    bytes: moved,
                    final_block: NetworkEndian::read_u64(&bytes[36..44]).checked_sub(1),
                    window: decode_window(&bytes[WINDOW..HEADER]),
                },
                sent,
            },
            _ => return None,
        };
        Some((pid, report))
    }
}

/// The window's statistics, in the order of the layout above, as `u64`s after `cwnd_ns`.
fn window_words(w: &WindowStats) -> [u64; 8] {
    [
        w.span.as_nanos().min(u128::from(u64::MAX)) as u64,
        w.max_cwnd,
        w.cut_congestion,
        w.cut_timeout,
        w.cut_backlog,
        w.resumed,
        w.rounds,
        w.rounds_held,
    ]
}

fn encode_window(w: &WindowStats, out: &mut [u8]) {
    NetworkEndian::write_u128(&mut out[..16], w.cwnd_ns);
    NetworkEndian::write_u64_into(&window_words(w), &mut out[16..]);
}

fn decode_window(bytes: &[u8]) -> WindowStats {
    let mut words = [0u64; 8];
    NetworkEndian::read_u64_into(&bytes[16..], &mut words);
    let [span, max_cwnd, cut_congestion, cut_timeout, cut_backlog, resumed, rounds, rounds_held] =
        words;
    WindowStats {
        cwnd_ns: NetworkEndian::read_u128(&bytes[..16]),
        span: Duration::from_nanos(span),
        max_cwnd,
        cut_congestion,
        cut_timeout,
        cut_backlog,
        resumed,
        rounds,
        rounds_held,
    }
}

/// Applies every report the children sent since the last call.
pub(super) fn apply(
    reports: &UnixDatagram,
    children: &mut HashMap<Pid, Child>,
    endpoint: &mut Endpoint,
    log: &Logger,
    now: Instant,
    buf: &mut [u8],
) {
    while let Ok(n) = reports.recv(buf) {
        let Some((pid, report)) = Report::decode(&buf[..n]) else {
            continue;
        };
        let Some(child) = children.get_mut(&Pid::from_raw(pid as i32)) else {
            continue;
        };
        match report {
            Report::Opened => endpoint.opened(),
            Report::Refused => {
                child.ended = true;
                endpoint.open_failed(child.key, None);
            }
            Report::Progress(bytes) => endpoint.progress(child.key, bytes, now),
            Report::Committed => endpoint.committed(),
            Report::Ended { end, sent } => {
                child.ended = true;
                endpoint.stats_mut().sent += sent;
                if let Some(record) = endpoint.ended(child.key, &end, now) {
                    log.session(&record);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_round_trips() {
        for report in [
            Report::Opened,
            Report::Refused,
            Report::Progress(12345),
            Report::Ended {
                end: End {
                    outcome: Some(Outcome::Complete),
                    bytes: 7,
                    final_block: None,
                    window: WindowStats::default(),
                },
                sent: 9,
            },
            Report::Ended {
                end: End {
                    outcome: Some(Outcome::Complete),
                    bytes: 1 << 30,
                    final_block: Some(16384),
                    window: WindowStats {
                        cwnd_ns: 57 * 2_500_000_000,
                        span: Duration::from_millis(2500),
                        max_cwnd: 64,
                        cut_congestion: 1,
                        cut_timeout: 2,
                        cut_backlog: 3,
                        resumed: 4,
                        rounds: 1000,
                        rounds_held: 500,
                    },
                },
                sent: 16400,
            },
            Report::Ended {
                end: End {
                    outcome: None,
                    bytes: 0,
                    final_block: None,
                    window: WindowStats::default(),
                },
                sent: 1,
            },
            Report::Ended {
                end: End {
                    outcome: Some(Outcome::Failed(Failure::Timeout {
                        tries: 3,
                        elapsed: Duration::from_millis(5000),
                    })),
                    bytes: 1,
                    final_block: None,
                    window: WindowStats::default(),
                },
                sent: 2,
            },
            Report::Ended {
                end: End {
                    outcome: Some(Outcome::Failed(Failure::Peer {
                        code: ErrorCode::Cancelled,
                        text: "bye".into(),
                    })),
                    bytes: 1,
                    final_block: None,
                    window: WindowStats::default(),
                },
                sent: 2,
            },
        ] {
            assert_eq!(Report::decode(&report.encode(42)), Some((42, report)));
        }
        assert_eq!(Report::decode(&[1, 2, 3]), None);
    }
}
