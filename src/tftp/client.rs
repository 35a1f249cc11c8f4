//! A TFTP client session, sans-IO: downloads (RRQ) into a [`Sink`] and uploads (WRQ) from
//! a [`Source`], against any TFTP server.
//!
//! The request asks for an MTU-sized `blksize`, `tsize` and `windowsize`. A server that
//! ignores options answers with DATA 1 (read) or ACK 0 (write), and the transfer falls back
//! to plain RFC 1350; one that refuses them with ERROR 8 is asked again without options. The
//! server's transfer ID is the port of its first reply (RFC 1350 §4): from then on only
//! that address and port are listened to, and a datagram from another port of the server
//! gets ERROR 5 and changes nothing. The request is repeated on a doubling timer; the
//! transfer itself runs on the adaptive timers of [`BlockSender`] and [`BlockReceiver`].

use super::codes::{TftpCode, TftpError};
use super::options::{Ask, Granted};
use super::recv::BlockReceiver;
use super::send::{peer_failure, BlockSender};
use super::wire::{Mode, Options, Packet, Request};
use crate::proto::session::{deadline, Config, Failure, Outcome, Sink, Source, Stats};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The first wait for an answer to the request; it doubles with every repeat. Longer than
/// a data timeout: some servers fork a process per request before they answer.
pub const REQUEST_RETRY: Duration = Duration::from_millis(500);
/// The window a client asks for unless told otherwise.
pub const DEFAULT_WINDOW: u16 = 16;
/// Strays answered with ERROR 5 at most at once (the rest are dropped).
const MAX_STRAYS: usize = 8;

/// The block size whose DATA fills a 1500-byte Ethernet frame to `server`: 1468 over IPv4
/// (1500 − 20 IP − 8 UDP − 4 TFTP), 1448 over IPv6.
pub fn mtu_blksize(server: SocketAddr) -> u16 {
    match server {
        SocketAddr::V4(_) => 1468,
        SocketAddr::V6(_) => 1448,
    }
}

/// How a client runs a transfer.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Timers (RFC 6298 bounds, give-up time, linger after the final ACK).
    pub timing: Config,
    /// The block size to ask for; `None` asks for none (512 bytes).
    pub blksize: Option<u16>,
    /// The window to ask for; `None` asks for none (lockstep).
    pub windowsize: Option<u16>,
    /// Whether to ask for (download) or announce (upload) the transfer size.
    pub tsize: bool,
    /// Octet (the default) or netascii.
    pub mode: Mode,
}

impl ClientConfig {
    /// The default configuration for `server`: MTU-sized blocks, a window of
    /// [`DEFAULT_WINDOW`], tsize, octet mode.
    pub fn for_server(server: SocketAddr) -> Self {
        Self {
            timing: Config::default(),
            blksize: Some(mtu_blksize(server)),
            windowsize: Some(DEFAULT_WINDOW),
            tsize: true,
            mode: Mode::Octet,
        }
    }
}

/// What the session is doing.
enum Stage {
    /// Waiting for the first answer to the request.
    Requesting {
        due: bool,
        first_sent: Option<Instant>,
        retry_at: Option<Instant>,
        tries: u32,
    },
    /// Downloading.
    Receiving(BlockReceiver),
    /// Uploading.
    Sending(BlockSender),
    /// Ended before the transfer started.
    Ended,
}

/// What a session moves: a sink to fill or a source to send.
enum Payload {
    Download(Option<Box<dyn Sink>>),
    Upload(Option<Box<dyn Source>>),
}

/// One client transfer against a TFTP server.
pub struct ClientSession {
    config: ClientConfig,
    server: SocketAddr,
    /// The server's transfer ID, once its first reply came.
    peer: Option<SocketAddr>,
    filename: Vec<u8>,
    ask: Ask,
    payload: Payload,
    stage: Stage,
    started: Instant,
    outcome: Option<Outcome>,
    /// An ERROR to send once (a refused OACK).
    error_to: Option<(SocketAddr, TftpError)>,
    /// Ports that sent us datagrams of another transfer: each gets ERROR 5.
    strays: VecDeque<SocketAddr>,
    tsize: Option<u64>,
    fell_back: bool,
    stats: Stats,
}

