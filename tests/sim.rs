//! Transfers through the simulated network of `common`: clean downloads, uploads and
//! listings of edge sizes; scripted losses of each message in turn; duplicates, late Acks
//! (the Sorcerer's Apprentice) and corruption; a seeded sweep over loss rates with every
//! impairment switched on; a retransmission bound; sixteen clients at once; the server's
//! refusals; and pinned regression seeds. All in virtual time: nothing sleeps.
//!
//! Bugs of `src/proto` the simulation found (and that were fixed) stay covered: their
//! sweep seeds in `ONCE_FAILING_SEEDS`, and a scripted reproduction of each at the end.

mod common;

use common::{drop_nth, is_clean_timeout, lan, random_bytes, Fate, Sent, Sim, SERVER};
use std::collections::HashMap;
use std::time::Duration;
use udpft::link::{Damage, Impairments, Rng};
use udpft::proto::listing;
use udpft::proto::wire::{Kind, DEFAULT_CHUNK};
use udpft::proto::{Config, ErrorCode, Failure, Message, Outcome};

const CHUNK: usize = DEFAULT_CHUNK as usize;

/// File sizes at the chunk boundaries, and one large one.
const SIZES: [usize; 7] = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 1 << 20];

/// Number of Data chunks for `len` bytes at the default chunk.
fn chunks(len: usize) -> u64 {
    len.div_ceil(CHUNK) as u64
}

/// Downloads `len` random bytes through `sim` (already configured); returns the client.
fn download(sim: &mut Sim, len: usize) -> (usize, Vec<u8>) {
    let bytes = random_bytes(len as u64, len);
    sim.add_file("file.bin", bytes.clone());
    (sim.get("file.bin"), bytes)
}

/// Downloads `len` random bytes through `sim` (already configured) to the end and checks
/// the copy; returns the client.
fn downloaded(sim: &mut Sim, len: usize) -> usize {
    let (c, bytes) = download(sim, len);
    sim.run();
    assert_downloaded(sim, c, &bytes);
    c
}

fn assert_downloaded(sim: &Sim, client: usize, bytes: &[u8]) {
    assert_eq!(
        sim.outcome(client),
        Some(Outcome::Complete),
        "{}",
        sim.describe(client)
    );
    let (data, committed) = sim.received(client);
    assert!(
        data == bytes,
        "downloaded bytes differ: {}",
        sim.describe(client)
    );
    assert!(committed);
}

fn assert_uploaded(sim: &Sim, client: usize, name: &str, bytes: &[u8]) {
    assert_eq!(
        sim.outcome(client),
        Some(Outcome::Complete),
        "{}",
        sim.describe(client)
    );
    assert!(
        sim.stored(name).as_deref() == Some(bytes),
        "uploaded bytes differ: {}",
        sim.describe(client)
    );
}

/// Both ends complete: the client, and the server's one session.
fn assert_server_clean(sim: &Sim) {
    let stats = sim.table.stats();
    assert_eq!(
        (stats.opened, stats.completed, stats.failed),
        (1, 1, 0),
        "{}",
        stats.summary()
    );
    assert!(sim.table.is_empty());
}

#[test]
fn clean_downloads_of_every_edge_size_are_byte_identical() {
    for len in SIZES {
        let mut sim = Sim::new(1, lan());
        let (client, bytes) = download(&mut sim, len);
        sim.run();
        assert_downloaded(&sim, client, &bytes);
        assert_server_clean(&sim);
        assert_eq!(
            sim.sends(SERVER, Kind::Data).count() as u64,
            chunks(len),
            "a clean link needs no retransmission"
        );
    }
}

#[test]
fn clean_uploads_of_every_edge_size_are_byte_identical() {
    for len in SIZES {
        let mut sim = Sim::new(2, lan());
        let bytes = random_bytes(len as u64 + 7, len);
        let client = sim.put("up.bin", bytes.clone(), false);
        sim.run();
        assert_uploaded(&sim, client, "up.bin", &bytes);
        assert_server_clean(&sim);
        assert_eq!(sim.stats(client).retransmitted, 0);
        assert_eq!(sim.stats(client).bytes, len as u64);
    }
}

#[test]
fn listing_shows_every_file_of_the_store() {
    let mut sim = Sim::new(3, lan());
    // Enough entries that the listing spans several chunks.
    let mut expected = Vec::new();
    for i in 0..200 {
        let name = format!("file-{i:03}.dat");
        sim.add_file(&name, vec![0; i * 3]);
        expected.push((name.into_bytes(), (i * 3) as u64));
    }
    let client = sim.list();
    sim.run();
    assert_eq!(sim.outcome(client), Some(Outcome::Complete));
    let (bytes, committed) = sim.received(client);
    assert!(committed);
    assert!(
        bytes.len() > CHUNK,
        "the listing should span several chunks"
    );
    let entries = listing::decode(&bytes).expect("listing parses");
    let got: Vec<(Vec<u8>, u64)> = entries.into_iter().map(|e| (e.name, e.size)).collect();
    assert_eq!(got, expected);
}

#[test]
fn upload_is_invisible_until_committed() {
    let mut sim = Sim::new(4, lan());
    let bytes = random_bytes(4, 20 * CHUNK);
    let client = sim.put("late.bin", bytes.clone(), false);
    assert!(
        sim.run_until(10_000, |s| s.sends(s.clients[0].addr, Kind::Data).count()
            >= 10)
    );
    assert_eq!(sim.stored("late.bin"), None);
    sim.run();
    assert_uploaded(&sim, client, "late.bin", &bytes);
}

// Scripted losses: one message lost, the transfer recovers.

/// Runs a download of three chunks with `hook` installed; asserts it recovered.
fn download_losing(hook: impl FnOnce(&Sim) -> common::Hook) -> Sim {
    let mut sim = Sim::new(5, lan());
    sim.set_hook(hook(&sim));
    let (client, bytes) = download(&mut sim, 3 * CHUNK);
    sim.run();
    assert!(sim.hooked > 0, "the scripted loss never happened");
    assert_downloaded(&sim, client, &bytes);
    assert_server_clean(&sim);
    sim
}

/// Runs an upload of three chunks with `hook` installed; asserts it recovered.
fn upload_losing(hook: impl FnOnce(&Sim) -> common::Hook) -> Sim {
    let mut sim = Sim::new(6, lan());
    let bytes = random_bytes(6, 3 * CHUNK);
    sim.set_hook(hook(&sim));
    let client = sim.put("up.bin", bytes.clone(), false);
    sim.run();
    assert!(sim.hooked > 0, "the scripted loss never happened");
    assert_uploaded(&sim, client, "up.bin", &bytes);
    assert_server_clean(&sim);
    sim
}

#[test]
fn lost_first_data_is_retransmitted() {
    let sim = download_losing(|_| drop_nth(SERVER, Kind::Data, 0));
    let first: Vec<&Sent> = sim
        .sends(SERVER, Kind::Data)
        .filter(|s| s.seq == 1)
        .collect();
    assert_eq!(first.len(), 2);
    let client = common::client_addr(0);
    let sim = upload_losing(|_| drop_nth(client, Kind::Data, 0));
    assert_eq!(sim.stats(0).retransmitted, 1);
}

#[test]
fn lost_first_ack_is_recovered() {
    let client = common::client_addr(0);
    // Download: the client's first Ack is Ack 0, of the Accept.
    download_losing(|_| drop_nth(client, Kind::Ack, 0));
    // Download: the Ack of Data 1.
    download_losing(|_| drop_nth(client, Kind::Ack, 1));
    // Upload: the server's first Ack, of Data 1.
    upload_losing(|_| drop_nth(SERVER, Kind::Ack, 0));
}

#[test]
fn lost_accept_is_recovered() {
    let sim = download_losing(|_| drop_nth(SERVER, Kind::Accept, 0));
    assert_eq!(sim.sends(SERVER, Kind::Accept).count(), 2);
    let sim = upload_losing(|_| drop_nth(SERVER, Kind::Accept, 0));
    assert!(sim.sends(SERVER, Kind::Accept).count() >= 2);
}

#[test]
fn lost_request_is_repeated() {
    let client = common::client_addr(0);
    let sim = download_losing(|_| drop_nth(client, Kind::Get, 0));
    assert_eq!(sim.sends(client, Kind::Get).count(), 2);
    let sim = upload_losing(|_| drop_nth(client, Kind::Put, 0));
    assert_eq!(sim.sends(client, Kind::Put).count(), 2);
}

#[test]
fn lost_done_is_retransmitted() {
    let sim = download_losing(|_| drop_nth(SERVER, Kind::Done, 0));
    assert_eq!(sim.sends(SERVER, Kind::Done).count(), 2);
    let client = common::client_addr(0);
    let sim = upload_losing(|_| drop_nth(client, Kind::Done, 0));
    assert_eq!(sim.sends(client, Kind::Done).count(), 2);
}

#[test]
fn lost_final_ack_is_repeated_by_the_lingering_receiver() {
    let done_seq = chunks(3 * CHUNK) + 1;
    let client = common::client_addr(0);
    let drop_done_ack = move |from| -> common::Hook {
        let mut dropped = false;
        Box::new(move |s: &Sent| {
            if !dropped && s.from == from && s.kind == Some(Kind::Ack) && s.seq == done_seq {
                dropped = true;
                Fate::Drop
            } else {
                Fate::Link
            }
        })
    };
    for sim in [
        download_losing(|_| drop_done_ack(client)),
        upload_losing(|_| drop_done_ack(SERVER)),
    ] {
        let receiver = if sim.sends(SERVER, Kind::Data).count() > 0 {
            client
        } else {
            SERVER
        };
        let done_acks = sim
            .sends(receiver, Kind::Ack)
            .filter(|s| s.seq == done_seq)
            .count();
        assert_eq!(
            done_acks, 2,
            "the lingering receiver acknowledges Done again"
        );
    }
}

