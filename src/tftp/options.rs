//! Option negotiation (RFC 2347) of the options udpft knows: `blksize` (RFC 2348),
//! `timeout` and `tsize` (RFC 2349) and `windowsize` (RFC 7440).
//!
//! A server calls [`negotiate`] with a request's options: what it grants goes in the OACK,
//! in the order asked; options it does not know, and values out of range, are ignored (as
//! if not asked), so a request with no option it grants gets no OACK and runs as plain
//! RFC 1350. A client builds its request with [`Ask::encode`] and checks the server's OACK
//! with [`Ask::accept`]: an OACK that grants more than was asked is refused (ERROR 8).

use super::codes::{TftpCode, TftpError};
use super::wire::{push_option, Options, DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE};

/// The largest window a server grants unless configured otherwise.
pub const DEFAULT_MAX_WINDOW: u16 = crate::proto::session::DEFAULT_MAX_WINDOW;
/// The timeout option's range, in seconds (RFC 2349).
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=255;

/// What a server is willing to grant.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The largest block size granted (at most [`MAX_BLKSIZE`]).
    pub max_blksize: u16,
    /// The largest window granted (RFC 7440 allows 1..=65535).
    pub max_window: u16,
    /// The largest upload accepted, checked against a WRQ's `tsize` before any data.
    pub max_upload: Option<u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_blksize: MAX_BLKSIZE,
            max_window: DEFAULT_MAX_WINDOW,
            max_upload: None,
        }
    }
}

/// Which way a request moves the file, as negotiation needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A download (RRQ) of a file of `size` bytes; `netascii` if its mode is netascii, whose
    /// size on the wire is not known without reading the whole file.
    Read {
        /// The file's size on disk.
        size: u64,
        /// Whether the transfer is in netascii mode.
        netascii: bool,
    },
    /// An upload (WRQ).
    Write,
}

/// The parameters of a transfer after negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The block size.
    pub blksize: u16,
    /// Blocks sent before an ACK is awaited.
    pub windowsize: u16,
    /// The retransmission interval the client asked for, in seconds, if granted.
    pub timeout: Option<u8>,
    /// The transfer size: the file's size (RRQ) or the client's announcement (WRQ).
    pub tsize: Option<u64>,
    /// The OACK's option bytes (empty: no OACK is sent).
    oack: Vec<u8>,
}

impl Default for Granted {
    /// Plain RFC 1350: 512-byte blocks, one at a time, no OACK.
    fn default() -> Self {
        Self {
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            timeout: None,
            tsize: None,
            oack: Vec::new(),
        }
    }
}

impl Granted {
    /// How long a silent peer is waited for: `base`, or twice the granted timeout if that
    /// is longer (a client that asked for 6 s may stay silent that long between tries).
    pub fn give_up(&self, base: std::time::Duration) -> std::time::Duration {
        let asked = std::time::Duration::from_secs(2 * u64::from(self.timeout.unwrap_or(0)));
        base.max(asked)
    }

    /// The options of the OACK to send, or `None` when nothing was granted (then the
    /// transfer starts as RFC 1350 says: DATA 1 for a read, ACK 0 for a write).
    pub fn oack(&self) -> Option<Options<'_>> {
        if self.oack.is_empty() {
            return None;
        }
        Options::new(&self.oack).ok()
    }
}

/// Reads a decimal option value: digits only, no sign, at most 20 of them.
fn number(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The option names udpft knows, matched case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Blksize,
    Timeout,
    Tsize,
    Windowsize,
}

impl Known {
    const ALL: [Self; 4] = [Self::Blksize, Self::Timeout, Self::Tsize, Self::Windowsize];

    fn name(self) -> &'static str {
        match self {
            Self::Blksize => "blksize",
            Self::Timeout => "timeout",
            Self::Tsize => "tsize",
            Self::Windowsize => "windowsize",
        }
    }

    fn parse(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.name().as_bytes()))
    }
}

