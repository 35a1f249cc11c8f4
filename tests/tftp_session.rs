//! Transcripts of TFTP (smoltcp's `recv!`/`send!` style): one datagram in at an explicit
//! virtual time, the exact datagrams out, and when. The server half drives what
//! `udpft serve --tftp` runs, the table model's sans-IO core (`SessionTable` with TFTP on,
//! over an in-memory store), from one peer address; the client half drives
//! `udpft::tftp::client` alone. Nothing sleeps.
//!
//! Before a peer proves its address the rules are the front door's (`udpft::proto::endpoint`,
//! `udpft::tftp::admit`): one reply per request datagram and nothing on any timer, the OACK
//! only until ACK 0, block 1 once for an RRQ without options, grants that expire silently
//! after three give-up times or are withdrawn by ERROR 8, a repeated request of a live
//! session ignored, stray datagrams, the byte budget of unproven peers. After it, the
//! session's (`udpft::tftp::server`): adaptive retransmission and its backoff, no Sorcerer's
//! Apprentice, the fixed window, rollover, netascii, the end of a session, uploads, their
//! limits and the tombstone that repeats their final ACK. Names are judged by a real library.
//! The client's transcripts pin its option negotiation, fallback and transfer IDs.
//!
//! The table's deadlines include the front door's sweep (every second while it holds grants
//! or tombstones) and progress reports (every 500 ms while sessions run), so the transcripts
//! fire every deadline in turn and assert what is sent when, not the raw next deadline.

mod common;

mod tftp_support;

mod live;

use common::{seeded_mac, Files, MemStore};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tftp_support::packets::{ack, data, error, oack, rrq, show, wrq};
use udpft::library::{Library, LibraryOptions};
use udpft::proto::admission::Policy;
use udpft::proto::endpoint::{Record, SHUTTING_DOWN};
use udpft::proto::session::{MemSink, MemSource};
use udpft::proto::store::Store;
use udpft::proto::table::SessionTable;
use udpft::proto::{Failure, Outcome};
use udpft::tftp::admit::TftpPolicy;
use udpft::tftp::client::{ClientConfig, ClientSession};
use udpft::tftp::options::Policy as Options;
use udpft::tftp::wire::{Mode, Packet, MAX_PACKET};
use udpft::tftp::TftpCode;

/// The one peer of the server transcripts.
const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)), 5000);

/// The server under test, its virtual clock and its library.
struct ServerScript {
    epoch: Instant,
    /// The latest time fed in: time only runs forward.
    now: Instant,
    table: SessionTable,
    files: Files,
    buf: Vec<u8>,
}

impl ServerScript {
    /// A server with TFTP on as `tftp` says, holding `files`.
    fn new(tftp: TftpPolicy, files: &[(&str, &[u8])]) -> Self {
        let files: Files = Arc::new(Mutex::new(
            files
                .iter()
                .map(|(name, bytes)| (name.as_bytes().to_vec(), bytes.to_vec()))
                .collect(),
        ));
        let store = Box::new(MemStore::new(Arc::clone(&files)));
        Self::over(tftp, store, files)
    }

    /// A server with TFTP on as `tftp` says, over `store`.
    fn over(tftp: TftpPolicy, store: Box<dyn Store>, files: Files) -> Self {
        let policy = Policy {
            tftp: Some(tftp),
            ..Policy::default()
        };
        let epoch = Instant::now();
        Self {
            epoch,
            now: epoch,
            table: SessionTable::new(policy, store, seeded_mac(7)),
            files,
            buf: vec![0; MAX_PACKET],
        }
    }

    fn at(&mut self, ms: f64) -> Instant {
        let at = self.epoch + Duration::from_secs_f64(ms / 1000.0);
        assert!(at >= self.now, "time runs forward ({ms} ms)");
        self.now = at;
        at
    }

    /// `at` in ms after the epoch, to the microsecond.
    fn ms(&self, at: Instant) -> f64 {
        (at.duration_since(self.epoch).as_nanos() as f64 / 1000.0).round() / 1000.0
    }

    /// Feeds `datagram` from the peer at `ms`; returns what the server sends.
    fn recv(&mut self, ms: f64, datagram: &[u8]) -> Vec<String> {
        let now = self.at(ms);
        self.table.handle_datagram(now, PEER, datagram);
        self.drain(now)
    }

    /// Feeds `datagram` from `from` at `ms`; returns what the server sends, and to whom.
    fn recv_from(
        &mut self,
        ms: f64,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let now = self.at(ms);
        self.table.handle_datagram(now, from, datagram);
        self.drain_raw(now)
    }

    /// Everything the server sends at `now`, all of it to the peer.
    fn drain(&mut self, now: Instant) -> Vec<String> {
        let out = self.drain_raw(now);
        assert!(
            out.iter().all(|(to, _)| *to == PEER),
            "only the peer is sent to"
        );
        out.iter().map(|(_, bytes)| show(bytes)).collect()
    }

    fn drain_raw(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((to, datagram)) = self.table.poll_transmit(now, &mut self.buf) {
            out.push((to, datagram.to_vec()));
            assert!(out.len() < 100_000, "runaway server");
        }
        out
    }

    /// Fires the next deadline due by `ms` (the sessions', the sweep, the progress
    /// report); returns when it fired and what was sent then, or `None` if none is due.
    fn step(&mut self, ms: f64) -> Option<(f64, Vec<String>)> {
        let end = self.epoch + Duration::from_secs_f64(ms / 1000.0);
        let at = self.table.poll_timeout().filter(|&at| at <= end)?;
        let now = at.max(self.now);
        self.now = now;
        self.table.handle_timeout(now);
        Some((self.ms(now), self.drain(now)))
    }