// Duplicates and late Acks.

#[test]
fn late_duplicate_acks_never_cause_a_send() {
    // Every Ack the client sends arrives twice: on time, and again 700 µs later, while the
    // next Data is in flight. A sender that answered each Ack would send every chunk twice.
    let len = 40 * CHUNK;
    let mut sim = Sim::new(7, lan());
    let client = common::client_addr(0);
    sim.set_hook(Box::new(move |s: &Sent| {
        if s.from == client && s.kind == Some(Kind::Ack) {
            Fate::Deliver(vec![
                (Duration::from_micros(500), Damage::None),
                (Duration::from_micros(1200), Damage::None),
            ])
        } else {
            Fate::Link
        }
    }));
    downloaded(&mut sim, len);
    assert_eq!(
        sim.sends(SERVER, Kind::Data).count() as u64,
        chunks(len),
        "duplicate Acks caused extra Data"
    );
    assert_eq!(sim.sends(SERVER, Kind::Done).count(), 1);
}

#[test]
fn ack_delayed_past_the_timer_causes_one_retransmission_only() {
    // The Sorcerer's Apprentice: Ack 3 is held up past the retransmission timer, so Data 3
    // goes again and is acknowledged again; when the late original Ack 3 arrives it must
    // not make the sender send Data 4 a second time, and so on for every later chunk.
    let len = 20 * CHUNK;
    let mut sim = Sim::new(8, lan());
    let client = common::client_addr(0);
    let mut delayed = false;
    sim.set_hook(Box::new(move |s: &Sent| {
        if !delayed && s.from == client && s.kind == Some(Kind::Ack) && s.seq == 3 {
            delayed = true;
            Fate::Deliver(vec![(Duration::from_millis(40), Damage::None)])
        } else {
            Fate::Link
        }
    }));
    downloaded(&mut sim, len);
    let mut per_seq: HashMap<u64, usize> = HashMap::new();
    for s in sim.sends(SERVER, Kind::Data) {
        *per_seq.entry(s.seq).or_default() += 1;
    }
    assert!(per_seq[&3] >= 2, "Data 3 should have been retransmitted");
    for seq in (1..=chunks(len)).filter(|&s| s != 3) {
        assert_eq!(per_seq[&seq], 1, "Data {seq} sent more than once");
    }
    assert_eq!(sim.sends(SERVER, Kind::Done).count(), 1);
}

#[test]
fn duplicate_data_is_acknowledged_again_and_written_once() {
    let len = 10 * CHUNK + 17;
    let mut sim = Sim::new(9, lan());
    sim.set_hook(Box::new(|s: &Sent| {
        if s.from == SERVER && s.kind == Some(Kind::Data) {
            Fate::Deliver(vec![
                (Duration::from_micros(500), Damage::None),
                (Duration::from_micros(600), Damage::None),
            ])
        } else {
            Fate::Link
        }
    }));
    let c = downloaded(&mut sim, len);
    assert_eq!(sim.received(c).0.len(), len, "a chunk was written twice");
    assert_eq!(sim.stats(c).duplicates, chunks(len));
    let client = common::client_addr(0);
    for seq in 1..=chunks(len) {
        let acks = sim
            .sends(client, Kind::Ack)
            .filter(|s| s.seq == seq)
            .count();
        assert_eq!(
            acks, 2,
            "Data {seq} arrived twice and should be acknowledged twice"
        );
    }
}

#[test]
fn duplicate_data_on_upload_is_written_once() {
    let len = 10 * CHUNK + 17;
    let mut sim = Sim::new(10, lan());
    sim.set_hook(Box::new(|s: &Sent| {
        if s.kind == Some(Kind::Data) {
            Fate::Deliver(vec![
                (Duration::from_micros(500), Damage::None),
                (Duration::from_micros(600), Damage::None),
            ])
        } else {
            Fate::Link
        }
    }));
    let bytes = random_bytes(10, len);
    let c = sim.put("dup.bin", bytes.clone(), false);
    sim.run();
    assert_uploaded(&sim, c, "dup.bin", &bytes);
}

// Corruption.

/// Delivers every third Data damaged (and only damaged): the receiver must drop it.
fn damage_every_third_data(from: std::net::SocketAddr, truncate: bool) -> common::Hook {
    let mut n = 0u64;
    Box::new(move |s: &Sent| {
        if s.from != from || s.kind != Some(Kind::Data) {
            return Fate::Link;
        }
        n += 1;
        if !n.is_multiple_of(3) {
            return Fate::Link;
        }
        let damage = if truncate {
            Damage::Truncate {
                len: s.len - 1 - (n as usize % 30),
            }
        } else {
            Damage::FlipBit {
                bit: (n as usize * 7919) % (s.len * 8),
            }
        };
        Fate::Deliver(vec![(Duration::from_micros(500), damage)])
    })
}

#[test]
fn corrupted_data_is_counted_and_never_written() {
    for truncate in [false, true] {
        let len = 12 * CHUNK + 5;
        let mut sim = Sim::new(11, lan());
        sim.set_hook(damage_every_third_data(SERVER, truncate));
        let (c, bytes) = download(&mut sim, len);
        sim.run();
        assert_downloaded(&sim, c, &bytes);
        let damaged = sim.arrivals.iter().filter(|a| !a.intact).count() as u64;
        assert!(damaged >= 4);
        assert_eq!(sim.stats(c).corrupted, damaged, "{}", sim.describe(c));
        assert_eq!(sim.stats(c).bytes, len as u64);

        let mut sim = Sim::new(12, lan());
        let client = common::client_addr(0);
        sim.set_hook(damage_every_third_data(client, truncate));
        let bytes = random_bytes(12, len);
        let c = sim.put("bad.bin", bytes.clone(), false);
        sim.run();
        assert_uploaded(&sim, c, "bad.bin", &bytes);
        let damaged = sim.arrivals.iter().filter(|a| !a.intact).count() as u64;
        assert!(damaged >= 4);
        assert_eq!(sim.table.stats().rejected_total(), damaged);
    }
}

// The sweep.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Download,
    Upload,
}

/// The impairments of a sweep case: `loss` plus every other impairment, varied by seed.
fn sweep_impairments(seed: u64, loss: f64) -> Impairments {
    let mut rng = Rng::new(seed ^ 0x5EE9);
    Impairments {
        loss,
        duplicate: 0.05 + 0.05 * rng.unit(),
        reorder: 0.05 + 0.05 * rng.unit(),
        corrupt: 0.02 + 0.03 * rng.unit(),
        truncate: 0.01,
        delay: Duration::from_micros(300),
        jitter: Duration::from_micros(400),
        reorder_hold: Duration::from_millis(1),
        ..Impairments::default()
    }
}

/// How a sweep case ended, when it ended well.
#[derive(Debug)]
enum CaseResult {
    Complete,
    /// A clean timeout, with the longest silence seen in either direction.
    TimedOut(Duration),
}

/// One transfer of a random 20–60 KiB file under `sweep_impairments`: `Ok` for a
/// byte-identical completion or a clean timeout after a true silence in which someone kept
/// retrying, `Err` with the whole story otherwise. Never runs unbounded.
fn sweep_case(seed: u64, loss: f64, direction: Direction) -> Result<CaseResult, String> {
    sweep_case_at(seed, loss, Some(direction), 1)
}

/// [`sweep_case`] with the client asking for `window` (the server grants up to 64), and
/// `None` for a listing of a library of 60–180 names (several chunks).
fn sweep_case_at(
    seed: u64,
    loss: f64,
    direction: Option<Direction>,
    window: u16,
) -> Result<CaseResult, String> {
    let mut rng = Rng::new(seed.wrapping_mul(31) ^ loss.to_bits());
    let len = 20 * 1024 + rng.below(40 * 1024) as usize;
    let bytes = random_bytes(seed, len);
    let mut sim = Sim::new(seed ^ loss.to_bits(), sweep_impairments(seed, loss));
    if seed.is_multiple_of(3) {
        sim.client_config.chunk = 512;
    }
    sim.client_config.window = window;
    let mut names = Vec::new();
    let c = match direction {
        Some(Direction::Download) => {
            sim.add_file("sweep.bin", bytes.clone());
            sim.get("sweep.bin")
        }
        Some(Direction::Upload) => sim.put("sweep.bin", bytes.clone(), false),
        None => {
            for i in 0..60 + rng.below(120) {
                let name = format!("listed-{i:03}-{seed}.dat");
                sim.add_file(&name, vec![7; i as usize]);
                names.push((name.into_bytes(), i));
            }
            sim.list()
        }
    };
    // Bounded: half a million steps and five minutes of virtual time are orders of
    // magnitude beyond a healthy run.
    let finished = sim.run_bounded(500_000, Duration::from_secs(300));
    let context = format!(
        "seed {seed} loss {loss} {direction:?} window {window}: {}",
        sim.describe(c)
    );
    if !finished {
        return Err(format!("did not finish: {context}"));
    }
    let Some(outcome) = sim.outcome(c) else {
        return Err(format!("finished without an outcome: {context}"));
    };
    if outcome == Outcome::Complete {
        let intact = match direction {
            Some(Direction::Download) => sim.received(c) == (bytes, true),
            Some(Direction::Upload) => sim.stored("sweep.bin") == Some(bytes),
            None => {
                let (listed, committed) = sim.received(c);
                let got: Option<Vec<(Vec<u8>, u64)>> = listing::decode(&listed)
                    .map(|entries| entries.into_iter().map(|e| (e.name, e.size)).collect());
                committed && got == Some(names)
            }
        };
        return if intact {
            Ok(CaseResult::Complete)
        } else {
            Err(format!("bytes differ: {context}"))
        };
    }
    if !is_clean_timeout(&outcome) {
        return Err(format!("unclean failure: {context}"));
    }
    if direction != Some(Direction::Upload) && sim.received(c).1 {
        return Err(format!("a failed download was committed: {context}"));
    }
    let (start, end) = sim.silence_window(c);
    let silence = end - start;
    if silence < Config::default().timeout {
        return Err(format!(
            "timed out after only {silence:?} of silence: {context}"
        ));
    }
    // Someone must have been retrying all along, or the silence was a stall, not bad
    // luck: with the RTO capped at `rto_max`, the second half of the silence holds at
    // least two tries.
    let tries = sim.sends_within(c, end - silence / 2, end);
    if tries < 2 {
        return Err(format!(
            "stalled: timed out after {silence:?} whose second half saw {tries} tries: {context}"
        ));
    }
    Ok(CaseResult::TimedOut(silence))
}