/// The server's side: what to grant for a request's `options`.
///
/// # Errors
/// Disk full (3) when a WRQ announces (`tsize`) more than `policy.max_upload`.
pub fn negotiate(
    options: Options<'_>,
    direction: Direction,
    policy: &Policy,
) -> Result<Granted, TftpError> {
    let mut granted = Granted::default();
    let mut seen = Vec::new();
    for (name, value) in options.iter() {
        let Some(known) = Known::parse(name) else {
            continue;
        };
        if seen.contains(&known) {
            continue; // The first of repeated options counts.
        }
        seen.push(known);
        let Some(asked) = number(value) else { continue };
        let answer = match known {
            Known::Blksize if asked >= u64::from(MIN_BLKSIZE) => {
                let size = asked.min(u64::from(
                    policy.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE),
                ));
                granted.blksize = size as u16;
                size
            }
            Known::Windowsize if asked >= 1 && policy.max_window >= 1 => {
                let window = asked
                    .min(u64::from(policy.max_window))
                    .min(window_by_memory(options, policy));
                granted.windowsize = window as u16;
                window
            }
            Known::Timeout if TIMEOUT_RANGE.contains(&asked) => {
                granted.timeout = Some(asked as u8);
                asked
            }
            Known::Tsize => {
                match direction {
                    // The wire size of netascii is unknown until the whole file is read, which
                    // an unproven peer must not cause: tsize is not offered then.
                    Direction::Read { netascii: true, .. } => continue,
                    // curl refuses an OACK with tsize 0: an empty file's size goes unsaid (its
                    // single empty block says it anyway).
                    Direction::Read { size: 0, .. } => continue,
                    Direction::Read { size, .. } => {
                        granted.tsize = Some(size);
                        size
                    }
                    Direction::Write => {
                        if let Some(max) = policy.max_upload.filter(|&max| asked > max) {
                            return Err(TftpError::new(
                            TftpCode::DiskFull,
                            format!("upload of {asked} bytes refused: this server takes at most {max}"),
                        ));
                        }
                        granted.tsize = Some(asked);
                        asked
                    }
                }
            }
            _ => continue,
        };
        push_option(&mut granted.oack, known.name(), answer);
    }
    Ok(granted)
}

/// The most blocks in flight that keep one session's window within
/// [`MAX_WINDOW_BYTES`](crate::proto::session::MAX_WINDOW_BYTES) at the block size this
/// request will be granted (the same cap as the udpft protocol's window), at least 1.
fn window_by_memory(options: Options<'_>, policy: &Policy) -> u64 {
    let asked = options
        .iter()
        .find(|(name, _)| Known::parse(name) == Some(Known::Blksize))
        .and_then(|(_, value)| number(value))
        .filter(|&size| size >= u64::from(MIN_BLKSIZE));
    let blksize = asked.map_or(u64::from(DEFAULT_BLKSIZE), |size| {
        size.min(u64::from(
            policy.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE),
        ))
    });
    (crate::proto::session::MAX_WINDOW_BYTES / (blksize + 4)).max(1)
}

/// The client's side: the options it asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    /// The block size to ask for.
    pub blksize: Option<u16>,
    /// The window to ask for.
    pub windowsize: Option<u16>,
    /// `tsize`: 0 for a read (asking the size), the file's size for a write.
    pub tsize: Option<u64>,
}