    /// Fires every deadline until `ms`; returns what was sent and when (ms).
    fn run_until(&mut self, ms: f64) -> Vec<(f64, String)> {
        let mut sent = Vec::new();
        for _ in 0..1_000_000 {
            let Some((at, out)) = self.step(ms) else {
                self.at(ms);
                return sent;
            };
            sent.extend(out.into_iter().map(|packet| (at, packet)));
        }
        panic!("runaway timers");
    }

    /// Fires deadlines until one sends something (by `ms` at the latest); returns when and
    /// what.
    fn next_send(&mut self, ms: f64) -> (f64, Vec<String>) {
        for _ in 0..1_000_000 {
            match self.step(ms) {
                Some((at, out)) if !out.is_empty() => return (at, out),
                Some(_) => {}
                None => panic!("nothing sent by {ms} ms"),
            }
        }
        panic!("runaway timers");
    }

    /// Stops the server now, abandoning every session; returns what is sent.
    fn stop(&mut self, ms: f64) -> Vec<String> {
        let now = self.at(ms);
        self.table.stop_now(now);
        self.drain(now)
    }

    /// The record of the one session that ended since the last call.
    fn ended(&mut self) -> Record {
        let record = self.table.poll_record().expect("a session ended");
        assert!(self.table.poll_record().is_none(), "one session ended");
        record
    }

    /// The file `name` as the library holds it (an upload only once committed).
    fn stored(&self, name: &str) -> Option<Vec<u8>> {
        self.files.lock().unwrap().get(name.as_bytes()).cloned()
    }

    /// Sessions the front door opened.
    fn opened(&self) -> u64 {
        self.table.stats().opened
    }
}

/// What [`ServerScript::run_until`] returns, from readable pairs.
fn timed(pairs: &[(f64, &str)]) -> Vec<(f64, String)> {
    pairs.iter().map(|(t, s)| (*t, s.to_string())).collect()
}

/// TFTP on, uploads allowed.
fn tftp() -> TftpPolicy {
    TftpPolicy {
        write: true,
        ..TftpPolicy::default()
    }
}

/// A server holding `file` under the name `request` asks for, after the request at time 0;
/// returns the script and what the server sent first.
fn read(request: &[u8], file: &[u8]) -> (ServerScript, Vec<String>) {
    read_with(tftp(), request, file)
}

fn read_with(tftp: TftpPolicy, request: &[u8], file: &[u8]) -> (ServerScript, Vec<String>) {
    let Ok(Packet::Rrq(asked)) = Packet::decode(request) else {
        panic!("not an RRQ: {}", show(request));
    };
    let name = String::from_utf8_lossy(asked.filename).into_owned();
    let mut s = ServerScript::new(tftp, &[(&name, file)]);
    let first = s.recv(0.0, request);
    (s, first)
}

/// A server with an empty library, after the write `request` at time 0.
fn write_with(tftp: TftpPolicy, request: &[u8]) -> (ServerScript, Vec<String>) {
    let mut s = ServerScript::new(tftp, &[]);
    let first = s.recv(0.0, request);
    (s, first)
}

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

fn is_timeout(record: &Record) -> bool {
    matches!(record.failure, Some(Failure::Timeout { .. }))
}

// ---- before the proof: the front door -----------------------------------------------

#[test]
fn an_rrq_with_options_gets_only_the_oack_until_ack_0() {
    let (mut s, first) = read(
        &rrq("f", "octet", &[("blksize", "8"), ("tsize", "0")]),
        &bytes(20),
    );
    assert_eq!(first, ["OACK blksize 8 tsize 20"]);
    // No timer ever sends anything to a peer that has not answered, and nothing opens.
    assert!(s.run_until(14_000.0).is_empty());
    assert_eq!((s.table.len(), s.opened()), (0, 0));
    assert_eq!(s.table.endpoint().unproven(), 1, "a grant, not a session");
}

#[test]
fn data_flows_only_after_ack_0_of_the_oack() {
    let (mut s, _) = read(&rrq("f", "octet", &[("blksize", "8")]), &bytes(20));
    // An ACK of a block never sent proves nothing and sends nothing.
    assert!(s.recv(1.0, &ack(1)).is_empty());
    assert_eq!(s.table.len(), 0);
    assert_eq!(s.recv(2.0, &ack(0)), ["DATA 1 (8 B)"]);
    assert_eq!((s.table.len(), s.opened()), (1, 1));
}

#[test]
fn a_grant_expires_silently_after_three_give_up_times() {
    for request in [
        rrq("f", "octet", &[("blksize", "8")]),
        rrq("f", "octet", &[]),
    ] {
        let (mut s, first) = read(&request, &bytes(20));
        assert_eq!(first.len(), 1);
        // Three times the 5 s give-up time, then the grant is swept without a word...
        assert!(s.run_until(15_000.0).is_empty());
        assert_eq!(s.table.endpoint().unproven(), 0);
        assert_eq!(s.table.poll_timeout(), None, "nothing left to wake for");
        // ...and the proof that comes too late opens nothing.
        for proof in [ack(0), ack(1)] {
            assert!(s.recv(15_000.0, &proof).is_empty());
        }
        assert_eq!((s.table.len(), s.opened()), (0, 0));
    }
}

#[test]
fn an_rrq_without_options_gets_block_1_once_and_no_retransmission() {
    let (mut s, first) = read(&rrq("f", "octet", &[]), &bytes(2000));
    assert_eq!(first, ["DATA 1 (512 B)"]);
    assert!(s.run_until(20_000.0).is_empty(), "nothing on any timer");
    assert_eq!(s.table.endpoint().unproven(), 0, "the grant ended silently");
}

#[test]
fn a_first_ack_repeated_after_the_clients_own_timeout_is_still_heard() {
    // Block 1 went out, its ACK was lost; tftp-hpa repeats the ACK 5 s later.
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(2000));
    assert!(s.run_until(5000.0).is_empty());
    assert_eq!(s.recv(5001.0, &ack(1)), ["DATA 2 (512 B)"]);
}