const SWEEP_SEEDS: u64 = 200;
const SWEEP_LOSSES: [f64; 5] = [0.0, 0.05, 0.1, 0.2, 0.3];

#[test]
fn sweep_every_transfer_completes_or_times_out_cleanly() {
    let directions = [Direction::Download, Direction::Upload];
    let cases: Vec<_> = (0..SWEEP_SEEDS)
        .flat_map(|seed| directions.map(|d| (seed, Some(d), 1)))
        .collect();
    run_sweep(&cases);
}

/// Seeds of the windowed sweep (fewer than stop-and-wait's: three directions, two windows).
const WINDOWED_SWEEP_SEEDS: u64 = 60;

#[test]
fn windowed_sweep_every_transfer_completes_or_times_out_cleanly() {
    // Issue 10 §5: the same impairments (loss 0–30 %, duplication, reordering, corruption,
    // truncation) at windows 8 and 64, downloads, uploads and listings, and listings in
    // stop-and-wait too: byte-identical, or a clean timeout after a true silence.
    let mut cases = Vec::new();
    for window in [8u16, 64] {
        for direction in [Some(Direction::Download), Some(Direction::Upload), None] {
            cases.extend((0..WINDOWED_SWEEP_SEEDS).map(|seed| (seed, direction, window)));
        }
    }
    cases.extend((0..WINDOWED_SWEEP_SEEDS).map(|seed| (seed, None, 1)));
    run_sweep(&cases);
}

/// Runs every (seed, direction or `None` for a listing, window) case at every loss of
/// `SWEEP_LOSSES`: none may fail, none may time out up to 20 % loss, and at 30 % a clean
/// timeout (its silence and retries were checked) must stay rare.
fn run_sweep(cases: &[(u64, Option<Direction>, u16)]) {
    let mut timeouts = Vec::new();
    let mut failures = Vec::new();
    for loss in SWEEP_LOSSES {
        for &(seed, direction, window) in cases {
            match sweep_case_at(seed, loss, direction, window) {
                Ok(CaseResult::Complete) => {}
                Ok(CaseResult::TimedOut(silence)) => {
                    timeouts.push((seed, loss, direction, window, silence))
                }
                Err(story) => failures.push(story),
            }
        }
    }
    let total = cases.len() * SWEEP_LOSSES.len();
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let early: Vec<_> = timeouts.iter().filter(|t| t.1 <= 0.2).collect();
    assert!(early.is_empty(), "timeouts at ≤ 20% loss: {early:?}");
    assert!(
        timeouts.len() * 50 <= cases.len(),
        "too many timeouts at 30% loss: {timeouts:?}"
    );
}

/// Sweep cases that once failed, replayed on every run so the fixes stay fixed:
/// (seed, loss, direction, what went wrong).
const ONCE_FAILING_SEEDS: &[(u64, f64, Direction, &str)] = &[
    (
        2,
        0.0,
        Direction::Download,
        "a flipped version bit on an Ack drew an UnsupportedVersion Error that ended the session",
    ),
    (
        81,
        0.05,
        Direction::Upload,
        "the server's 20 ms linger ended before the Ack of Done got through: \
         the client heard UnknownSession though the file was committed",
    ),
    (0, 0.2, Direction::Upload, "the short linger, again"),
    (5, 0.2, Direction::Upload, "the short linger, again"),
    (11, 0.2, Direction::Upload, "the short linger, again"),
    (14, 0.3, Direction::Upload, "the short linger, again"),
    (
        71,
        0.05,
        Direction::Download,
        "Ack 0 lost; the amplification budget withheld the third Accept while the client \
         waited in silence: a stall until timeout",
    ),
    (
        2,
        0.1,
        Direction::Download,
        "the amplification stall, again",
    ),
    (
        12,
        0.1,
        Direction::Download,
        "the amplification stall, again",
    ),
    (
        28,
        0.2,
        Direction::Download,
        "the amplification stall, again",
    ),
    (
        48,
        0.2,
        Direction::Upload,
        "the RTO sat at its 1 s ceiling (Karn found no clean sample), so a message got only \
         five tries in the 5 s give-up time",
    ),
];

#[test]
fn once_failing_seeds_stay_fixed() {
    for &(seed, loss, direction, why) in ONCE_FAILING_SEEDS {
        match sweep_case(seed, loss, direction) {
            Ok(CaseResult::Complete) => {}
            other => panic!("once failed because {why}; now: {other:?}"),
        }
    }
}

#[test]
fn retransmissions_stay_within_a_bound_of_the_loss_rate() {
    for loss in [0.05, 0.1, 0.2] {
        let len = 400 * 512;
        let mut sim = Sim::new(13, Impairments { loss, ..lan() });
        sim.client_config.chunk = 512;
        let bytes = random_bytes(13, len);
        let c = sim.put("bound.bin", bytes.clone(), false);
        sim.run();
        assert_uploaded(&sim, c, "bound.bin", &bytes);
        // A message and its Ack each cross a link losing `loss`: 1/(1-p)² sends expected.
        let messages = 400.0 + 1.0;
        let expected_extra = messages * (1.0 / ((1.0 - loss) * (1.0 - loss)) - 1.0);
        let retransmitted = sim.stats(c).retransmitted as f64;
        assert!(
            retransmitted <= 3.0 * expected_extra + 20.0,
            "loss {loss}: {retransmitted} retransmissions, expected about {expected_extra:.0}"
        );
        assert!(retransmitted > 0.0);
    }
}

#[test]
fn download_retransmissions_stay_within_a_bound_of_the_loss_rate() {
    for loss in [0.05, 0.1, 0.2] {
        let mut sim = Sim::new(21, Impairments { loss, ..lan() });
        sim.client_config.chunk = 512;
        downloaded(&mut sim, 400 * 512);
        // The server's sender is gone by now: count its tries in the transcript.
        let sends = sim
            .sent
            .iter()
            .filter(|s| s.from == SERVER)
            .filter(|s| matches!(s.kind, Some(Kind::Accept | Kind::Data | Kind::Done)))
            .count() as f64;
        let messages = 1.0 + 400.0 + 1.0;
        let expected_extra = messages * (1.0 / ((1.0 - loss) * (1.0 - loss)) - 1.0);
        let retransmitted = sends - messages;
        assert!(
            retransmitted <= 3.0 * expected_extra + 20.0,
            "loss {loss}: {retransmitted} retransmissions, expected about {expected_extra:.0}"
        );
    }
}

/// The simulated links carry the shared bottleneck model: a download through a 1 MB/s
/// bottleneck takes at least its bytes over the rate of virtual time, and stop-and-wait,
/// with one datagram in flight, never fills the queue.
#[test]
fn a_download_through_a_bottleneck_is_paced_by_its_rate() {
    let rate = 1_000_000;
    let mut sim = Sim::new(
        23,
        Impairments {
            rate,
            queue: 4,
            ..lan()
        },
    );
    let (c, bytes) = download(&mut sim, 200 * 1430);
    sim.run();
    assert_downloaded(&sim, c, &bytes);
    let at_least = Duration::from_secs_f64(bytes.len() as f64 / rate as f64);
    assert!(
        sim.elapsed() >= at_least,
        "{:?} < {at_least:?}",
        sim.elapsed()
    );
    let (up, down) = sim.link_stats(c);
    assert_eq!((up.queue_dropped, down.queue_dropped), (0, 0));
    assert!(down.queue_peak <= 1, "{down:?}");
}

#[test]
fn same_seed_gives_the_same_run() {
    let run = || {
        let mut sim = Sim::new(22, sweep_impairments(22, 0.2));
        let bytes = random_bytes(22, 40_000);
        sim.add_file("a", bytes.clone());
        sim.get("a");
        sim.put("b", bytes, false);
        sim.run();
        let sends: Vec<_> = sim
            .sent
            .iter()
            .map(|s| (s.at, s.from, s.kind, s.seq, s.len))
            .collect();
        (sends, sim.arrivals.len(), sim.elapsed())
    };
    let first = run();
    assert!(first.0.len() > 50);
    assert_eq!(first, run());
}

// Many clients.