impl Ask {
    /// The request's option bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(size) = self.blksize {
            push_option(&mut out, Known::Blksize.name(), u64::from(size));
        }
        if let Some(size) = self.tsize {
            push_option(&mut out, Known::Tsize.name(), size);
        }
        if let Some(window) = self.windowsize {
            push_option(&mut out, Known::Windowsize.name(), u64::from(window));
        }
        out
    }

    /// Whether any option is asked for.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the server's OACK against what was asked and returns the parameters.
    ///
    /// # Errors
    /// Option refused (8), to send to the server, when the OACK names an option not asked
    /// for, or grants a block size or window larger than asked, or an unreadable value.
    pub fn accept(&self, oack: Options<'_>) -> Result<Granted, TftpError> {
        let refuse = |why: String| Err(TftpError::new(TftpCode::OptionRefused, why));
        let mut granted = Granted::default();
        for (name, value) in oack.iter() {
            let shown = String::from_utf8_lossy(name);
            let Some(n) = number(value) else {
                return refuse(format!("unreadable value of option {shown}"));
            };
            match Known::parse(name) {
                Some(Known::Blksize)
                    if self.blksize.is_some_and(|asked| {
                        (u64::from(MIN_BLKSIZE)..=u64::from(asked)).contains(&n)
                    }) =>
                {
                    granted.blksize = n as u16;
                }
                Some(Known::Windowsize)
                    if self
                        .windowsize
                        .is_some_and(|asked| (1..=u64::from(asked)).contains(&n)) =>
                {
                    granted.windowsize = n as u16;
                }
                Some(Known::Tsize) if self.tsize.is_some() => granted.tsize = Some(n),
                _ => return refuse(format!("option {shown} {n} was not asked for")),
            }
        }
        Ok(granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (n, v) in pairs {
            raw.extend_from_slice(n.as_bytes());
            raw.push(0);
            raw.extend_from_slice(v.as_bytes());
            raw.push(0);
        }
        raw
    }

    fn grant(pairs: &[(&str, &str)], direction: Direction) -> Result<Granted, TftpError> {
        let raw = opts(pairs);
        negotiate(Options::new(&raw).unwrap(), direction, &Policy::default())
    }

    const READ: Direction = Direction::Read {
        size: 1234,
        netascii: false,
    };

    #[test]
    fn known_options_are_granted_in_order() {
        let g = grant(
            &[
                ("TSIZE", "0"),
                ("blksize", "1468"),
                ("windowsize", "8"),
                ("timeout", "6"),
            ],
            READ,
        )
        .unwrap();
        assert_eq!(
            (g.blksize, g.windowsize, g.timeout, g.tsize),
            (1468, 8, Some(6), Some(1234))
        );
        assert_eq!(
            g.oack().unwrap().as_bytes(),
            &opts(&[
                ("tsize", "1234"),
                ("blksize", "1468"),
                ("windowsize", "8"),
                ("timeout", "6")
            ])[..]
        );
    }

    #[test]
    fn ranges_are_enforced() {
        let g = grant(
            &[("blksize", "7"), ("timeout", "0"), ("windowsize", "0")],
            READ,
        )
        .unwrap();
        assert_eq!(g, Granted::default());
        assert!(g.oack().is_none());
        let g = grant(
            &[
                ("blksize", "99999"),
                ("windowsize", "65535"),
                ("timeout", "256"),
            ],
            READ,
        )
        .unwrap();
        assert_eq!(
            (g.blksize, g.windowsize, g.timeout),
            (MAX_BLKSIZE, DEFAULT_MAX_WINDOW, None)
        );
        let g = grant(&[("blksize", "8"), ("timeout", "255")], READ).unwrap();
        assert_eq!((g.blksize, g.timeout), (8, Some(255)));
    }

    #[test]
    fn unknown_and_unreadable_options_are_ignored() {
        for pairs in [
            &[("multicast", ""), ("utimeout", "1000")][..],
            &[("blksize", "-5"), ("blksize", "1 2"), ("tsize", "x")],
            &[("blksize", "123456789012345678901234")],
        ] {
            let g = grant(pairs, READ).unwrap();
            assert!(g.oack().is_none(), "{pairs:?}");
        }
        // The first of a repeated option counts.
        let g = grant(&[("blksize", "1000"), ("blksize", "2000")], READ).unwrap();
        assert_eq!(g.blksize, 1000);
    }

    #[test]
    fn an_empty_file_gets_no_tsize() {
        let g = grant(
            &[("tsize", "0")],
            Direction::Read {
                size: 0,
                netascii: false,
            },
        )
        .unwrap();
        assert!(g.oack().is_none());
    }

    #[test]
    fn netascii_reads_get_no_tsize() {
        let g = grant(
            &[("tsize", "0")],
            Direction::Read {
                size: 9,
                netascii: true,
            },
        )
        .unwrap();
        assert!(g.oack().is_none());
    }

    #[test]
    fn an_upload_over_the_limit_is_refused_before_any_data() {
        let raw = opts(&[("tsize", "1001")]);
        let policy = Policy {
            max_upload: Some(1000),
            ..Policy::default()
        };
        let err = negotiate(Options::new(&raw).unwrap(), Direction::Write, &policy).unwrap_err();
        assert_eq!(err.code, TftpCode::DiskFull);
        let raw = opts(&[("tsize", "1000")]);
        let g = negotiate(Options::new(&raw).unwrap(), Direction::Write, &policy).unwrap();
        assert_eq!(g.tsize, Some(1000));
    }

    #[test]
    fn a_client_refuses_an_oack_granting_more_than_asked() {
        let ask = Ask {
            blksize: Some(1468),
            windowsize: Some(4),
            tsize: Some(0),
        };
        for pairs in [
            &[("blksize", "1469")][..],
            &[("windowsize", "5")],
            &[("timeout", "3")],
            &[("blksize", "abc")],
        ] {
            let raw = opts(pairs);
            let err = ask.accept(Options::new(&raw).unwrap()).unwrap_err();
            assert_eq!(err.code, TftpCode::OptionRefused, "{pairs:?}");
        }
        let raw = opts(&[("blksize", "512"), ("tsize", "77")]);
        let g = ask.accept(Options::new(&raw).unwrap()).unwrap();
        assert_eq!((g.blksize, g.windowsize, g.tsize), (512, 1, Some(77)));
    }
}