#[test]
fn a_repeated_request_is_answered_once_per_datagram_and_starts_the_wait_again() {
    let request = rrq("f", "octet", &[]);
    let (mut s, _) = read(&request, &bytes(2000));
    assert_eq!(s.recv(1000.0, &request), ["DATA 1 (512 B)"]);
    assert_eq!(s.recv(10_000.0, &request), ["DATA 1 (512 B)"]);
    // Nothing more on the timers; the grant now lasts until 25 s.
    assert!(s.run_until(24_000.0).is_empty());
    assert_eq!(s.recv(24_000.0, &ack(1)), ["DATA 2 (512 B)"]);
    let with_options = rrq("f", "octet", &[("blksize", "8")]);
    let (mut s, _) = read(&with_options, &bytes(20));
    assert_eq!(s.recv(900.0, &with_options), ["OACK blksize 8"]);
    assert!(s.run_until(5000.0).is_empty());
}

#[test]
fn a_wrq_is_answered_once_and_not_on_timers() {
    let (mut s, first) = write_with(tftp(), &wrq("up", "octet", &[]));
    assert_eq!(first, ["ACK 0"]);
    assert!(s.run_until(15_000.0).is_empty());
    let (mut s, first) = write_with(tftp(), &wrq("up", "octet", &[("blksize", "1000")]));
    assert_eq!(first, ["OACK blksize 1000"]);
    assert!(s.run_until(15_000.0).is_empty());
    assert_eq!(s.table.endpoint().unproven(), 0);
}

#[test]
fn error_8_in_answer_to_the_oack_withdraws_the_grant() {
    let (mut s, first) = read(&rrq("f", "octet", &[("blksize", "9000")]), &bytes(20));
    assert_eq!(first.len(), 1);
    assert!(first[0].starts_with("OACK blksize"), "{first:?}");
    assert!(s.recv(1.0, &error(8, "blksize too large")).is_empty());
    assert_eq!(s.table.endpoint().unproven(), 0);
    // The ACK 0 it would have sent opens nothing now.
    assert!(s.recv(2.0, &ack(0)).is_empty());
    assert!(s.run_until(6000.0).is_empty());
    assert_eq!((s.table.len(), s.opened()), (0, 0));
    assert!(s.table.poll_record().is_none(), "no session ever ran");
}

#[test]
fn a_repeated_request_of_a_live_session_opens_nothing_and_sends_nothing() {
    // Boot ROMs send their RRQ twice.
    let request = rrq("f", "octet", &[]);
    let (mut s, _) = read(&request, &bytes(2000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    assert!(s.recv(1.1, &request).is_empty());
    assert!(s
        .recv(1.2, &rrq("f", "octet", &[("blksize", "8")]))
        .is_empty());
    assert_eq!((s.table.len(), s.opened()), (1, 1));
    assert_eq!(s.table.endpoint().unproven(), 0, "no second grant");
    assert_eq!(s.recv(2.0, &ack(2)), ["DATA 3 (512 B)"]);
}

#[test]
fn a_stray_ack_or_error_from_an_unknown_peer_gets_nothing() {
    let mut s = ServerScript::new(tftp(), &[("f", b"abc")]);
    let datagrams = [
        ack(0),
        ack(1),
        error(0, "bye"),
        error(5, "unknown transfer ID"),
    ];
    for datagram in &datagrams {
        assert!(s.recv(1.0, datagram).is_empty(), "{}", show(datagram));
    }
    // DATA too small for ERROR 5 within three times its size is not answered either.
    assert!(s.recv(1.0, &data(1, b"x")).is_empty());
    assert_eq!(s.table.stats().unknown_session, 5);
    assert_eq!((s.table.len(), s.table.endpoint().unproven()), (0, 0));
}

#[test]
fn a_stray_data_from_an_unknown_peer_gets_error_5_rate_limited() {
    let mut s = ServerScript::new(tftp(), &[]);
    let stray = data(1, b"12345678");
    assert_eq!(s.recv(0.0, &stray), ["ERROR 5 unknown transfer ID"]);
    // One address gets bursts of 50 errors (protocol.md §17.4), then 200 a second.
    let answered = |s: &mut ServerScript, ms| (0..100).map(|_| s.recv(ms, &stray).len()).sum();
    let burst: usize = answered(&mut s, 1.0);
    assert_eq!(burst, 49);
    assert_eq!(s.table.stats().rate_limited, 51);
    let refilled: usize = answered(&mut s, 101.0);
    assert_eq!(refilled, 20, "200 a second, for 100 ms");
    assert_eq!(s.table.len(), 0);
}

/// RRQs without options for a 2000-byte file from `count` peers, the peer `i` at `peer(i)`,
/// all at `ms`; returns how many were answered and the bytes sent.
fn flood(
    s: &mut ServerScript,
    ms: f64,
    count: usize,
    peer: impl Fn(usize) -> SocketAddr,
) -> (usize, usize) {
    let request = rrq("f", "octet", &[]);
    let mut answered = 0;
    let mut sent = 0;
    for i in 0..count {
        let from = peer(i);
        let out = s.recv_from(ms, from, &request);
        assert!(out.len() <= 1, "one reply per request");
        for (to, bytes) in out {
            assert_eq!((to, show(&bytes)), (from, "DATA 1 (512 B)".to_string()));
            answered += 1;
            sent += bytes.len();
        }
    }
    (answered, sent)
}

/// Peer `i` of the /24 `10.0.net.0`.
fn in_net(net: u8, i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, net, 1 + (i % 250) as u8)),
        5000 + i as u16,
    )
}