impl ClientSession {
    /// A download of `name` from `server` into `sink`.
    pub fn download(
        now: Instant,
        config: ClientConfig,
        server: SocketAddr,
        name: &str,
        sink: Box<dyn Sink>,
    ) -> Self {
        let ask = Ask {
            blksize: config.blksize,
            windowsize: config.windowsize,
            tsize: config.tsize.then_some(0),
        };
        Self::new(
            now,
            config,
            server,
            name,
            ask,
            Payload::Download(Some(sink)),
        )
    }

    /// An upload of `size` bytes from `source` to `server` as `name`. The size is announced
    /// (`tsize`) in octet mode only: in netascii it differs on the wire.
    pub fn upload(
        now: Instant,
        config: ClientConfig,
        server: SocketAddr,
        name: &str,
        source: Box<dyn Source>,
        size: u64,
    ) -> Self {
        let ask = Ask {
            blksize: config.blksize,
            windowsize: config.windowsize,
            tsize: (config.tsize && config.mode == Mode::Octet).then_some(size),
        };
        Self::new(
            now,
            config,
            server,
            name,
            ask,
            Payload::Upload(Some(source)),
        )
    }

    fn new(
        now: Instant,
        config: ClientConfig,
        server: SocketAddr,
        name: &str,
        ask: Ask,
        payload: Payload,
    ) -> Self {
        Self {
            config,
            server,
            peer: None,
            filename: name.as_bytes().to_vec(),
            ask,
            payload,
            stage: Stage::Requesting {
                due: true,
                first_sent: None,
                retry_at: None,
                tries: 0,
            },
            started: now,
            outcome: None,
            error_to: None,
            strays: VecDeque::new(),
            tsize: None,
            fell_back: false,
            stats: Stats::default(),
        }
    }

    /// The transfer size the server announced (downloads with `tsize` granted).
    pub fn size(&self) -> Option<u64> {
        self.tsize
    }

    /// Whether the server ignored or refused the options (plain RFC 1350).
    pub fn fell_back(&self) -> bool {
        self.fell_back
    }

    /// The server's transfer ID (address and port of its replies), once known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// File bytes moved so far (written, or sent and acknowledged), for progress bars.
    pub fn progress(&self) -> u64 {
        match &self.stage {
            Stage::Receiving(r) => r.written(),
            Stage::Sending(s) => s.stats().bytes,
            _ => 0,
        }
    }