#[test]
fn sixteen_clients_at_once_through_one_table() {
    let imp = Impairments {
        loss: 0.1,
        jitter: Duration::from_micros(300),
        ..lan()
    };
    let mut sim = Sim::new(14, imp);
    let mut expected = Vec::new();
    for i in 0..8 {
        let bytes = random_bytes(100 + i, 30 * 1024 + i as usize * 100);
        let name = format!("down-{i}");
        sim.add_file(&name, bytes.clone());
        let c = sim.get(&name);
        expected.push((c, name, bytes, Direction::Download));
    }
    for i in 0..8 {
        let bytes = random_bytes(200 + i, 30 * 1024 + i as usize * 77);
        let name = format!("up-{i}");
        let c = sim.put(&name, bytes.clone(), false);
        expected.push((c, name, bytes, Direction::Upload));
    }
    sim.run();
    for (c, name, bytes, direction) in &expected {
        match direction {
            Direction::Download => assert_downloaded(&sim, *c, bytes),
            Direction::Upload => assert_uploaded(&sim, *c, name, bytes),
        }
    }
    assert!(
        sim.max_live_sessions > 1,
        "sessions never overlapped: {}",
        sim.max_live_sessions
    );
    assert_eq!(sim.table.len(), 0, "sessions leaked");
    let stats = sim.table.stats();
    assert_eq!(stats.opened, 16, "{}", stats.summary());
    assert_eq!(stats.completed + stats.failed, 16, "{}", stats.summary());
}

// Refusals.