#[test]
fn the_byte_budget_caps_a_flood_of_rrqs_without_options_from_one_24() {
    let mut s = ServerScript::new(tftp(), &[("f", &bytes(2000))]);
    let budget = TftpPolicy::default().unproven_prefix_rate as usize;
    let block = 516;
    let (answered, sent) = flood(&mut s, 0.0, 1000, |i| in_net(1, i));
    assert_eq!(answered, budget / block);
    assert!(sent <= budget);
    assert_eq!(s.table.stats().tftp_over_budget, (1000 - answered) as u64);
    // Another /24 has its own budget.
    assert_eq!(flood(&mut s, 0.0, 1, |i| in_net(2, i)).0, 1);
    // A second later the /24 has a second's worth again.
    assert_eq!(
        flood(&mut s, 1000.0, 1000, |i| in_net(1, 1000 + i)).0,
        budget / block
    );
    assert_eq!(s.table.len(), 0, "a flood opens nothing");
}

#[test]
fn the_byte_budget_caps_what_all_unproven_peers_get() {
    let block = 516;
    let mut s = ServerScript::new(
        TftpPolicy {
            unproven_rate: 10 * block,
            ..tftp()
        },
        &[("f", &bytes(2000))],
    );
    // One peer in each of 100 /24s, well within their own budgets.
    let (answered, sent) = flood(&mut s, 0.0, 100, |i| in_net(i as u8, 0));
    assert_eq!((answered, sent), (10, 10 * block as usize));
    assert_eq!(s.table.stats().tftp_over_budget, 90);
}

#[test]
fn a_flood_from_one_24_leaves_the_total_budget_to_the_others() {
    // The per-prefix budget exists so that one source prefix cannot crowd out the rest. But
    // `Endpoint::tftp_budget` takes from the total before it asks the prefix, so every reply
    // the prefix refuses still spends the total: about 2,000 RRQs a second (20 kB/s) from
    // one /24 leave nothing for anyone else.
    let mut s = ServerScript::new(tftp(), &[("f", &bytes(2000))]);
    let (answered, _) = flood(&mut s, 0.0, 3000, |i| in_net(1, i));
    assert_eq!(answered, 65_536 / 516, "the /24 gets its own budget");
    assert_eq!(
        flood(&mut s, 0.0, 1, |i| in_net(2, i)).0,
        1,
        "a peer of another /24 is still answered"
    );
}

// ---- retransmission --------------------------------------------------------------------

#[test]
fn a_lost_block_costs_about_a_round_trip_with_backoff() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    // The peer answers in 1 ms: that round trip is the estimator's first sample.
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    // RTO = SRTT + 4 RTTVAR = 1 ms + 4 × 0.5 ms = 3 ms after the send...
    assert!(s.run_until(3.9).is_empty(), "not before its deadline");
    assert_eq!(s.run_until(4.0), timed(&[(4.0, "DATA 2 (512 B)")]));
    // ...and backoff: the next wait is twice as long.
    assert!(s.run_until(9.9).is_empty());
    let (due, out) = s.next_send(20.0);
    assert_eq!((due, out[0].as_str()), (10.0, "DATA 2 (512 B)"));
    assert_eq!(s.recv(11.0, &ack(2)), ["DATA 3 (512 B)"]);
}

#[test]
fn a_first_packet_sent_twice_gives_no_round_trip_sample() {
    // Karn: the ACK of a first packet the front door sent twice (the request was repeated)
    // may answer either send, so it gives no sample and the timer keeps its initial 100 ms.
    for request in [
        rrq("f", "octet", &[]),
        rrq("f", "octet", &[("blksize", "512")]),
    ] {
        let (mut s, first) = read(&request, &bytes(3000));
        assert_eq!(s.recv(1000.0, &request), first);
        let proof = if first[0].starts_with("OACK") { 0 } else { 1 };
        let next = if proof == 0 {
            "DATA 1 (512 B)"
        } else {
            "DATA 2 (512 B)"
        };
        assert_eq!(s.recv(1001.0, &ack(proof)), [next]);
        assert_eq!(s.next_send(2000.0), (1101.0, vec![next.to_string()]));
    }
}

#[test]
fn after_two_timeouts_in_a_row_the_next_block_goes_out_too() {
    // A receiver that holds block 2 and answers repeats only once (atftp) is unstuck by
    // block 3, which is in order for it.
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    assert_eq!(s.next_send(100.0).1, ["DATA 2 (512 B)"]);
    let (due, out) = s.next_send(100.0);
    assert_eq!(out, ["DATA 2 (512 B)", "DATA 3 (512 B)"]);
    assert_eq!(s.recv(due + 1.0, &ack(3)), ["DATA 4 (512 B)"]);
}

#[test]
fn a_receiver_ahead_of_every_ack_is_unstuck_by_the_block_after_the_highest_sent() {
    // atftp holds block 3 (the first probe), but its ACK of 3 and its one answer to a repeat
    // were lost; it ignores 2 and 3 from then on. The next round carries 4, in order for it.
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(5000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    assert_eq!(s.next_send(100.0).1, ["DATA 2 (512 B)"]);
    assert_eq!(s.next_send(100.0).1, ["DATA 2 (512 B)", "DATA 3 (512 B)"]);
    let (due, out) = s.next_send(1000.0);
    assert_eq!(out, ["DATA 2 (512 B)", "DATA 3 (512 B)", "DATA 4 (512 B)"]);
    // Its ACK of 4 acknowledges everything up to it, and the transfer goes on.
    assert_eq!(s.recv(due + 1.0, &ack(4)), ["DATA 5 (512 B)"]);
}

#[test]
fn the_timer_has_a_floor_and_a_ceiling() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(5000));
    // A 10 µs round trip: the floor (100 µs) holds.
    assert_eq!(s.recv(0.01, &ack(1)), ["DATA 2 (512 B)"]);
    let (mut sent_at, out) = s.next_send(1.0);
    assert_eq!((sent_at, out), (0.11, vec!["DATA 2 (512 B)".to_string()]));
    for round in 0..12 {
        let (next, out) = s.next_send(5000.0);
        // Every round resends block 2 and, from the second, probes a few blocks past it.
        let reach = 3 + round.min(3);
        let expected: Vec<String> = (2..=reach).map(|b| format!("DATA {b} (512 B)")).collect();
        assert_eq!(out, expected, "round {round}");
        let wait = next - sent_at;
        assert!(wait <= 250.001, "backoff capped at 250 ms: {wait}");
        sent_at = next;
    }
}