    /// Handles one datagram that arrived `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if from.ip() != self.server.ip() {
            self.stats.received += 1;
            self.stats.duplicates += 1;
            return;
        }
        let Ok(packet) = Packet::decode(datagram) else {
            self.stats.received += 1;
            self.stats.corrupted += 1;
            return;
        };
        if self.peer.is_some_and(|peer| peer != from) {
            // Another transfer's datagram: RFC 1350 says ERROR 5; never answer an ERROR.
            if !matches!(packet, Packet::Error { .. }) && self.strays.len() < MAX_STRAYS {
                self.strays.push_back(from);
            }
            return;
        }
        match &mut self.stage {
            Stage::Requesting {
                first_sent, tries, ..
            } => {
                let rtt =
                    (*tries == 1).then(|| first_sent.map(|t| now.saturating_duration_since(t)));
                self.first_reply(now, from, packet, rtt.flatten());
            }
            Stage::Receiving(receiver) => match packet {
                Packet::Data { block, data } => {
                    receiver.handle_data(now, block, data);
                }
                Packet::Error { code, text } => receiver.handle_error(code, text),
                // The OACK again: our ACK 0 was lost.
                Packet::Oack(_) => receiver.repeat_first_ack(),
                _ => receiver.note_ignored(),
            },
            Stage::Sending(sender) => match packet {
                Packet::Ack { block } => {
                    sender.handle_ack(now, block);
                }
                Packet::Error { code, text } => sender.handle_error(code, text),
                _ => sender.note_ignored(),
            },
            Stage::Ended => {}
        }
    }

    /// The server's first answer: it fixes the transfer ID and the parameters.
    fn first_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: Packet<'_>,
        rtt: Option<Duration>,
    ) {
        self.stats.received += 1;
        let download = matches!(self.payload, Payload::Download(_));
        let granted = match packet {
            Packet::Oack(options) => match self.ask.accept(options) {
                Ok(granted) => granted,
                Err(error) => {
                    self.peer = Some(from);
                    self.end(Failure::Local {
                        code: error.code.to_udpft(),
                        text: error.text.clone(),
                    });
                    self.error_to = Some((from, error));
                    return;
                }
            },
            Packet::Data { block: 1, .. } if download => {
                self.fell_back = !self.ask.is_empty();
                Granted::default()
            }
            Packet::Ack { block: 0 } if !download => {
                self.fell_back = !self.ask.is_empty();
                Granted::default()
            }
            Packet::Error { code, .. }
                if TftpCode::from_u16(code) == TftpCode::OptionRefused && !self.ask.is_empty() =>
            {
                // Ask again, plainly.
                self.ask = Ask::default();
                self.fell_back = true;
                self.stage = Stage::Requesting {
                    due: true,
                    first_sent: None,
                    retry_at: None,
                    tries: 0,
                };
                return;
            }
            Packet::Error { code, text } => {
                self.end(peer_failure(code, text));
                return;
            }
            _ => {
                self.stats.duplicates += 1;
                return;
            }
        };
        self.peer = Some(from);
        self.tsize = granted.tsize;
        let netascii = self.config.mode == Mode::Netascii;
        let timing = &self.config.timing;
        let oack = matches!(packet, Packet::Oack(_));
        self.stage = match &mut self.payload {
            Payload::Download(sink) => {
                let Some(sink) = sink.take() else { return };
                let mut receiver =
                    BlockReceiver::new(now, timing, &granted, netascii, sink, None, oack);
                if let Some(rtt) = rtt {
                    receiver.sample_rtt(rtt);
                }
                if let Packet::Data { block, data } = packet {
                    receiver.handle_data(now, block, data);
                }
                Stage::Receiving(receiver)
            }
            Payload::Upload(source) => {
                let Some(source) = source.take() else { return };
                let mut sender = BlockSender::new(now, timing, &granted, netascii, source);
                if let Some(rtt) = rtt {
                    sender.sample_rtt(rtt);
                }
                Stage::Sending(sender)
            }
        };
    }

    fn end(&mut self, failure: Failure) {
        self.stage = Stage::Ended;
        self.outcome = Some(Outcome::Failed(failure));
    }

    /// Fires due timers; spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.stage {
            Stage::Requesting {
                due,
                retry_at,
                tries,
                ..
            } => {
                if retry_at.is_none_or(|at| now < at) {
                    return;
                }
                let elapsed = now.saturating_duration_since(self.started);
                if elapsed >= self.config.timing.timeout {
                    let tries = *tries;
                    self.end(Failure::Timeout { tries, elapsed });
                    return;
                }
                *due = true;
                *retry_at = None;
            }
            Stage::Receiving(receiver) => receiver.handle_timeout(now),
            Stage::Sending(sender) => sender.handle_timeout(now),
            Stage::Ended => {}
        }
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`super::wire::MAX_PACKET`] bytes) and returns its destination and length; `None`
    /// when nothing is due. Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        if let Some(stray) = self.strays.pop_front() {
            let error = TftpError::new(TftpCode::UnknownTid, "unknown transfer ID");
            return Some((stray, error.encode(buf)));
        }
        if let Some((to, error)) = self.error_to.take() {
            self.stats.sent += 1;
            return Some((to, error.encode(buf)));
        }
        let peer = self.peer.unwrap_or(self.server);
        match &mut self.stage {
            Stage::Requesting {
                due,
                first_sent,
                retry_at,
                tries,
            } => {
                if !std::mem::take(due) {
                    return None;
                }
                let options = self.ask.encode();
                let request = Request {
                    filename: &self.filename,
                    mode: self.config.mode,
                    options: Options::new(&options).unwrap_or_default(),
                };
                let packet = match self.payload {
                    Payload::Download(_) => Packet::Rrq(request),
                    Payload::Upload(_) => Packet::Wrq(request),
                };
                first_sent.get_or_insert(now);
                *retry_at = Some(deadline(
                    now,
                    REQUEST_RETRY * 2u32.saturating_pow(*tries).min(8),
                ));
                if *tries > 0 {
                    self.stats.retransmitted += 1;
                }
                *tries += 1;
                self.stats.sent += 1;
                Some((self.server, packet.encode(buf)))
            }
            Stage::Receiving(receiver) => receiver.poll_transmit(now, buf).map(|n| (peer, n)),
            Stage::Sending(sender) => sender.poll_transmit(now, buf).map(|n| (peer, n)),
            Stage::Ended => None,
        }
    }

    /// The next deadline, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Requesting { retry_at, .. } => *retry_at,
            Stage::Receiving(receiver) => receiver.poll_timeout(),
            Stage::Sending(sender) => sender.poll_timeout(),
            Stage::Ended => None,
        }
    }

    /// Whether a datagram is waiting.
    pub fn wants_transmit(&self) -> bool {
        !self.strays.is_empty()
            || self.error_to.is_some()
            || match &self.stage {
                Stage::Requesting { due, .. } => *due,
                Stage::Receiving(receiver) => receiver.wants_transmit(),
                Stage::Sending(sender) => sender.wants_transmit(),
                Stage::Ended => false,
            }
    }

    /// How the transfer ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.stage {
            Stage::Receiving(receiver) => receiver.outcome(),
            Stage::Sending(sender) => sender.outcome(),
            _ => self.outcome.as_ref(),
        }
    }

    /// Whether nothing remains to send or wait for.
    pub fn is_finished(&self) -> bool {
        !self.wants_transmit()
            && match &self.stage {
                Stage::Receiving(receiver) => receiver.is_finished(),
                Stage::Sending(sender) => sender.is_finished(),
                Stage::Requesting { .. } => false,
                Stage::Ended => true,
            }
    }

    /// Ends the transfer (the user cancelled), telling the server if it is known.
    pub fn abort(&mut self, code: TftpCode, text: &str) {
        match &mut self.stage {
            Stage::Receiving(receiver) => receiver.abort(code, text),
            Stage::Sending(sender) => sender.abort(code, text),
            Stage::Requesting { .. } => self.end(Failure::Local {
                code: code.to_udpft(),
                text: text.to_owned(),
            }),
            Stage::Ended => {}
        }
    }

    /// Counters so far (the request's and the transfer's).
    pub fn stats(&self) -> Stats {
        let transfer = match &self.stage {
            Stage::Receiving(receiver) => receiver.stats(),
            Stage::Sending(sender) => sender.stats(),
            _ => Stats::default(),
        };
        Stats {
            sent: self.stats.sent + transfer.sent,
            retransmitted: self.stats.retransmitted + transfer.retransmitted,
            received: self.stats.received + transfer.received,
            duplicates: self.stats.duplicates + transfer.duplicates,
            corrupted: self.stats.corrupted + transfer.corrupted,
            bytes: transfer.bytes,
            srtt: transfer.srtt,
            ..transfer
        }
    }
}