#[test]
fn missing_file_is_refused_with_not_found() {
    let mut sim = Sim::new(15, lan());
    let c = sim.get("nope.bin");
    sim.run();
    match sim.outcome(c) {
        Some(Outcome::Failed(Failure::Peer { code, .. })) => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(sim.table.stats().refused, 1);
    assert_eq!(sim.table.stats().opened, 0);
    assert!(!sim.received(c).1);
}

#[test]
fn repeated_request_opens_one_session_only() {
    let mut sim = Sim::new(16, lan());
    let client = common::client_addr(0);
    // Every request arrives three times, and the Accepts of the first three copies are lost
    // (the server answers each copy, never on a timer), so the client also repeats the
    // request on its timer.
    sim.set_hook(Box::new(move |s: &Sent| {
        if s.from == client && s.kind == Some(Kind::Get) {
            Fate::Deliver(
                [500, 600, 700]
                    .map(|us| (Duration::from_micros(us), Damage::None))
                    .to_vec(),
            )
        } else if s.from == SERVER && s.kind == Some(Kind::Accept) && s.nth_of_kind < 3 {
            Fate::Drop
        } else {
            Fate::Link
        }
    }));
    downloaded(&mut sim, 5 * CHUNK);
    assert!(sim.sends(client, Kind::Get).count() >= 2);
    let sessions: std::collections::HashSet<u32> =
        sim.sends(SERVER, Kind::Accept).map(|s| s.session).collect();
    assert_eq!(sessions.len(), 1, "every Accept names the same session");
    assert_eq!(
        sim.table.stats().opened,
        1,
        "{}",
        sim.table.stats().summary()
    );
}

#[test]
fn data_for_an_unknown_session_is_refused_and_disturbs_nothing() {
    let mut sim = Sim::new(17, lan());
    let (c, bytes) = download(&mut sim, 30 * CHUNK);
    let client = sim.clients[c].addr;
    assert!(sim.run_until(10_000, |s| s.sends(SERVER, Kind::Data).count() >= 10));
    let mut buf = vec![0u8; 2048];
    let stray_data = |session: u32, buf: &mut [u8]| {
        let n = Message::Data {
            session,
            seq: 1,
            payload: b"intruder",
        }
        .encode(buf);
        buf[..n].to_vec()
    };
    // From the client's own address, under a session id it does not own...
    let bytes_in = stray_data(0xDEAD_BEEF, &mut buf);
    sim.inject(client, SERVER, bytes_in, Duration::from_micros(100));
    // ...and from a host the server has never heard of.
    let stranger = "10.0.9.9:7777".parse().unwrap();
    let bytes_in = stray_data(0x0BAD_CAFE, &mut buf);
    sim.inject(stranger, SERVER, bytes_in, Duration::from_micros(100));
    sim.run();
    assert_downloaded(&sim, c, &bytes);
    assert_server_clean(&sim);
    assert_eq!(sim.table.stats().unknown_session, 2);
    let refusals: Vec<&Sent> = sim
        .sends(SERVER, Kind::Error)
        .filter(|s| s.session == 0xDEAD_BEEF || s.session == 0x0BAD_CAFE)
        .collect();
    assert_eq!(refusals.len(), 2);
    assert_eq!(sim.strays.len(), 1);
    match Message::decode(&sim.strays[0].1) {
        Ok(Message::Error { code, session, .. }) => {
            assert_eq!((code, session), (ErrorCode::UnknownSession, 0x0BAD_CAFE))
        }
        other => panic!("{other:?}"),
    }
}

// Once-found bugs, reproduced deterministically.

#[test]
fn upload_whose_final_ack_is_lost_many_times_reports_success() {
    // The server lingers as long as the client retries, so however many Acks of Done are
    // lost (within the give-up time) the client hears one; an UnknownSession reply to a
    // repeated Done would report failure for a file that was committed.
    for lost in [1, 3, 4, 8] {
        let (sim, c, bytes) = upload_losing_done_acks(lost);
        assert_eq!(sim.stored("up.bin"), Some(bytes), "the server committed");
        assert_eq!(
            sim.outcome(c),
            Some(Outcome::Complete),
            "{lost} lost: {}",
            sim.describe(c)
        );
        assert_eq!(sim.table.stats().unknown_session, 0);
    }
}

/// An upload of three chunks whose server loses its first `n` Acks of Done.
fn upload_losing_done_acks(n: usize) -> (Sim, usize, Vec<u8>) {
    let done_seq = chunks(3 * CHUNK) + 1;
    let mut sim = Sim::new(18, lan());
    let mut lost = 0;
    sim.set_hook(Box::new(move |s: &Sent| {
        if lost < n && s.from == SERVER && s.kind == Some(Kind::Ack) && s.seq == done_seq {
            lost += 1;
            Fate::Drop
        } else {
            Fate::Link
        }
    }));
    let bytes = random_bytes(18, 3 * CHUNK);
    let c = sim.put("up.bin", bytes.clone(), false);
    sim.run();
    (sim, c, bytes)
}

#[test]
fn a_windowed_upload_whose_final_ack_is_lost_hears_the_tombstone_answer_a_chunk() {
    // Data 2 is lost, the Done already travels behind Data 3, and the server's Ack of Done
    // sent when the retransmission of Data 2 filled the hole is lost too: the sender still
    // counts chunk 2 unacknowledged (the Done was acknowledged selectively) and its timer
    // resends it, not the Done. The server's session has ended; its tombstone must answer that chunk with the
    // selective Ack of Done (protocol.md §6.4, §20.5), or the client times out on a file that
    // was committed (a seed of the random-loss test once did).
    let len = 3 * CHUNK;
    let done_seq = chunks(len) + 1;
    let mut sim = Sim::new(19, lan());
    sim.client_config.window = 8;
    let client = common::client_addr(0);
    let (mut data_lost, mut ack_lost) = (false, false);
    sim.set_hook(Box::new(move |s: &Sent| {
        if !data_lost && s.from == client && s.kind == Some(Kind::Data) && s.seq == 2 {
            data_lost = true;
            Fate::Drop
        } else if !ack_lost && s.from == SERVER && s.kind == Some(Kind::Ack) && s.seq == done_seq {
            ack_lost = true;
            Fate::Drop
        } else {
            Fate::Link
        }
    }));
    let bytes = random_bytes(19, len);
    let c = sim.put("up.bin", bytes.clone(), false);
    sim.run();
    assert_uploaded(&sim, c, "up.bin", &bytes);
    let resent: Vec<u64> = sim
        .sends(client, Kind::Data)
        .filter(|s| s.seq == 2)
        .map(|s| s.seq)
        .collect();
    assert_eq!(
        resent.len(),
        3,
        "Data 2: lost, resent, resent after the lost Ack of Done"
    );
    assert_eq!(sim.table.stats().unknown_session, 0);
}

#[test]
fn download_whose_ack_of_accept_is_lost_completes_without_a_second_accept() {
    // Before the client proves its address the server sends one Accept per request and
    // nothing on a timer; the client's Ack 0, repeated on its own timer, is the proof, so
    // the download goes on without the server ever repeating its Accept.
    let mut sim = Sim::new(19, lan());
    let client = common::client_addr(0);
    sim.set_hook(Box::new(move |s: &Sent| {
        if s.from == client && s.kind == Some(Kind::Ack) && s.nth_of_kind == 0 {
            Fate::Drop
        } else {
            Fate::Link
        }
    }));
    let (c, bytes) = download(&mut sim, 3 * CHUNK);
    sim.run();
    assert_eq!(sim.hooked, 1);
    assert_eq!(
        sim.sends(SERVER, Kind::Accept).count(),
        1,
        "{}",
        sim.transcript(0)
    );
    assert_downloaded(&sim, c, &bytes);
    assert!(
        sim.elapsed() < Duration::from_secs(2),
        "{}",
        sim.transcript(0)
    );
}

#[test]
fn client_ended_by_an_error_has_no_deadline() {
    // A finished endpoint must not report a deadline: a driver waiting on a stale one
    // would spin.
    let mut sim = Sim::new(23, lan());
    let c = sim.put("err.bin", random_bytes(23, 20 * CHUNK), false);
    let client = sim.clients[c].addr;
    assert!(sim.run_until(10_000, |s| s.sends(client, Kind::Data).count() >= 5));
    let session = sim.sends(client, Kind::Data).next().unwrap().session;
    let mut buf = vec![0u8; 256];
    let n = Message::Error {
        session,
        code: ErrorCode::Io,
        text: b"disk full",
    }
    .encode(&mut buf);
    sim.inject(SERVER, client, buf[..n].to_vec(), Duration::ZERO);
    assert!(sim.step());
    assert!(matches!(
        sim.outcome(c),
        Some(Outcome::Failed(Failure::Peer {
            code: ErrorCode::Io,
            ..
        }))
    ));
    assert!(sim.clients[c].session.is_finished());
    assert_eq!(sim.clients[c].session.poll_timeout(), None);
}

#[test]
fn version_byte_flip_on_an_ack_does_not_end_the_download() {
    let mut sim = Sim::new(20, lan());
    let client = common::client_addr(0);
    let mut flipped = false;
    sim.set_hook(Box::new(move |s: &Sent| {
        if !flipped && s.from == client && s.kind == Some(Kind::Ack) && s.seq == 2 {
            flipped = true;
            // 1 becomes 3: looks like a future version, but the CRC says it is damage.
            Fate::Deliver(vec![(
                Duration::from_micros(500),
                Damage::FlipBit { bit: 2 * 8 + 6 },
            )])
        } else {
            Fate::Link
        }
    }));
    let (c, bytes) = download(&mut sim, 5 * CHUNK);
    sim.run();
    assert!(sim.hooked > 0);
    assert_downloaded(&sim, c, &bytes);
    assert_eq!(sim.table.stats().rejected_total(), 1);
    assert_eq!(sim.sends(SERVER, Kind::Error).count(), 0);
}

// ---------------------------------------------------------------------------------------
// Resumed downloads
// ---------------------------------------------------------------------------------------

#[test]
fn resumed_downloads_complete_byte_identical_under_loss() {
    // A prefix over 1 MiB is hashed by the server in several timer steps, after the client
    // has proven its address with Ack 0 and before Data 1.
    let file = random_bytes(77, (5 << 20) / 2);
    let held = 2 << 20;
    for seed in 0..12 {
        let mut sim = Sim::new(
            seed,
            Impairments {
                loss: 0.1,
                duplicate: 0.05,
                reorder: 0.05,
                corrupt: 0.02,
                ..lan()
            },
        );
        sim.add_file("file.bin", file.clone());
        let c = sim.get_resumed("file.bin", &file[..held]);
        sim.run();
        assert_downloaded(&sim, c, &file);
        // Only the bytes after the resume point crossed the network.
        assert_eq!(sim.stats(c).bytes, (file.len() - held) as u64);
    }
}

#[test]
fn a_resume_from_a_wrong_prefix_fails_with_checksum_mismatch() {
    let mut sim = Sim::new(3, lan());
    let file = random_bytes(78, 100 * CHUNK);
    sim.add_file("file.bin", file.clone());
    let mut wrong = file[..40 * CHUNK].to_vec();
    wrong[7] ^= 1;
    let c = sim.get_resumed("file.bin", &wrong);
    sim.run();
    match sim.outcome(c) {
        Some(Outcome::Failed(failure)) => {
            assert_eq!(
                failure.code(),
                ErrorCode::ChecksumMismatch,
                "{}",
                sim.describe(c)
            )
        }
        other => panic!("expected a checksum failure, got {other:?}"),
    }
    assert!(!sim.received(c).1, "nothing may be committed");
}

#[test]
fn a_resume_past_the_end_is_restarted_by_the_server_and_refused_by_the_client() {
    let mut sim = Sim::new(4, lan());
    let file = random_bytes(79, 10 * CHUNK);
    sim.add_file("file.bin", file.clone());
    let mut longer = file.clone();
    longer.extend_from_slice(b"more than the server has");
    let c = sim.get_resumed("file.bin", &longer);
    sim.run();
    match sim.outcome(c) {
        Some(Outcome::Failed(failure)) => {
            assert_eq!(failure.code(), ErrorCode::Cancelled, "{}", sim.describe(c))
        }
        other => panic!("expected the client to refuse a restart at 0, got {other:?}"),
    }
    // The client closed the session the server opened, which ends at once.
    assert!(sim.table.is_empty());
}

// ---------------------------------------------------------------------------------------
// protocol.md gaps an independent implementation found (issue 9 §6)
// ---------------------------------------------------------------------------------------

#[test]
fn a_listing_chunk_shorter_than_the_chunk_size_fails_the_listing() {
    // §11: a listing's chunks follow §7.1 like a file's: all but the last exactly `chunk`.
    let mut sim = Sim::new(30, lan());
    for i in 0..200 {
        sim.add_file(&format!("file-{i:03}.dat"), vec![0; i]);
    }
    sim.set_hook(drop_nth(SERVER, Kind::Data, 0));
    let c = sim.list();
    let client = sim.clients[c].addr;
    assert!(sim.run_until(1_000, |s| s.sends(SERVER, Kind::Data).count() == 1));
    let session = sim.sends(SERVER, Kind::Data).next().unwrap().session;
    let mut buf = vec![0u8; 2048];
    let n = Message::Data {
        session,
        seq: 1,
        payload: &[0; 100],
    }
    .encode(&mut buf);
    sim.inject(SERVER, client, buf[..n].to_vec(), Duration::from_micros(10));
    sim.run();
    match sim.outcome(c) {
        Some(Outcome::Failed(Failure::Local { code, text })) => {
            assert_eq!(code, ErrorCode::BadRequest, "{text}");
            assert!(text.contains("chunk 1 has 100 bytes"), "{text}");
        }
        other => panic!("expected the listing to fail, got {other:?}"),
    }
    assert!(!sim.received(c).1);
}

#[test]
fn transfers_survive_timers_that_fire_late() {
    // §9.4: timers fire up to TIMER_SLACK (10 ms) late on a loaded machine; every margin of
    // the protocol (the 20 ms linger above all) allows it.
    for seed in 0..30 {
        for direction in [Direction::Download, Direction::Upload] {
            let mut sim = Sim::new(seed, sweep_impairments(seed, 0.1));
            sim.timer_slack = Duration::from_millis(10);
            let bytes = random_bytes(seed, 30_000);
            let c = match direction {
                Direction::Download => {
                    sim.add_file("late.bin", bytes.clone());
                    sim.get("late.bin")
                }
                Direction::Upload => sim.put("late.bin", bytes.clone(), false),
            };
            sim.run();
            match direction {
                Direction::Download => assert_downloaded(&sim, c, &bytes),
                Direction::Upload => assert_uploaded(&sim, c, "late.bin", &bytes),
            }
        }
    }
}

#[test]
fn a_second_accept_for_the_same_request_is_closed_and_ignored() {
    // §6.2: the first Accept for a token opens the session; another one naming another
    // session (a duplicate the server opened) is answered with one Error Cancelled, so that
    // session stops, and changes nothing else.
    let mut sim = Sim::new(31, lan());
    let (c, bytes) = download(&mut sim, 20 * CHUNK);
    let client = sim.clients[c].addr;
    assert!(sim.run_until(10_000, |s| s.sends(SERVER, Kind::Data).count() >= 3));
    let accept = sim.sends(SERVER, Kind::Accept).next().unwrap().clone();
    let token = 0x7000_0001;
    let Ok(Message::Accept { session, .. }) = Message::decode(&accept.bytes) else {
        unreachable!()
    };
    let other = session ^ 0x0F0F_0F0F;
    let mut buf = vec![0u8; 256];
    for (id, after) in [(other, 10), (session, 20), (other, 30)] {
        let n = Message::Accept {
            session: id,
            token,
            chunk: DEFAULT_CHUNK,
            window: 1,
            size: bytes.len() as u64,
            offset: 0,
        }
        .encode(&mut buf);
        sim.inject(
            SERVER,
            client,
            buf[..n].to_vec(),
            Duration::from_micros(after),
        );
    }
    sim.run();
    assert_downloaded(&sim, c, &bytes);
    let closes: Vec<_> = sim
        .sends(client, Kind::Error)
        .map(|s| Message::decode(&s.bytes).unwrap())
        .collect();
    assert_eq!(closes.len(), 2, "one Error per stray Accept: {closes:?}");
    for close in closes {
        assert!(matches!(
            close,
            Message::Error { session: s, code: ErrorCode::Cancelled, .. } if s == other
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Windows (protocol.md §20)
// ---------------------------------------------------------------------------------------

/// The version byte of every datagram `from` sent to `to`, after its first `skip`.
fn versions(sim: &Sim, from: std::net::SocketAddr, skip: usize) -> Vec<u8> {
    sim.sent
        .iter()
        .filter(|s| s.from == from && !s.injected)
        .skip(skip)
        .map(|s| s.bytes[2])
        .collect()
}

#[test]
fn windowed_transfers_of_every_edge_size_are_byte_identical_and_need_no_retransmission() {
    for window in [2u16, 8, 64] {
        for len in SIZES {
            let mut sim = Sim::new(40, lan());
            sim.client_config.window = window;
            let (c, bytes) = download(&mut sim, len);
            sim.run();
            assert_downloaded(&sim, c, &bytes);
            assert_server_clean(&sim);
            assert_eq!(sim.sends(SERVER, Kind::Data).count() as u64, chunks(len));

            let mut sim = Sim::new(41, lan());
            sim.client_config.window = window;
            let bytes = random_bytes(len as u64 + 9, len);
            let c = sim.put("up.bin", bytes.clone(), false);
            sim.run();
            assert_uploaded(&sim, c, "up.bin", &bytes);
            assert_server_clean(&sim);
            assert_eq!(
                sim.stats(c).retransmitted,
                0,
                "window {window}, {len} bytes"
            );
        }
    }
}

#[test]
fn a_windowed_listing_spans_several_chunks() {
    let mut sim = Sim::new(42, lan());
    sim.client_config.window = 16;
    for i in 0..300 {
        sim.add_file(&format!("file-{i:03}.dat"), vec![0; i]);
    }
    let c = sim.list();
    sim.run();
    assert_eq!(sim.outcome(c), Some(Outcome::Complete));
    let entries = listing::decode(&sim.received(c).0).expect("listing parses");
    assert_eq!(entries.len(), 300);
}

#[test]
fn a_windowed_download_is_faster_than_stop_and_wait_by_about_the_window() {
    // 1 ms of round trip, 200 chunks: stop-and-wait needs ~200 round trips, window 16 ~13.
    let time = |window| {
        let mut sim = Sim::new(43, lan());
        sim.client_config.window = window;
        let c = downloaded(&mut sim, 200 * CHUNK);
        sim.clients[c].ended.unwrap()
    };
    let (one, sixteen) = (time(1), time(16));
    assert!(one > Duration::from_millis(200), "{one:?}");
    assert!(
        sixteen * 10 < one,
        "window 16 took {sixteen:?}, stop-and-wait {one:?}"
    );
}

#[test]
fn a_version_1_request_gets_a_version_1_session_from_a_windowed_server() {
    // The bytes of protocol.md §18.2, from a peer that knows nothing of windows.
    const GET: [u8; 37] = [
        0x55, 0x46, 0x01, 0x02, 0x00, 0x00, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x0f, 0x05,
        0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0x61, 0x2e, 0x74, 0x78, 0x74, 0xe4, 0xba, 0x44, 0xe8,
    ];
    let mut sim = Sim::new(44, lan());
    sim.add_file("a.txt", random_bytes(44, 1000));
    let old = "10.0.7.7:4444".parse().unwrap();
    sim.inject(old, SERVER, GET.to_vec(), Duration::ZERO);
    assert!(sim.run_until(100, |s| !s.strays.is_empty()));
    let (to, accept) = &sim.strays[0];
    assert_eq!(*to, old);
    // The Accept of §18.3 but for its session id: version 1, 22-byte payload, no window.
    assert_eq!(accept.len(), 44);
    assert_eq!(&accept[..4], &[0x55, 0x46, 0x01, 0x04]);
    assert_eq!(
        &accept[16..40],
        &[
            0x00, 0x16, 0x00, 0x00, 0xbe, 0xef, 0x05, 0x96, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0,
            0, 0, 0, 0, 0
        ]
    );
}

#[test]
fn a_windowed_client_falls_back_to_stop_and_wait_against_a_version_1_server() {
    for direction in [Direction::Download, Direction::Upload] {
        let mut sim = Sim::new(45, lan());
        sim.version_1_server = true;
        sim.client_config.window = 32;
        let bytes = random_bytes(45, 10 * CHUNK);
        let c = match direction {
            Direction::Download => {
                sim.add_file("old.bin", bytes.clone());
                sim.get("old.bin")
            }
            Direction::Upload => sim.put("old.bin", bytes.clone(), false),
        };
        let client = sim.clients[c].addr;
        sim.run();
        match direction {
            Direction::Download => assert_downloaded(&sim, c, &bytes),
            Direction::Upload => assert_uploaded(&sim, c, "old.bin", &bytes),
        }
        // One windowed request, refused; everything after it is version 1.
        assert_eq!(versions(&sim, client, 0)[0], 2);
        assert!(versions(&sim, client, 1).iter().all(|&v| v == 1));
        assert!(versions(&sim, SERVER, 0).iter().all(|&v| v == 1));
        let refusal = sim.sends(SERVER, Kind::Error).next().expect("the refusal");
        assert_eq!(refusal.index, 1, "{}", sim.transcript(0));
    }
}

#[test]
fn a_server_granting_window_1_answers_in_version_1() {
    let config = Config {
        window: 1,
        ..Config::for_server()
    };
    let mut sim = Sim::with_server(46, lan(), config, Default::default());
    sim.client_config.window = 16;
    let (c, bytes) = download(&mut sim, 10 * CHUNK);
    let client = sim.clients[c].addr;
    sim.run();
    assert_downloaded(&sim, c, &bytes);
    assert_eq!(versions(&sim, client, 0)[0], 2, "the request asks for 16");
    assert!(versions(&sim, client, 1).iter().all(|&v| v == 1));
    assert!(versions(&sim, SERVER, 0).iter().all(|&v| v == 1));
}

#[test]
fn a_windowed_session_sends_windowed_acks_and_version_1_data() {
    let mut sim = Sim::new(47, lan());
    sim.client_config.window = 8;
    let (c, bytes) = download(&mut sim, 20 * CHUNK);
    let client = sim.clients[c].addr;
    sim.run();
    assert_downloaded(&sim, c, &bytes);
    assert!(
        versions(&sim, client, 0).iter().all(|&v| v == 2),
        "request and acks"
    );
    for s in sim.sent.iter().filter(|s| s.from == SERVER) {
        let want = if s.kind == Some(Kind::Accept) { 2 } else { 1 };
        assert_eq!(s.bytes[2], want, "{:?}", s.kind);
    }
}

#[test]
fn a_client_refuses_a_window_it_did_not_ask_for() {
    let mut sim = Sim::new(48, lan());
    sim.client_config.window = 8;
    sim.set_hook(drop_nth(SERVER, Kind::Accept, 0));
    sim.add_file("f", random_bytes(48, 100));
    let c = sim.get("f");
    let client = sim.clients[c].addr;
    let mut buf = vec![0u8; 256];
    let n = Message::Accept {
        session: 77,
        token: 0x7000_0001,
        chunk: DEFAULT_CHUNK,
        window: 64,
        size: 100,
        offset: 0,
    }
    .encode(&mut buf);
    sim.inject(
        SERVER,
        client,
        buf[..n].to_vec(),
        Duration::from_micros(100),
    );
    assert!(sim.run_until(100, |s| s.outcome(c).is_some()));
    match sim.outcome(c) {
        Some(Outcome::Failed(Failure::Local { code, text })) => {
            assert_eq!(code, ErrorCode::BadRequest);
            assert!(text.contains("window 64"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    sim.step();
    let close = sim
        .sends(client, Kind::Error)
        .next()
        .expect("the session is closed");
    assert_eq!(close.session, 77);
}

#[test]
fn the_granted_window_shrinks_for_large_chunks() {
    let server = Config {
        window: 256,
        ..Config::for_server()
    };
    assert_eq!(server.negotiate_window(256, 1430), 256);
    assert_eq!(server.negotiate_window(256, 65485), 64);
    assert_eq!(server.negotiate_window(256, 16384), 255);
    assert_eq!(Config::for_server().negotiate_window(256, 1430), 64);
    assert_eq!(Config::for_server().negotiate_window(0, 1430), 1);
    let mut sim = Sim::with_server(49, lan(), server, Default::default());
    sim.client_config.window = 256;
    sim.client_config.chunk = 65485;
    let (c, bytes) = download(&mut sim, 1 << 20);
    sim.run();
    assert_downloaded(&sim, c, &bytes);
    let accept = sim.sends(SERVER, Kind::Accept).next().unwrap();
    match Message::decode(&accept.bytes) {
        Ok(Message::Accept { window, chunk, .. }) => assert_eq!((window, chunk), (64, 65485)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn windowed_resumed_downloads_complete_byte_identical_under_loss() {
    let file = random_bytes(50, 3 << 20);
    let held = (3 << 20) / 2;
    for seed in 0..6 {
        let mut sim = Sim::new(seed, sweep_impairments(seed, 0.05));
        sim.client_config.window = 32;
        sim.add_file("file.bin", file.clone());
        let c = sim.get_resumed("file.bin", &file[..held]);
        sim.run();
        assert_downloaded(&sim, c, &file);
        assert_eq!(sim.stats(c).bytes, (file.len() - held) as u64);
    }
}

// ---------------------------------------------------------------------------------------
// Congestion control (protocol.md §21), through a simulated bottleneck
// ---------------------------------------------------------------------------------------

/// 10 MB/s: a 1452-byte datagram takes 145 µs to cross.
const RATE: u64 = 10_000_000;

/// File bytes per second of client `c`, from its start to its end.
fn goodput(sim: &Sim, c: usize, len: usize) -> f64 {
    let took = sim.clients[c].ended.unwrap() - sim.clients[c].started;
    len as f64 / took.as_secs_f64()
}

/// Jain's fairness index of `rates`: 1 when all are equal, 1/n when one has everything.
fn jain(rates: &[f64]) -> f64 {
    let sum: f64 = rates.iter().sum();
    let squares: f64 = rates.iter().map(|r| r * r).sum();
    sum * sum / (rates.len() as f64 * squares)
}

#[test]
fn a_window_256_transfer_fills_a_bottleneck_and_causes_little_loss() {
    for direction in [Direction::Upload, Direction::Download] {
        let server = Config {
            window: 256,
            ..Config::for_server()
        };
        let mut sim = Sim::with_server(60, lan(), server, Default::default());
        sim.client_config.window = 256;
        let bottleneck = common::bottleneck(RATE, 32);
        let len = 8 << 20;
        let bytes = random_bytes(60, len);
        let c = match direction {
            Direction::Upload => {
                sim.bottleneck_up = Some(bottleneck);
                sim.put("big", bytes.clone(), false)
            }
            Direction::Download => {
                sim.bottleneck_down = Some(bottleneck);
                sim.add_file("big", bytes.clone());
                sim.get("big")
            }
        };
        sim.run();
        match direction {
            Direction::Upload => assert_uploaded(&sim, c, "big", &bytes),
            Direction::Download => assert_downloaded(&sim, c, &bytes),
        }
        let b = sim
            .bottleneck_up
            .as_ref()
            .or(sim.bottleneck_down.as_ref())
            .unwrap()
            .stats();
        let share = goodput(&sim, c, len) / RATE as f64;
        let loss = b.queue_dropped as f64 / b.offered as f64;
        assert!(share >= 0.85, "{direction:?}: {share:.3} of the bottleneck");
        assert!(
            loss <= 0.02,
            "{direction:?}: {:.2} % dropped at the queue",
            loss * 100.0
        );
    }
}

#[test]
fn four_windowed_transfers_share_a_bottleneck_fairly() {
    let mut sim = Sim::with_server(
        61,
        lan(),
        Config {
            window: 256,
            ..Config::for_server()
        },
        Default::default(),
    );
    sim.client_config.window = 256;
    sim.bottleneck_up = Some(common::bottleneck(RATE, 32));
    let len = 4 << 20;
    for i in 0..4 {
        sim.put(&format!("up-{i}"), random_bytes(61 + i, len), false);
    }
    // Shares while all four run: the bytes each moved when the first finished.
    assert!(sim.run_until(5_000_000, |s| (0..4).any(|c| s.outcome(c).is_some())));
    let moved: Vec<f64> = (0..4)
        .map(|c| sim.clients[c].session.progress().0 as f64)
        .collect();
    assert!(jain(&moved) >= 0.9, "Jain {:.3} of {moved:?}", jain(&moved));
    sim.run();
    for i in 0..4 {
        assert_uploaded(
            &sim,
            i,
            &format!("up-{i}"),
            &random_bytes(61 + i as u64, len),
        );
    }
    let b = sim.bottleneck_up.as_ref().unwrap().stats();
    assert!(b.queue_dropped * 50 <= b.offered, "{}", b.summary());
    assert!(
        b.dropped * 50 <= b.forwarded,
        "{} dropped of {}",
        b.dropped,
        b.forwarded
    );
}

#[test]
fn random_loss_keeps_half_the_loss_free_goodput() {
    // A 20 MB/s path with a deep queue (nothing is dropped there) that loses 5 % at random
    // each way: a loss-based window would collapse to a few chunks (issue 10 §2: a window-64
    // transfer keeps at least half of its own loss-free goodput). Several seeds: the figure
    // is the goodput, whatever the window happens to be at the end.
    let run = |seed, loss| {
        let mut sim = Sim::new(seed, Impairments { loss, ..lan() });
        sim.client_config.window = 64;
        sim.bottleneck_up = Some(common::bottleneck(2 * RATE, 1000));
        let len = 8 << 20;
        let bytes = random_bytes(seed, len);
        let c = sim.put("lossy", bytes.clone(), false);
        sim.run();
        assert_uploaded(&sim, c, "lossy", &bytes);
        (goodput(&sim, c, len), sim.stats(c))
    };
    for seed in [62, 63, 64] {
        let (clean, _) = run(seed, 0.0);
        let (lossy, stats) = run(seed, 0.05);
        eprintln!("seed {seed}: {:.2} of the loss-free goodput", lossy / clean);
        assert!(
            lossy >= 0.5 * clean,
            "seed {seed}: {lossy:.0} B/s against {clean:.0} B/s: {stats:?}"
        );
    }
}

#[test]
fn a_window_shrinks_under_a_bottleneck_and_regrows_when_it_clears() {
    let mut sim = Sim::with_server(
        63,
        lan(),
        Config {
            window: 256,
            ..Config::for_server()
        },
        Default::default(),
    );
    sim.client_config.window = 256;
    sim.bottleneck_up = Some(common::bottleneck(RATE, 64));
    let long = sim.put("long", random_bytes(63, 24 << 20), false);
    let at = |sim: &mut Sim, t: Duration| {
        assert!(sim.run_until(10_000_000, |s| s.elapsed() >= t));
        sim.stats(long).cwnd
    };
    let alone = at(&mut sim, Duration::from_millis(400));
    for i in 0..3 {
        sim.put(&format!("short-{i}"), random_bytes(64 + i, 2 << 20), false);
    }
    let shared = at(&mut sim, Duration::from_millis(900));
    assert!(sim.run_until(10_000_000, |s| (1..4).all(|c| s.outcome(c).is_some())));
    let later = sim.elapsed() + Duration::from_millis(300);
    let regrown = at(&mut sim, later);
    assert!(shared * 10 <= alone * 6, "alone {alone}, shared {shared}");
    assert!(
        regrown * 10 >= alone * 8,
        "alone {alone}, regrown {regrown}"
    );
    sim.run();
    assert_eq!(sim.outcome(long), Some(Outcome::Complete));
    // The statistics say the same: the window's time-weighted mean lies between the shared
    // window and the lone one, and the others' arrival shows as decreases by the delay
    // signal, not by loss (the queue never overflowed).
    let window = sim.stats(long).window;
    let mean = window
        .mean_cwnd()
        .expect("a windowed sender integrates its window");
    assert!(
        mean >= shared as f64 && mean <= window.max_cwnd as f64,
        "mean {mean}, shared {shared}, max {}",
        window.max_cwnd
    );
    assert!(window.max_cwnd >= alone && window.max_cwnd <= 256);
    assert!(
        window.cut_backlog > 0 && window.cut_congestion == 0,
        "{window:?}"
    );
    assert!(window.rounds > 0 && window.rounds_held <= window.rounds);
}

#[test]
fn a_slow_start_ended_by_a_delay_spike_resumes_and_fills_the_path() {
    // A 1 ms round trip with room for every window: the server's Acks of slow start's
    // third round (Acks 12..28 of an upload) come 70 µs late, the one-off stall of a
    // descheduled end. (More than the timer's margin on this jitter-free path would fire
    // it: a loss, after which the exit stands.) Slow start ends on the stall at the rate it
    // seemed to deliver, about 23; two rounds with no queue then show the exit spurious and
    // doubling resumes, so the window spends the transfer near the 64 granted. Without the
    // rule it climbs back one message per round trip: a mean of 55, not 62.
    let server = Config {
        window: 64,
        ..Config::for_server()
    };
    let mut sim = Sim::with_server(65, lan(), server, Default::default());
    sim.client_config.window = 64;
    sim.set_hook(Box::new(|s: &Sent| {
        if s.from == SERVER && s.kind == Some(Kind::Ack) && (12..28).contains(&s.nth_of_kind) {
            Fate::Deliver(vec![(Duration::from_micros(570), Damage::None)])
        } else {
            Fate::Link
        }
    }));
    let len = 8 << 20;
    let bytes = random_bytes(65, len);
    let c = sim.put("spike", bytes.clone(), false);
    sim.run();
    assert!(sim.hooked > 0, "the spike never happened");
    assert_uploaded(&sim, c, "spike", &bytes);
    let window = sim.stats(c).window;
    let mean = window.mean_cwnd().expect("a windowed sender");
    assert!(
        window.cut_backlog >= 1,
        "the spike did not end slow start: {window:?}"
    );
    assert!(window.resumed >= 1, "{window:?}");
    assert!(mean >= 60.0, "mean window {mean:.1}: {window:?}");
    assert_eq!(window.cut_congestion + window.cut_timeout, 0, "{window:?}");
}

#[test]
fn a_windowed_receiver_acknowledges_about_every_second_chunk_both_ways() {
    // A loss-free LAN, windows 7 and 64, 1 MiB each way: each receiver sends about one Ack
    // per two chunks (protocol.md §20.3), nothing is sent twice, and both copies are whole.
    // Stop-and-wait, beside it, still acknowledges every chunk.
    let len = 1 << 20;
    let n = chunks(len);
    for window in [1u16, 7, 64] {
        let server = Config {
            window,
            ..Config::for_server()
        };
        let mut sim = Sim::with_server(7, lan(), server, Default::default());
        sim.client_config.window = window;
        let c = downloaded(&mut sim, len);
        let acks = sim.sends(common::client_addr(c), Kind::Ack).count() as u64;
        let bytes = random_bytes(8, len);
        let u = sim.put("up.bin", bytes.clone(), false);
        sim.run();
        assert_uploaded(&sim, u, "up.bin", &bytes);
        let server_acks = sim.sends(SERVER, Kind::Ack).count() as u64;
        // Ack 0 and the Ack of Done come on top of the chunks' (and the upload's Accept is
        // not an Ack).
        if window == 1 {
            assert!(acks >= n + 2, "{acks} Acks for {n} chunks");
            assert!(server_acks > n, "{server_acks} Acks for {n} chunks");
        } else {
            assert!(acks <= n / 2 + n / 8, "{acks} Acks for {n} chunks");
            assert!(
                server_acks <= n / 2 + n / 8,
                "{server_acks} Acks for {n} chunks"
            );
        }
        // Holding Acks back never makes a sender resend: no chunk goes twice on this
        // loss-free path, at an odd window as at an even one. (The hold's own timer, which
        // an ack-clocked stream with no pauses never needs, is pinned by the transcript
        // `windowed_receiver_acks_every_second_chunk_and_holds_one_ack_back_a_quarter_round_trip`.)
        let data = sim.sends(SERVER, Kind::Data).count() as u64;
        let up = sim.sends(common::client_addr(u), Kind::Data).count() as u64;
        assert_eq!((data, up), (n, n), "window {window}: Data sent down and up");
    }
}

/// The most Data datagrams the server sent to `client` in any millisecond (about one round
/// trip of `lan()`: about its window) that starts within `from..to` of virtual time.
fn data_per_ms(sim: &Sim, client: usize, from: Duration, to: Duration) -> usize {
    let addr = common::client_addr(client);
    let times: Vec<Duration> = sim
        .sends(SERVER, Kind::Data)
        .filter(|s| s.to == addr)
        .map(|s| s.at)
        .collect();
    times
        .iter()
        .filter(|&&t| t >= from && t < to)
        .map(|&t| {
            times
                .iter()
                .filter(|&&u| u >= t && u < t + Duration::from_millis(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_busy_loop_holds_a_windowed_download_to_its_share_and_gives_it_back() {
    // Eight stop-and-wait downloads run when a window-64 one opens, and the test plays the
    // driver of a loop that stays busy: every 20 ms it reports 15 ms of work (protocol.md
    // §21.4). While the eight run the window-64 download is one of nine sessions heard from,
    // held to 64 / 9 = 7 in flight; once they are done it is the only one, and it gets its
    // window back. Reporting room instead, it is never held. Every copy is whole.
    let server = Config {
        window: 64,
        ..Config::for_server()
    };
    let period = Duration::from_millis(20);
    for busy in [true, false] {
        let mut sim = Sim::with_server(11, lan(), server.clone(), Default::default());
        let small = random_bytes(1, 512 << 10);
        let big = random_bytes(2, 16 << 20);
        sim.add_file("small", small.clone());
        sim.add_file("big", big.clone());
        let smalls: Vec<usize> = (0..8).map(|_| sim.get("small")).collect();
        assert!(sim.run_until(1_000_000, |s| s.table.len() == 8));
        sim.client_config.window = 64;
        let c = sim.get("big");
        let mut smalls_done = None;
        let mut next = sim.elapsed() + period;
        while sim.outcome(c).is_none() {
            let at = next;
            sim.run_until(10_000_000, |s| s.elapsed() >= at);
            let work = if busy { period * 3 / 4 } else { period / 4 };
            sim.table.observe_load(work, period);
            if smalls_done.is_none() && smalls.iter().all(|&i| sim.outcome(i).is_some()) {
                smalls_done = Some(sim.elapsed());
            }
            next += period;
        }
        sim.run();
        for &s in &smalls {
            assert_downloaded(&sim, s, &small);
        }
        assert_downloaded(&sim, c, &big);
        let from = 2 * period + Duration::from_millis(5);
        if busy {
            let done = smalls_done.expect("the held download outlasts the small ones");
            // Until shortly before the small ones end (the report that finds them gone
            // comes a period or two after their last Ack), then once alone.
            let held = data_per_ms(&sim, c, from, done - 2 * period);
            let after = data_per_ms(&sim, c, done + 2 * period, sim.elapsed());
            assert!(held <= 9, "{held} Data a millisecond while shared");
            assert!(after >= 30, "{after} Data a millisecond once alone");
        } else {
            let free = data_per_ms(&sim, c, from, sim.elapsed());
            assert!(free >= 30, "{free} Data a millisecond with room");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Recovery that does not depend on luck (issue 10 §4)
// ---------------------------------------------------------------------------------------

#[test]
fn a_single_loss_costs_one_timeout_not_a_backoff_ceiling() {
    // Stop-and-wait on a 1 ms round trip, Data 7 lost once: the longest silence either end
    // sees is about one retransmission timeout of the measured round trip.
    for window in [1u16, 8] {
        let mut sim = Sim::new(70, lan());
        sim.client_config.window = window;
        sim.set_hook(drop_nth(SERVER, Kind::Data, 6));
        let c = downloaded(&mut sim, 50 * CHUNK);
        let stats = sim.stats(c);
        let srtt = Duration::from_millis(1);
        assert!(
            stats.longest_silence <= 4 * srtt,
            "window {window}: {:?} of silence after one loss: {stats:?}",
            stats.longest_silence
        );
    }
}

#[test]
fn at_ten_percent_loss_a_single_loss_never_costs_more_than_four_round_trips() {
    // Issue 10 §4: no silence on a live transfer longer than ~4 × SRTT + variance after a
    // single loss, whatever the seed (main's 250 ms backoff ceiling once made the same
    // seeds take 0.8 s or 7 s). Every wait of the client for something new in which exactly
    // one datagram (either way) was lost, after one without loss, stays within 4 round
    // trips of this 1 ms path (`Sim::single_loss_waits`).
    for window in [1u16, 8] {
        for seed in 0..10 {
            let mut sim = Sim::new(seed, Impairments { loss: 0.1, ..lan() });
            sim.client_config.window = window;
            let c = downloaded(&mut sim, 200 * CHUNK);
            let single = sim.single_loss_waits(c);
            let worst = single.iter().max().copied().unwrap_or_default();
            assert!(
                single.len() > 5,
                "seed {seed}: too few single losses to judge"
            );
            assert!(
                worst <= Duration::from_millis(4),
                "window {window}, seed {seed}: {worst:?} after a single loss; {}",
                sim.describe(c)
            );
            let silence = sim.stats(c).longest_silence;
            assert!(
                silence < Duration::from_millis(60),
                "seed {seed}: {silence:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// No spurious retransmissions (issue 10 §4)
// ---------------------------------------------------------------------------------------

/// A stop-and-wait download of `len` bytes over a 1 ms LAN whose client stalls (as on a
/// busy machine) now and then for up to `longest`; `loss` each way.
fn stalled_download(seed: u64, len: usize, longest: Duration, loss: f64) -> (Sim, usize) {
    let mut sim = Sim::new(seed, Impairments { loss, ..lan() });
    sim.set_hook(common::stalls(
        common::client_addr(0),
        seed,
        Duration::from_millis(50),
        longest,
        lan().delay,
    ));
    let c = downloaded(&mut sim, len);
    (sim, c)
}

#[test]
fn stalls_of_the_receiver_cause_almost_no_spurious_retransmissions() {
    // The client is descheduled every ~50 ms for up to 4 ms (four round trips): the timer
    // learns the stalls from the first few (their round trips, and second Acks of needless
    // retransmissions) and waits them out: at most 0.1 % of the Data is sent twice.
    for seed in [1, 2, 3] {
        let len = 8 << 20;
        let (sim, c) = stalled_download(seed, len, Duration::from_millis(4), 0.0);
        let server = sim.sends(SERVER, Kind::Data).count() as u64;
        let resent = server - chunks(len);
        eprintln!("seed {seed}: {resent} of {} chunks sent twice", chunks(len));
        assert!(
            resent * 1000 <= chunks(len),
            "seed {seed}: {resent} of {} chunks sent twice: {}",
            chunks(len),
            sim.describe(c)
        );
    }
}

#[test]
fn on_a_quiet_path_a_loss_costs_at_most_one_extra_round_trip() {
    // 1 % loss each way on a 1 ms LAN with up to 100 µs of jitter each way, nothing stalls:
    // the timer stays tight. A lost datagram costs its sender a timeout (RTO) where the
    // Ack would have taken a round trip: recovery is the RTO less that round trip, and it
    // stays within one more round trip (RTO ≤ 2 × SRTT), so a wait with one loss in it
    // lasts at most 3 × SRTT: the round trip of the message, and two of the timer.
    for seed in 0..5 {
        let mut sim = Sim::new(
            seed,
            Impairments {
                loss: 0.01,
                jitter: Duration::from_micros(100),
                ..lan()
            },
        );
        let c = downloaded(&mut sim, 2000 * CHUNK);
        // RFC 6298's first timeouts are 3 round trips: judged once 20 have gone by.
        let worst = sim
            .single_loss_waits_after(c, Duration::from_millis(20))
            .into_iter()
            .max()
            .unwrap_or_default();
        let resent = sim.sends(SERVER, Kind::Data).count() as u64 - chunks(2000 * CHUNK);
        let lost = sim.link_stats(c).1.dropped;
        eprintln!("seed {seed}: worst single-loss wait {worst:?}; {resent} resent, {lost} lost");
        let srtt = sim.stats(c).srtt.expect("measured");
        assert!(
            worst <= srtt * 3,
            "seed {seed}: {worst:?} with SRTT {srtt:?}; {}",
            sim.describe(c)
        );
    }
}

#[test]
fn duplicated_acks_after_retransmissions_do_not_ratchet_the_timer_up() {
    // 5 % loss and 5 % duplication each way: a duplicated Ack of a retransmitted message looks
    // like the receiver's second Ack of a spurious retransmission. Taken as a spike it would
    // raise the timeout by the previous timeout each time, up to the 250 ms ceiling (the
    // proxy suite once took 40 s for 1 MiB so); as an inferred sample it fades.
    for seed in 0..5 {
        let mut sim = Sim::new(
            seed,
            Impairments {
                loss: 0.05,
                duplicate: 0.05,
                ..lan()
            },
        );
        let c = downloaded(&mut sim, 1000 * CHUNK);
        let took = sim.clients[c].ended.expect("ended") - sim.clients[c].started;
        let silence = sim.stats(c).longest_silence;
        eprintln!("seed {seed}: {took:?}, longest silence {silence:?}");
        assert!(
            took < Duration::from_secs(3),
            "seed {seed}: {took:?}: {}",
            sim.describe(c)
        );
        assert!(
            silence < Duration::from_millis(30),
            "seed {seed}: {silence:?}"
        );
    }
}

#[test]
fn selective_repeat_at_five_percent_loss_resends_at_most_twice_the_lost_chunks() {
    // Issue 10 §5: a window-64 download at 5 % loss each way resends what was lost (and now
    // and then a chunk whose Acks were all lost), never a window: resent ≤ 2 × lost.
    for seed in 0..3 {
        let mut sim = Sim::new(
            seed,
            Impairments {
                loss: 0.05,
                ..lan()
            },
        );
        sim.client_config.window = 64;
        let len = 2000 * CHUNK;
        downloaded(&mut sim, len);
        let arrived: std::collections::HashSet<usize> =
            sim.arrivals.iter().map(|a| a.sent).collect();
        let data: Vec<_> = sim.sends(SERVER, Kind::Data).collect();
        let lost = data.iter().filter(|s| !arrived.contains(&s.index)).count() as u64;
        let resent = data.len() as u64 - chunks(len);
        eprintln!("seed {seed}: {resent} resent for {lost} lost chunks");
        assert!(lost > 50, "seed {seed}: only {lost} lost");
        assert!(
            resent <= 2 * lost,
            "seed {seed}: {resent} resent for {lost} lost"
        );
    }
}