#[test]
fn a_duplicate_ack_never_causes_a_send() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    // The Sorcerer's Apprentice: a late duplicate of ACK 1 must not resend DATA 2.
    assert!(s.recv(1.5, &ack(1)).is_empty());
    assert!(s.recv(1.6, &ack(0)).is_empty());
    assert_eq!(s.recv(2.0, &ack(2)), ["DATA 3 (512 B)"]);
    assert!(s.recv(2.1, &ack(2)).is_empty());
}

#[test]
fn a_silent_peer_is_given_up_after_the_timeout() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    let sent = s.run_until(60_000.0);
    let (last, retries) = sent.split_last().expect("sends");
    assert!(retries.iter().all(|(_, p)| p.starts_with("DATA")));
    assert_eq!(last.1, "ERROR 0 timed out");
    assert!(
        (5000.0..6000.0).contains(&last.0),
        "gave up at {} ms",
        last.0
    );
    assert_eq!(s.table.len(), 0);
    assert!(is_timeout(&s.ended()));
}

#[test]
fn a_granted_timeout_is_echoed_and_lengthens_the_give_up_time() {
    let (mut s, first) = read(&rrq("f", "octet", &[("timeout", "6")]), &bytes(3000));
    assert_eq!(first, ["OACK timeout 6"]);
    assert_eq!(s.recv(1.0, &ack(0)), ["DATA 1 (512 B)"]);
    // Retransmission stays adaptive (well under the client's 6 s)...
    assert!(s.next_send(200.0).0 < 200.0);
    // ...and a silent peer is waited for twice its timeout.
    let sent = s.run_until(60_000.0);
    let (gave_up, last) = sent.last().expect("sends");
    assert_eq!(last, "ERROR 0 timed out");
    assert!(
        (12_000.0..12_300.0).contains(gave_up),
        "gave up at {gave_up} ms"
    );
}

// ---- the window ------------------------------------------------------------------------

#[test]
fn a_window_sends_windowsize_blocks_and_resumes_after_the_ack() {
    let opts = [("blksize", "8"), ("windowsize", "4")];
    let (mut s, first) = read(&rrq("f", "octet", &opts), &bytes(100));
    assert_eq!(first, ["OACK blksize 8 windowsize 4"]);
    let window = |a: u16, b: u16| {
        (a..=b)
            .map(|n| format!("DATA {n} (8 B)"))
            .collect::<Vec<_>>()
    };
    assert_eq!(s.recv(1.0, &ack(0)), window(1, 4));
    // ACK 4 acknowledges all four: the next window.
    assert_eq!(s.recv(2.0, &ack(4)), window(5, 8));
    // ACK 6 (block 7 was lost): the next window starts at 7.
    assert_eq!(s.recv(3.0, &ack(6)), window(7, 10));
    // An old ACK changes nothing.
    assert!(s.recv(3.1, &ack(5)).is_empty());
    // On timeout, resend from the first unacknowledged block.
    let (due, out) = s.next_send(100.0);
    assert_eq!(out, window(7, 10));
    assert_eq!(
        s.recv(due + 1.0, &ack(10)),
        [&window(11, 12)[..], &["DATA 13 (4 B)".to_string()]].concat()
    );
    assert!(s.recv(due + 2.0, &ack(13)).is_empty());
    assert_eq!(s.ended().failure, None, "complete");
}

#[test]
fn the_window_is_granted_up_to_the_server_maximum() {
    let limited = TftpPolicy {
        options: Options {
            max_window: 8,
            ..Options::default()
        },
        ..tftp()
    };
    let (_, first) = read_with(
        limited,
        &rrq("f", "octet", &[("windowsize", "64")]),
        &bytes(9),
    );
    assert_eq!(first, ["OACK windowsize 8"]);
}

// ---- rollover --------------------------------------------------------------------------

#[test]
fn block_numbers_roll_over_from_65535_to_0() {
    let blocks = 65_537usize;
    let file = bytes(blocks * 8 - 3);
    let (mut s, _) = read(&rrq("big", "octet", &[("blksize", "8")]), &file);
    let mut ms = 1.0;
    assert_eq!(s.recv(ms, &ack(0)), ["DATA 1 (8 B)"]);
    for index in 1..blocks as u64 {
        ms += 0.01;
        let out = s.recv(ms, &ack(index as u16));
        let next = ((index + 1) % 65_536) as u16;
        let len = if index + 1 == blocks as u64 { 5 } else { 8 };
        assert_eq!(
            out,
            [format!("DATA {next} ({len} B)")],
            "after ACK of block {index}"
        );
    }
    // Block 65537 went out as 1; its ACK completes the transfer.
    assert!(s.recv(ms + 0.01, &ack(1)).is_empty());
    let record = s.ended();
    assert_eq!(record.failure, None, "complete");
    assert_eq!(record.bytes, file.len() as u64);
}

// ---- netascii --------------------------------------------------------------------------

#[test]
fn netascii_is_converted_on_the_fly_and_gets_no_tsize() {
    let (mut s, first) = read(
        &rrq("t", "netascii", &[("blksize", "8"), ("tsize", "0")]),
        b"ab\ncd\r\nx\n",
    );
    assert_eq!(
        first,
        ["OACK blksize 8"],
        "tsize is not offered in netascii"
    );
    // "ab\r\ncd\r\0\r\nx\r\n" = 13 bytes on the wire: one full block, then 5.
    assert_eq!(s.recv(1.0, &ack(0)), ["DATA 1 (8 B)"]);
    assert_eq!(s.recv(2.0, &ack(1)), ["DATA 2 (5 B)"]);
    assert!(s.recv(3.0, &ack(2)).is_empty());
    assert_eq!(s.ended().failure, None, "complete");
}

#[test]
fn netascii_without_options_starts_with_the_converted_block_1() {
    let (mut s, first) = read(&rrq("t", "netascii", &[]), &b"a\n".repeat(300));
    // 300 lines of "a\r\n" = 900 bytes on the wire.
    assert_eq!(first, ["DATA 1 (512 B)"]);
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (388 B)"]);
    assert!(s.recv(2.0, &ack(2)).is_empty());
    assert_eq!(s.ended().failure, None, "complete");
}

// ---- the end ---------------------------------------------------------------------------

#[test]
fn after_the_end_acks_and_errors_change_nothing() {
    let (mut s, first) = read(&rrq("f", "octet", &[]), b"abc");
    assert_eq!(first, ["DATA 1 (3 B)"]);
    assert!(s.recv(1.0, &ack(1)).is_empty());
    assert_eq!(s.ended().failure, None, "complete");
    assert_eq!(s.table.len(), 0, "the session is over at once");
    for stray in [ack(1), ack(2), error(0, "bye"), b"\x00\x09junk".to_vec()] {
        assert!(s.recv(2.0, &stray).is_empty(), "{}", show(&stray));
    }
    // The peer has no session any more: a DATA from it is a stray's (protocol.md §19.5).
    assert_eq!(
        s.recv(3.0, &data(1, b"12345678")),
        ["ERROR 5 unknown transfer ID"]
    );
    assert!(s.table.poll_record().is_none());
}

#[test]
fn an_ack_of_our_error_changes_nothing() {
    let (mut s, _) = read(&rrq("f", "octet", &[]), &bytes(3000));
    assert_eq!(s.recv(1.0, &ack(1)), ["DATA 2 (512 B)"]);
    assert_eq!(s.stop(2.0), [format!("ERROR 0 {SHUTTING_DOWN}")]);
    assert!(s.recv(3.0, &ack(2)).is_empty());
    assert!(s.recv(3.1, &ack(0)).is_empty());
    assert_eq!(s.table.len(), 0);
    assert!(s.ended().failure.is_some());
    assert!(s.run_until(10_000.0).is_empty());
    assert_eq!(s.table.poll_timeout(), None);
}

// ---- uploads ---------------------------------------------------------------------------

#[test]
fn an_upload_is_committed_only_when_complete_and_then_acknowledged() {
    let (mut s, first) = write_with(tftp(), &wrq("up", "octet", &[]));
    assert_eq!(first, ["ACK 0"]);
    let block = bytes(512);
    assert_eq!(s.recv(1.0, &data(1, &block)), ["ACK 1"]);
    assert_eq!(s.stored("up"), None);
    // A repeat of block 1 (our ACK was lost) is acknowledged again, not written twice.
    assert_eq!(s.recv(1.5, &data(1, &block)), ["ACK 1"]);
    assert_eq!(s.recv(2.0, &data(2, b"tail")), ["ACK 2"]);
    assert_eq!(s.stored("up"), Some([&block[..], b"tail"].concat()));
    assert_eq!(s.ended().failure, None, "complete");
}

#[test]
fn after_an_upload_the_tombstone_repeats_the_final_ack_and_drops_the_rest() {
    let (mut s, _) = write_with(tftp(), &wrq("up", "octet", &[]));
    assert_eq!(s.recv(1.0, &data(1, &bytes(512))), ["ACK 1"]);
    assert_eq!(s.recv(2.0, &data(2, b"tail")), ["ACK 2"]);
    // The session is over at once; its tombstone answers the final block's repeats.
    assert_eq!(s.table.len(), 0);
    assert_eq!(s.ended().failure, None, "complete");
    assert_eq!(s.recv(100.0, &data(2, b"tail")), ["ACK 2"]);
    assert_eq!(s.recv(2500.0, &data(2, b"tail")), ["ACK 2"]);
    for other in [
        data(1, &bytes(512)),
        data(3, b"more"),
        ack(2),
        error(0, "x"),
    ] {
        assert!(s.recv(2600.0, &other).is_empty(), "{}", show(&other));
    }
    assert_eq!((s.table.len(), s.opened()), (0, 1));
    // For as long as a server session would have lingered (the 5 s give-up time).
    assert!(s.run_until(8000.0).is_empty());
    assert!(!s
        .recv(8000.0, &data(2, b"tail"))
        .contains(&"ACK 2".to_string()));
    assert_eq!(s.stored("up").map(|f| f.len()), Some(516), "stored once");
}

#[test]
fn an_upload_retransmits_its_ack_when_data_stops() {
    let (mut s, _) = write_with(tftp(), &wrq("up", "octet", &[]));
    assert_eq!(s.recv(1.0, &data(1, &bytes(512))), ["ACK 1"]);
    assert_eq!(s.next_send(1000.0).1, ["ACK 1"]);
}

#[test]
fn an_upload_over_the_limit_is_refused_before_any_data_or_stopped_when_it_grows() {
    let limited = TftpPolicy {
        options: Options {
            max_upload: Some(600),
            ..Options::default()
        },
        ..tftp()
    };
    let (_, refused) = write_with(limited.clone(), &wrq("up", "octet", &[("tsize", "601")]));
    assert_eq!(refused.len(), 1);
    assert!(refused[0].starts_with("ERROR 3"), "{refused:?}");
    // Without tsize the limit is enforced as bytes arrive; nothing is committed.
    let (mut s, _) = write_with(limited, &wrq("up", "octet", &[]));
    assert_eq!(s.recv(1.0, &data(1, &bytes(512))), ["ACK 1"]);
    let out = s.recv(2.0, &data(2, &bytes(512)));
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("ERROR 3"), "{out:?}");
    assert_eq!(s.stored("up"), None);
    assert!(s.ended().failure.is_some());
}

#[test]
fn an_upload_block_larger_than_negotiated_is_an_illegal_operation() {
    let (mut s, first) = write_with(tftp(), &wrq("up", "octet", &[("blksize", "8")]));
    assert_eq!(first, ["OACK blksize 8"]);
    let out = s.recv(1.0, &data(1, &bytes(9)));
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("ERROR 4"), "{out:?}");
    assert_eq!(s.stored("up"), None);
}

#[test]
fn a_netascii_upload_is_stored_with_lf_line_ends() {
    let (mut s, _) = write_with(tftp(), &wrq("t", "netascii", &[("blksize", "8")]));
    // "one\r\ntwo\r\n" split so that a CR LF straddles the blocks.
    assert_eq!(s.recv(1.0, &data(1, b"one\r\ntwo")), ["ACK 1"]);
    assert_eq!(s.recv(2.0, &data(2, b"\r\n")), ["ACK 2"]);
    assert_eq!(s.stored("t").as_deref(), Some(&b"one\ntwo\n"[..]));
}

// ---- requests against a real library ---------------------------------------------------

fn library(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::create_dir(dir.path().join("boot")).unwrap();
    std::fs::write(dir.path().join("boot/inner"), b"x").unwrap();
    let lib = Library::open(dir.path(), LibraryOptions::default()).unwrap();
    (dir, lib)
}

/// The server's one answer to `request` at `ms`, if it is an ERROR: its code and text.
fn refusal(s: &mut ServerScript, ms: f64, request: &[u8]) -> (TftpCode, String) {
    let out = s.recv_from(ms, PEER, request);
    assert_eq!(out.len(), 1, "one answer to {}", show(request));
    match Packet::decode(&out[0].1) {
        Ok(Packet::Error { code, text }) => (
            TftpCode::from_u16(code),
            String::from_utf8_lossy(text).into_owned(),
        ),
        _ => panic!("{} was served: {}", show(request), show(&out[0].1)),
    }
}

#[test]
fn names_follow_the_library_rules_with_a_leading_slash_for_the_root() {
    let (_dir, lib) = library(&[("pxelinux.0", b"boot me"), ("exists", b"1")]);
    let mut s = ServerScript::over(tftp(), Box::new(lib), Files::default());
    for name in ["pxelinux.0", "/pxelinux.0"] {
        assert_eq!(s.recv(0.0, &rrq(name, "octet", &[])), ["DATA 1 (7 B)"]);
    }
    let cases = [
        ("missing", TftpCode::NotFound),
        ("boot/inner", TftpCode::NotFound),
        ("/boot/inner", TftpCode::NotFound),
        ("../etc/passwd", TftpCode::NotFound),
        ("..", TftpCode::AccessViolation),
        (".hidden", TftpCode::AccessViolation),
        ("boot", TftpCode::NotFound),
    ];
    for (name, code) in cases {
        let (got, text) = refusal(&mut s, 1.0, &rrq(name, "octet", &[]));
        assert_eq!(got, code, "{name}: {text}");
        assert!(!text.is_empty());
    }
    assert_eq!(
        refusal(&mut s, 2.0, &wrq("exists", "octet", &[])).0,
        TftpCode::FileExists
    );
    assert_eq!(
        refusal(&mut s, 2.0, &rrq("pxelinux.0", "mail", &[])).0,
        TftpCode::IllegalOperation
    );
    let (_dir, lib) = library(&[]);
    let read_only = TftpPolicy::default();
    let mut s = ServerScript::over(read_only, Box::new(lib), Files::default());
    let (code, text) = refusal(&mut s, 0.0, &wrq("new", "octet", &[]));
    assert_eq!(code, TftpCode::AccessViolation);
    assert!(text.contains("not allowed"), "{text}");
}

// ---- the client ------------------------------------------------------------------------

const SERVER: &str = "127.0.0.1:69";

struct ClientScript {
    epoch: Instant,
    client: ClientSession,
    sink: Arc<Mutex<MemSink>>,
}

impl ClientScript {
    fn download(config: ClientConfig) -> (Self, Vec<(u16, String)>) {
        let epoch = Instant::now();
        let sink = Arc::new(Mutex::new(MemSink::default()));
        let client = ClientSession::download(epoch, config, server(), "f", Box::new(sink.clone()));
        let mut s = Self {
            epoch,
            client,
            sink,
        };
        let out = s.drain(0.0);
        (s, out)
    }

    fn at(&self, ms: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(ms / 1000.0)
    }

    fn recv(&mut self, ms: f64, port: u16, datagram: &[u8]) -> Vec<(u16, String)> {
        let from = SocketAddr::new(server().ip(), port);
        self.client.handle_datagram(self.at(ms), from, datagram);
        self.drain(ms)
    }

    fn drain(&mut self, ms: f64) -> Vec<(u16, String)> {
        let mut buf = vec![0; MAX_PACKET];
        let mut out = Vec::new();
        while let Some((to, n)) = self.client.poll_transmit(self.at(ms), &mut buf) {
            out.push((to.port(), show(&buf[..n])));
        }
        out
    }
}

fn server() -> SocketAddr {
    SERVER.parse().unwrap()
}

fn sent(pairs: &[(u16, &str)]) -> Vec<(u16, String)> {
    pairs.iter().map(|(p, s)| (*p, s.to_string())).collect()
}

#[test]
fn the_client_asks_for_mtu_blocks_tsize_and_a_window() {
    let (_, out) = ClientScript::download(ClientConfig::for_server(server()));
    assert_eq!(out, sent(&[(69, "RRQ f")]));
    let mut buf = vec![0; MAX_PACKET];
    let epoch = Instant::now();
    let mut c = ClientSession::download(
        epoch,
        ClientConfig::for_server(server()),
        server(),
        "f",
        Box::new(MemSink::default()),
    );
    let (_, n) = c.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &rrq(
            "f",
            "octet",
            &[("blksize", "1468"), ("tsize", "0"), ("windowsize", "16")]
        )[..]
    );
}

#[test]
fn the_client_takes_the_server_port_from_its_first_reply() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    let out = c.recv(1.0, 40_000, &oack(&[("blksize", "8"), ("tsize", "11")]));
    assert_eq!(out, sent(&[(40_000, "ACK 0")]));
    assert_eq!(c.client.size(), Some(11));
    // Another port of the server: ERROR 5 there, nothing changes here.
    assert_eq!(
        c.recv(1.5, 40_001, &data(1, b"evilevil")),
        sent(&[(40_001, "ERROR 5 unknown transfer ID")])
    );
    assert!(
        c.recv(1.6, 40_001, &error(0, "x")).is_empty(),
        "an ERROR is never answered"
    );
    assert_eq!(
        c.recv(2.0, 40_000, &data(1, b"12345678")),
        sent(&[(40_000, "ACK 1")])
    );
    assert_eq!(
        c.recv(3.0, 40_000, &data(2, b"abc")),
        sent(&[(40_000, "ACK 2")])
    );
    assert_eq!(c.client.outcome(), Some(&Outcome::Complete));
    assert_eq!(c.sink.lock().unwrap().data, b"12345678abc");
    assert!(c.sink.lock().unwrap().committed);
}

#[test]
fn the_client_falls_back_to_rfc_1350_when_options_are_ignored() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    assert_eq!(
        c.recv(1.0, 1234, &data(1, &bytes(512))),
        sent(&[(1234, "ACK 1")])
    );
    assert!(c.client.fell_back());
    assert_eq!(c.recv(2.0, 1234, &data(2, b"")), sent(&[(1234, "ACK 2")]));
    assert_eq!(c.client.outcome(), Some(&Outcome::Complete));
}

#[test]
fn the_client_asks_again_without_options_after_error_8() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    assert_eq!(
        c.recv(1.0, 69, &error(8, "no options")),
        sent(&[(69, "RRQ f")])
    );
    let mut buf = vec![0; MAX_PACKET];
    let epoch = Instant::now();
    let mut plain = ClientSession::download(
        epoch,
        ClientConfig::for_server(server()),
        server(),
        "f",
        Box::new(MemSink::default()),
    );
    plain.handle_datagram(epoch, server(), &error(8, "no options"));
    let (_, n) = plain.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!(&buf[..n], &rrq("f", "octet", &[])[..]);
}

#[test]
fn the_client_refuses_an_oack_that_grants_more_than_asked() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    let out = c.recv(1.0, 5000, &oack(&[("blksize", "9000")]));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 5000);
    assert!(out[0].1.starts_with("ERROR 8"), "{out:?}");
    assert!(matches!(
        c.client.outcome(),
        Some(Outcome::Failed(Failure::Local { .. }))
    ));
    assert!(c.client.is_finished());
}

#[test]
fn the_client_repeats_its_request_on_a_doubling_timer_then_gives_up() {
    let (mut c, _) = ClientScript::download(ClientConfig::for_server(server()));
    let mut times = Vec::new();
    while let Some(at) = c.client.poll_timeout() {
        let ms = at.duration_since(c.epoch).as_secs_f64() * 1000.0;
        c.client.handle_timeout(at);
        if !c.drain(ms).is_empty() {
            times.push(ms.round());
        }
    }
    assert_eq!(times, [500.0, 1500.0, 3500.0]);
    assert!(matches!(
        c.client.outcome(),
        Some(Outcome::Failed(Failure::Timeout { .. }))
    ));
}

#[test]
fn the_client_uploads_and_falls_back_on_ack_0() {
    let epoch = Instant::now();
    let file = bytes(700);
    let mut c = ClientSession::upload(
        epoch,
        ClientConfig::for_server(server()),
        server(),
        "up",
        Box::new(MemSource(file.clone())),
        700,
    );
    let mut buf = vec![0; MAX_PACKET];
    let (_, n) = c.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &wrq(
            "up",
            "octet",
            &[("blksize", "1468"), ("tsize", "700"), ("windowsize", "16")]
        )[..]
    );
    let from: SocketAddr = "127.0.0.1:7777".parse().unwrap();
    c.handle_datagram(epoch, from, &ack(0));
    let (to, n) = c.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!((to, show(&buf[..n])), (from, "DATA 1 (512 B)".to_string()));
    assert!(
        c.poll_transmit(epoch, &mut buf).is_none(),
        "lockstep after the fallback"
    );
    c.handle_datagram(epoch, from, &ack(1));
    let (_, n) = c.poll_transmit(epoch, &mut buf).unwrap();
    assert_eq!(show(&buf[..n]), "DATA 2 (188 B)");
    c.handle_datagram(epoch, from, &ack(2));
    assert_eq!(c.outcome(), Some(&Outcome::Complete));
}

#[test]
fn the_client_in_netascii_stores_lf() {
    let config = ClientConfig {
        mode: Mode::Netascii,
        ..ClientConfig::for_server(server())
    };
    let (mut c, _) = ClientScript::download(config);
    c.recv(1.0, 99, &data(1, b"a\r\nb\r\0c"));
    assert_eq!(c.sink.lock().unwrap().data, b"a\nb\rc");
}
