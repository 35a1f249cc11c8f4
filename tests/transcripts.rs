//! Transcripts of each state machine on its own: the sender, the receiver and the RTT
//! estimator, fed one datagram (or timer) at a time at explicit times, with the exact
//! datagrams and deadline that must come out (smoltcp's `recv!` / `send!` tests). Whole
//! transfers only show that the rules add up; these pin each rule where it lives.
//!
//! Unless a test says otherwise the configuration is the default (initial RTO 100 ms, floor
//! 100 µs, ceiling 250 ms, give-up 5 s, shortest linger 20 ms) and the file is `abcdefghij`
//! in chunks of 4 bytes: Data 1 `abcd`, Data 2 `efgh`, Data 3 `ij`, Done 4.

mod common;

use common::transcript::{
    accept, accept_windowed, ack, data, done, plan, sack, Script, SESSION, TOKEN,
};
use std::time::Duration;
use udpft::proto::rtt::Rtt;
use udpft::proto::{Config, ErrorCode, Failure, Message, Opening, Outcome};

const FILE: &[u8] = b"abcdefghij";
const CHUNK: u16 = 4;

fn config() -> Config {
    Config::default()
}

/// A stop-and-wait download's sender whose Data 1 (sent at 0.5 ms, after the Accept's
/// 500 µs round trip) was resent by its timer at 2 ms.
fn retransmitted_data_1() -> Script {
    let mut s = download_sender();
    s.expect(0, &[accept(CHUNK, 10)]);
    s.recv(500, ack(0));
    s.expect(500, &[data(1, b"abcd")]);
    s.fire(2_000);
    s.expect(2_000, &[data(1, b"abcd")]);
    s
}

/// The server's receiver of an upload of `FILE`'s size, stop-and-wait.
fn upload_receiver() -> Script {
    Script::receiver(
        &config(),
        plan(
            FILE.len() as u64,
            CHUNK,
            1,
            Opening::Accept { token: TOKEN },
        ),
    )
}

/// The server's sender of a download of `FILE`, stop-and-wait.
fn download_sender() -> Script {
    Script::sender(
        &config(),
        plan(
            FILE.len() as u64,
            CHUNK,
            1,
            Opening::Accept { token: TOKEN },
        ),
        FILE.to_vec(),
    )
}

/// The client's receiver of a download of `FILE`, stop-and-wait.
fn download_receiver() -> Script {
    Script::receiver(
        &config(),
        plan(FILE.len() as u64, CHUNK, 1, Opening::AckAccept),
    )
}

fn error(code: ErrorCode, text: &str) -> Message<'_> {
    Message::Error {
        session: SESSION,
        code,
        text: text.as_bytes(),
    }
}

// ---------------------------------------------------------------------------------------
// The sender
// ---------------------------------------------------------------------------------------

#[test]
fn sender_opens_with_the_accept_and_arms_the_initial_rto() {
    let mut s = download_sender();
    s.expect(0, &[accept(CHUNK, 10)]);
    s.expect_deadline(Some(100_000));
    s.expect_nothing(10);
}

#[test]
fn sender_moves_one_message_per_ack_and_ignores_every_other_ack() {
    let mut s = download_sender();
    s.expect(0, &[accept(CHUNK, 10)]);
    // Ack 0 after 500 µs: the first sample (SRTT 500, RTTVAR 250, RTO 1.5 ms).
    s.recv(500, ack(0));
    s.expect(500, &[data(1, b"abcd")]);
    s.expect_deadline(Some(2_000));
    // A duplicate of Ack 0, and an Ack of a message not yet sent: nothing, no timer change.
    s.recv(600, ack(0));
    s.recv(700, ack(3));
    s.expect_nothing(700);
    s.expect_deadline(Some(2_000));
    // Ack 1 after 500 µs (RTTVAR 187.5, RTO 1.25 ms).
    s.recv(1_000, ack(1));
    s.expect(1_000, &[data(2, b"efgh")]);
    s.expect_deadline(Some(2_250));
    s.recv(1_500, ack(2));
    s.expect(1_500, &[data(3, b"ij")]);
    s.recv(2_000, ack(3));
    s.expect(2_000, &[done(4, FILE)]);
    s.recv(2_500, ack(4));
    s.expect_nothing(2_500);
    assert_eq!(s.outcome(), Some(Outcome::Complete));
    s.expect_deadline(None);
    let stats = s.stats();
    assert_eq!(
        (stats.sent, stats.retransmitted, stats.duplicates),
        (5, 0, 2)
    );
    assert_eq!(stats.bytes, 10);
}

#[test]
fn sender_retransmits_only_on_its_timer_with_backoff_and_karn() {
    let mut s = download_sender();
    s.expect(0, &[accept(CHUNK, 10)]);
    s.recv(500, ack(0));
    s.expect(500, &[data(1, b"abcd")]);
    // Nothing until the timer (RTO 1.5 ms); then the same bytes, and the RTO doubles.
    s.expect_nothing(1_999);
    s.fire(1_999);
    s.expect_nothing(1_999);
    s.fire(2_000);
    s.expect(2_000, &[data(1, b"abcd")]);
    s.expect_deadline(Some(5_000));
    // The Ack of a message sent twice gives no sample (Karn; it comes a full round trip
    // after the retransmission, so it may answer either copy), but the message got through:
    // the next one starts from the estimate, RTO 1.5 ms, not the backed-off 3 ms (§9.1).
    s.recv(2_600, ack(1));
    s.expect(2_600, &[data(2, b"efgh")]);
    s.expect_deadline(Some(4_100));
    assert_eq!(s.stats().retransmitted, 1);
    assert_eq!(s.stats().srtt, Some(Duration::from_micros(500)));
}

#[test]
fn a_timeout_found_spurious_gives_up_its_backoff_and_widens_the_rto() {
    let mut s = retransmitted_data_1();
    // Ack 1 comes 100 µs after the retransmission, sooner than any round trip (500 µs): it
    // answers the first copy, which took 1.6 ms (Eifel). That is a sample: SRTT 637.5,
    // RTTVAR 462.5, a spike of 1.1 ms over the old SRTT, RTO = SRTT + 2 × spike = 2.8375 ms
    // (above SRTT + 4·RTTVAR = 2.4875 ms), and no backoff any more.
    s.recv(2_100, ack(1));
    s.expect(2_100, &[data(2, b"efgh")]);
    assert_eq!(s.stats().spurious, 1);
    assert_eq!(s.stats().srtt, Some(Duration::from_nanos(637_500)));
    s.expect_deadline(Some(2_100 + 2_837));
}

#[test]
fn a_second_ack_of_a_retransmitted_message_shows_the_timeout_was_spurious() {
    let mut s = retransmitted_data_1();
    // The receiver was stalled: both copies reach it, and it acknowledges each. The first Ack
    // (2.6 ms, a round trip after the retransmission: no proof by timing) moves on; the
    // second shows both copies arrived, so the first Ack answered the first copy, 2.1 ms
    // after it went out: a sample (SRTT 500 → 700, a spike of 1.6 ms), and nothing is sent.
    s.recv(2_600, ack(1));
    s.expect(2_600, &[data(2, b"efgh")]);
    assert_eq!(s.stats().spurious, 0);
    s.recv(2_700, ack(1));
    s.expect_nothing(2_700);
    assert_eq!(s.stats().spurious, 1);
    assert_eq!(s.stats().srtt, Some(us(700)));
    // A third copy of that Ack proves nothing new.
    s.recv(2_800, ack(1));
    s.expect_nothing(2_800);
    assert_eq!(s.stats().spurious, 1);
    // The stall is remembered as a spike: the next timer waits SRTT + 2 × spike (662.5 µs
    // + 2 × 1.598 ms, the spike decayed by 1/1024) instead of SRTT + 4 × RTTVAR (2.725 ms).
    s.recv(3_000, ack(2));
    s.expect(3_000, &[data(3, b"ij")]);
    s.expect_deadline(Some(3_000 + 3_859));
}

#[test]
fn after_the_path_duplicated_a_second_ack_teaches_the_timer_no_stall() {
    // Data 2 is retransmitted and both copies are acknowledged, on a clean path and on one
    // that earlier acknowledged Data 1 (sent once) twice: a path that duplicates may have
    // duplicated an Ack of the retransmission whose first copy was lost, so there the
    // second Ack enters SRTT and RTTVAR only, and the timer after it is RFC 6298's; on the
    // clean path it is a stall, remembered as a spike.
    let timer_after = |duplicated: bool| {
        let mut s = download_sender();
        s.expect(0, &[accept(CHUNK, 10)]);
        s.recv(500, ack(0));
        s.expect(500, &[data(1, b"abcd")]);
        s.recv(1_000, ack(1));
        s.expect(1_000, &[data(2, b"efgh")]);
        if duplicated {
            s.recv(1_050, ack(1));
            s.expect_nothing(1_050);
        }
        s.fire(2_250);
        s.expect(2_250, &[data(2, b"efgh")]);
        s.recv(3_100, ack(2));
        s.expect(3_100, &[data(3, b"ij")]);
        s.recv(3_150, ack(2));
        s.expect_nothing(3_150);
        assert_eq!(s.stats().spurious, 1);
        s.recv(3_500, ack(3));
        s.expect(3_500, &[done(4, FILE)]);
        s.half.poll_timeout().expect("armed") - s.at(3_500)
    };
    // The second Ack's sample is 2.1 ms (Data 2 at 1 ms, its first Ack at 3.1 ms), then
    // 400 µs. Clean: SRTT 700 → 662.5 µs, spike 1.6 ms (decayed by 1/1024): RTO =
    // 662.5 µs + 2 × 1.598 ms. Duplicating: SRTT + 4 × RTTVAR = 662.5 µs + 4 × 480.5 µs.
    assert_eq!(
        timer_after(false),
        Duration::from_nanos(662_500 + 2 * 1_598_438)
    );
    assert_eq!(
        timer_after(true),
        Duration::from_nanos(662_500 + 4 * 480_468)
    );
}

#[test]
fn sender_backs_off_to_the_ceiling_and_gives_up_after_the_timeout_telling_the_peer() {
    let mut s = download_sender();
    s.expect(0, &[accept(CHUNK, 10)]);
    // 100 ms, then 200 ms, then 250 ms (the ceiling) between tries.
    let mut at = 0;
    let mut tries = 1;
    for gap in [100_000, 200_000]
        .into_iter()
        .chain(std::iter::repeat(250_000))
    {
        at += gap;
        s.fire(at);
        if at >= 5_000_000 {
            break;
        }
        s.expect(at, &[accept(CHUNK, 10)]);
        tries += 1;
    }
    assert_eq!(at, 5_050_000, "the first deadline at or after 5 s");
    s.expect(at, &[error(ErrorCode::Timeout, "timed out")]);
    assert_eq!(
        s.outcome(),
        Some(Outcome::Failed(Failure::Timeout {
            tries,
            elapsed: Duration::from_micros(at)
        }))
    );
    s.expect_deadline(None);
}

#[test]
fn sender_of_an_upload_starts_with_data_1() {
    let mut s = Script::sender(
        &config(),
        plan(FILE.len() as u64, CHUNK, 1, Opening::Data),
        FILE.to_vec(),
    );
    s.expect(0, &[data(1, b"abcd")]);
    s.expect_deadline(Some(100_000));
    // A repeated Accept (the server did not hear Data 1 yet) changes nothing.
    s.recv(50, accept(CHUNK, 10));
    s.expect_nothing(50);
}

#[test]
fn sender_stops_at_an_error_from_the_peer() {
    let mut s = download_sender();
    s.expect(0, &[accept(CHUNK, 10)]);
    s.recv(500, ack(0));
    s.expect(500, &[data(1, b"abcd")]);
    s.recv(600, error(ErrorCode::Io, "disk full"));
    s.expect_nothing(600);
    s.expect_deadline(None);
    assert_eq!(
        s.outcome(),
        Some(Outcome::Failed(Failure::from_peer(
            ErrorCode::Io,
            b"disk full"
        )))
    );
}

// ---------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------

#[test]
fn receiver_greets_with_ack_0_and_repeats_it_until_data_1() {
    let mut r = download_receiver();
    r.expect(0, &[ack(0)]);
    r.expect_deadline(Some(100_000));
    r.fire(100_000);
    r.expect(100_000, &[ack(0)]);
    r.expect_deadline(Some(300_000));
    // A repeated Accept is answered at once.
    r.recv(150_000, accept(CHUNK, 10));
    r.expect(150_000, &[ack(0)]);
    r.recv(200_000, data(1, b"abcd"));
    r.expect(200_000, &[ack(1)]);
    // No greeting any more: only the give-up deadline, 5 s after the last datagram.
    r.expect_deadline(Some(5_200_000));
    assert_eq!(r.written().0, b"abcd");
}

#[test]
fn receiver_writes_each_chunk_once_and_acks_every_copy() {
    let mut r = download_receiver();
    r.expect(0, &[ack(0)]);
    r.recv(500, data(1, b"abcd"));
    r.expect(500, &[ack(1)]);
    r.recv(600, data(1, b"abcd"));
    r.expect(600, &[ack(1)]);
    r.recv(1_000, data(2, b"efgh"));
    r.expect(1_000, &[ack(2)]);
    // An old duplicate is acknowledged by its own number (version 1).
    r.recv(1_100, data(1, b"abcd"));
    r.expect(1_100, &[ack(1)]);
    assert_eq!(r.written().0, b"abcdefgh");
    assert_eq!(*r.sink.writes.lock().unwrap(), vec![4, 4]);
    assert_eq!(r.stats().duplicates, 2);
}

#[test]
fn receiver_drops_data_from_the_future_and_beyond_the_file() {
    let mut r = download_receiver();
    r.expect(0, &[ack(0)]);
    r.recv(500, data(2, b"efgh"));
    r.recv(600, data(9, b"zz"));
    r.expect_nothing(600);
    assert_eq!(r.written().0, b"");
}

#[test]
fn receiver_fails_a_chunk_of_the_wrong_length() {
    let mut r = download_receiver();
    r.expect(0, &[ack(0)]);
    r.recv(500, data(1, b"abc"));
    r.expect(
        500,
        &[error(
            ErrorCode::BadRequest,
            "chunk 1 has 3 bytes, expected 4",
        )],
    );
    assert!(matches!(
        r.outcome(),
        Some(Outcome::Failed(Failure::Local {
            code: ErrorCode::BadRequest,
            ..
        }))
    ));
    r.expect_deadline(None);
}

#[test]
fn receiver_verifies_done_commits_and_lingers_acking_repeats() {
    let mut r = download_receiver();
    r.expect(0, &[ack(0)]);
    // A Done before the data is dropped.
    r.recv(100, done(4, FILE));
    r.expect_nothing(100);
    for (at, seq, bytes) in [
        (500, 1, &b"abcd"[..]),
        (1_000, 2, b"efgh"),
        (1_500, 3, b"ij"),
    ] {
        r.recv(at, data(seq, bytes));
        r.expect(at, &[ack(seq)]);
    }
    r.recv(2_000, done(4, FILE));
    r.expect(2_000, &[ack(4)]);
    assert_eq!(r.written(), (FILE.to_vec(), true));
    assert_eq!(r.outcome(), Some(Outcome::Complete));
    // Samples of 500 µs: RTO well under the 20 ms floor of the linger.
    r.expect_deadline(Some(22_000));
    r.recv(3_000, done(4, FILE));
    r.expect(3_000, &[ack(4)]);
    r.fire(22_000);
    r.expect_deadline(None);
    assert!(r.half.is_finished());
}

#[test]
fn receiver_refuses_a_wrong_whole_file_checksum_and_commits_nothing() {
    let mut r = download_receiver();
    r.expect(0, &[ack(0)]);
    for (at, seq, bytes) in [
        (500, 1, &b"abcd"[..]),
        (1_000, 2, b"efgh"),
        (1_500, 3, b"ij"),
    ] {
        r.recv(at, data(seq, bytes));
        r.expect(at, &[ack(seq)]);
    }
    r.recv(2_000, done(4, b"abcdefghiJ"));
    r.expect(
        2_000,
        &[error(
            ErrorCode::ChecksumMismatch,
            "whole-file checksum mismatch: transfer discarded",
        )],
    );
    assert!(!r.written().1, "nothing committed");
}

#[test]
fn receiver_of_an_upload_repeats_its_accept_until_data_1() {
    let mut r = upload_receiver();
    r.expect(0, &[accept(CHUNK, 10)]);
    r.expect_deadline(Some(100_000));
    r.fire(100_000);
    r.expect(100_000, &[accept(CHUNK, 10)]);
    r.recv(100_500, data(1, b"abcd"));
    r.expect(100_500, &[ack(1)]);
    r.expect_deadline(Some(5_100_500));
}

// ---------------------------------------------------------------------------------------
// The RTT estimator (RFC 6298)
// ---------------------------------------------------------------------------------------

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

#[test]
fn rtt_starts_at_the_initial_rto_clamped() {
    let rtt = Rtt::new(&config());
    assert_eq!(rtt.rto(), Duration::from_millis(100));
    assert_eq!(rtt.srtt(), None);
    let tight = Config {
        rto_initial: Duration::from_secs(9),
        ..config()
    };
    assert_eq!(Rtt::new(&tight).rto(), Duration::from_millis(250));
}

#[test]
fn rtt_first_and_later_samples_follow_rfc_6298() {
    let mut rtt = Rtt::new(&config());
    // First: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4·RTTVAR.
    rtt.sample(us(1_000));
    assert_eq!(rtt.srtt(), Some(us(1_000)));
    assert_eq!(rtt.rto(), us(3_000));
    // Later: RTTVAR = 3/4·500 + 1/4·|1000 − 2000| = 625; SRTT = 7/8·1000 + 1/8·2000 = 1125.
    rtt.sample(us(2_000));
    assert_eq!(rtt.srtt(), Some(us(1_125)));
    assert_eq!(rtt.rto(), us(1_125 + 4 * 625));
    assert_eq!(rtt.min_rtt(), Some(us(1_000)));
}

#[test]
fn rtt_backoff_doubles_to_the_ceiling_and_a_sample_undoes_it() {
    let mut rtt = Rtt::new(&config());
    rtt.sample(us(1_000));
    rtt.back_off();
    assert_eq!(rtt.rto(), us(6_000));
    for _ in 0..20 {
        rtt.back_off();
    }
    assert_eq!(rtt.rto(), Duration::from_millis(250));
    rtt.sample(us(1_000));
    assert!(rtt.rto() < us(3_000), "{:?}", rtt.rto());
}

#[test]
fn rtt_keeps_its_timeout_above_a_recent_stall_for_about_a_thousand_samples() {
    // A 100 µs path whose peer once stalls for 1 ms: RFC 6298 alone forgets it within a few
    // samples (RTTVAR shrinks by a quarter each), and the next stall would fire the timer.
    let mut rtt = Rtt::new(&config());
    for _ in 0..50 {
        rtt.sample(us(100));
    }
    let quiet = rtt.rto();
    assert!(quiet < us(200), "{quiet:?}");
    rtt.sample(us(1_100));
    assert_eq!(rtt.spike(), us(1_000));
    for _ in 0..50 {
        rtt.sample(us(100));
    }
    // Fifty samples later, RTTVAR is back near zero, but the spike (1000 µs × (1 − 1/1024)^50
    // ≈ 952 µs) keeps RTO = SRTT + 2 × spike above the stall.
    assert!(rtt.rto() > us(1_100) + us(700), "{:?}", rtt.rto());
    for _ in 0..5_000 {
        rtt.sample(us(100));
    }
    assert!(
        rtt.rto() < us(200),
        "a quiet path's timer tightens again: {:?}",
        rtt.rto()
    );
}

#[test]
fn rtt_never_falls_below_the_floor() {
    let mut rtt = Rtt::new(&config());
    for _ in 0..50 {
        rtt.sample(us(10));
    }
    assert_eq!(rtt.rto(), config().rto_min);
}

// ---------------------------------------------------------------------------------------
// protocol.md gaps an independent implementation found (issue 9 §6), one test each
// ---------------------------------------------------------------------------------------

/// The client's receiver of an empty download.
fn empty_download_receiver() -> Script {
    Script::receiver(&config(), plan(0, CHUNK, 1, Opening::AckAccept))
}

#[test]
fn linger_without_a_round_trip_is_eight_initial_rtos_whatever_the_greeting_backoff() {
    // §8.3.1: no sample (the only Ack was repeated, so Karn gives none), and the greeting's
    // backoff (to 200 ms) does not carry into the linger: 8 × 100 ms.
    let mut r = empty_download_receiver();
    r.expect(0, &[ack(0)]);
    r.fire(100_000);
    r.expect(100_000, &[ack(0)]);
    r.recv(100_500, done(1, b""));
    r.expect(100_500, &[ack(1)]);
    assert_eq!(r.outcome(), Some(Outcome::Complete));
    r.expect_deadline(Some(100_500 + 800_000));
}

#[test]
fn an_empty_download_measures_its_round_trip_on_the_done() {
    // §9.1: the Done answers Ack 0 (sent once): a sample of 500 µs, RTO 1.5 ms, so the
    // linger is its floor of 20 ms.
    let mut r = empty_download_receiver();
    r.expect(0, &[ack(0)]);
    r.recv(500, done(1, b""));
    r.expect(500, &[ack(1)]);
    assert_eq!(r.stats().srtt, Some(Duration::from_micros(500)));
    r.expect_deadline(Some(500 + 20_000));
}

#[test]
fn duplicates_do_not_keep_a_stalled_upload_alive() {
    // §9.3: the receiver's give-up clock counts from the last *new* datagram. Data 1 keeps
    // coming (its Acks are lost) but brings nothing new: the server gives up 5 s after the
    // first copy, not after the last.
    let mut r = upload_receiver();
    r.expect(0, &[accept(CHUNK, 10)]);
    r.recv(500, data(1, b"abcd"));
    r.expect(500, &[ack(1)]);
    for at in (100_500..5_000_500).step_by(100_000) {
        r.recv(at, data(1, b"abcd"));
        r.expect(at, &[ack(1)]);
        r.expect_deadline(Some(5_000_500));
    }
    r.fire(5_000_500);
    r.expect(5_000_500, &[error(ErrorCode::Timeout, "timed out")]);
    assert!(matches!(
        r.outcome(),
        Some(Outcome::Failed(Failure::Timeout { elapsed, .. })) if elapsed == Duration::from_secs(5)
    ));
    assert!(!r.written().1, "nothing committed");
}

#[test]
fn a_lingering_receiver_acks_data_it_holds_and_drops_data_beyond_the_file() {
    // §8.3: "Data from the future MUST be dropped" holds while lingering too.
    let mut r = download_receiver();
    r.expect(0, &[ack(0)]);
    for (at, seq, bytes) in [
        (500, 1, &b"abcd"[..]),
        (1_000, 2, b"efgh"),
        (1_500, 3, b"ij"),
    ] {
        r.recv(at, data(seq, bytes));
        r.expect(at, &[ack(seq)]);
    }
    r.recv(2_000, done(4, FILE));
    r.expect(2_000, &[ack(4)]);
    r.recv(2_100, data(9, b"zz"));
    r.recv(2_200, data(4, b"zz"));
    r.expect_nothing(2_200);
    r.recv(2_300, data(2, b"efgh"));
    r.expect(2_300, &[ack(2)]);
    assert_eq!(r.written(), (FILE.to_vec(), true));
}

// ---------------------------------------------------------------------------------------
// Windows (protocol.md §20): the same file, window 4 (all four messages fit)
// ---------------------------------------------------------------------------------------

/// The server's sender of a download of `FILE` with window 4, past its Accept and Ack 0
/// (a round trip of 500 µs: RTO 1.5 ms, reordering window 125 µs).
fn windowed_sender() -> Script {
    let mut s = Script::sender(
        &config(),
        plan(
            FILE.len() as u64,
            CHUNK,
            4,
            Opening::Accept { token: TOKEN },
        ),
        FILE.to_vec(),
    );
    s.expect(0, &[accept_windowed(CHUNK, 4, 10)]);
    s.recv(500, sack(0, &[]));
    s.expect(
        500,
        &[
            data(1, b"abcd"),
            data(2, b"efgh"),
            data(3, b"ij"),
            done(4, FILE),
        ],
    );
    s.expect_deadline(Some(2_000));
    s
}

#[test]
fn windowed_sender_fills_its_window_at_once() {
    let mut s = windowed_sender();
    s.recv(1_000, sack(4, &[]));
    s.expect_nothing(1_000);
    assert_eq!(s.outcome(), Some(Outcome::Complete));
    assert_eq!(s.stats().retransmitted, 0);
}

#[test]
fn a_hole_is_filled_by_one_retransmission() {
    let mut s = windowed_sender();
    // 1, 3 and 4 arrived; 2 is missing. Sent together with 4 (which arrived after 500 µs),
    // 2 is presumed lost once the reordering window (125 µs) has passed as well.
    s.recv(1_000, sack(1, &[0b1100_0000]));
    s.expect_nothing(1_000);
    s.expect_deadline(Some(1_125));
    s.fire(1_125);
    s.expect(1_125, &[data(2, b"efgh")]);
    // The same news again (a duplicated or late Sack) causes nothing.
    s.recv(1_200, sack(1, &[0b1100_0000]));
    s.recv(1_300, sack(1, &[0b1100_0000]));
    s.expect_nothing(1_300);
    s.recv(1_700, sack(4, &[]));
    s.expect_nothing(1_700);
    assert_eq!(s.outcome(), Some(Outcome::Complete));
    let stats = s.stats();
    assert_eq!((stats.retransmitted, stats.spurious), (1, 0));
}

#[test]
fn reordering_within_the_window_triggers_no_retransmission() {
    let mut s = windowed_sender();
    // 3 overtook 2 (and 4): within the reordering window, 2 arrives after all.
    s.recv(1_000, sack(1, &[0b1000_0000]));
    s.expect_nothing(1_000);
    s.recv(1_050, sack(4, &[]));
    s.expect_nothing(1_050);
    s.fire(1_125);
    s.expect_nothing(1_125);
    assert_eq!(s.outcome(), Some(Outcome::Complete));
    assert_eq!(s.stats().retransmitted, 0);
}

#[test]
fn a_retransmission_found_spurious_widens_the_reordering_window() {
    let mut s = windowed_sender();
    s.recv(1_000, sack(1, &[0b1100_0000]));
    s.fire(1_125);
    s.expect(1_125, &[data(2, b"efgh")]);
    // The original 2 was only late: its Ack comes 100 µs after the retransmission, sooner
    // than any round trip (500 µs).
    s.recv(1_225, sack(4, &[]));
    assert_eq!(s.stats().spurious, 1);
}

#[test]
fn the_timer_resends_only_the_oldest_missing_message() {
    let mut s = windowed_sender();
    // Nothing comes back: at the RTO only Data 1 goes again, not the window.
    s.fire(2_000);
    s.expect(2_000, &[data(1, b"abcd")]);
    s.expect_deadline(Some(5_000));
}

/// The client's receiver of a download of `FILE` with window 4.
fn windowed_receiver() -> Script {
    let mut r = Script::receiver(
        &config(),
        plan(FILE.len() as u64, CHUNK, 4, Opening::AckAccept),
    );
    r.expect(0, &[sack(0, &[])]);
    r
}

#[test]
fn windowed_receiver_holds_chunks_above_a_hole_and_writes_each_once_in_order() {
    let mut r = windowed_receiver();
    r.recv(500, data(1, b"abcd"));
    // Its Ack waits for the next chunk's (every second chunk)...
    r.expect_nothing(500);
    // ... and a hole's news goes at once, answering 1 as well.
    r.recv(510, data(3, b"ij"));
    r.expect(510, &[sack(1, &[0b1000_0000])]);
    // The Done ahead of the hole is held too.
    r.recv(520, done(4, FILE));
    r.expect(520, &[sack(1, &[0b1100_0000])]);
    r.recv(530, data(3, b"ij"));
    r.expect(530, &[sack(1, &[0b1100_0000])]);
    assert_eq!(r.written(), (b"abcd".to_vec(), false));
    // The hole fills: 2 and the held 3 are written, the held Done verified, all committed.
    r.recv(600, data(2, b"efgh"));
    r.expect(600, &[sack(4, &[])]);
    assert_eq!(r.written(), (FILE.to_vec(), true));
    assert_eq!(*r.sink.writes.lock().unwrap(), vec![4, 4, 2]);
    assert_eq!(r.outcome(), Some(Outcome::Complete));
}

#[test]
fn a_lost_final_ack_with_chunks_in_flight_is_answered_while_lingering() {
    let mut r = windowed_receiver();
    // 1's Ack waits for 2's; 3, the last chunk, is acknowledged at once.
    r.recv(500, data(1, b"abcd"));
    r.expect_nothing(500);
    for (at, seq, bytes) in [(510, 2, &b"efgh"[..]), (520, 3, b"ij")] {
        r.recv(at, data(seq, bytes));
        r.expect(at, &[sack(seq, &[])]);
    }
    r.recv(530, done(4, FILE));
    r.expect(530, &[sack(4, &[])]);
    // That Sack was lost: the sender's timer resends 2 (still in its flight) and the Done;
    // the lingering receiver answers both with the whole story, and writes nothing.
    r.recv(2_000, data(2, b"efgh"));
    r.expect(2_000, &[sack(4, &[])]);
    r.recv(2_010, done(4, FILE));
    r.expect(2_010, &[sack(4, &[])]);
    assert_eq!(*r.sink.writes.lock().unwrap(), vec![4, 4, 2]);
}

#[test]
fn windowed_receiver_drops_data_beyond_its_window() {
    let bytes = [7u8; 40];
    let mut r = Script::receiver(&config(), plan(40, CHUNK, 4, Opening::AckAccept));
    r.expect(0, &[sack(0, &[])]);
    // Expecting 1, window 4: 2..=4 may be held, 5 and beyond could not have been sent.
    r.recv(500, data(4, &bytes[12..16]));
    r.expect(500, &[sack(0, &[0b0010_0000])]);
    r.recv(510, data(5, &bytes[16..20]));
    r.expect_nothing(510);
}

#[test]
fn windowed_receiver_acks_every_second_chunk_and_holds_one_ack_back_a_quarter_round_trip() {
    let bytes: Vec<u8> = (0..40).collect();
    let chunk = |seq: u64| &bytes[(seq as usize - 1) * 4..seq as usize * 4];
    let mut r = Script::receiver(&config(), plan(40, CHUNK, 8, Opening::AckAccept));
    r.expect(0, &[sack(0, &[])]);
    // Data 1 answers Ack 0: a round trip of 500 µs. A quarter of it is 125 µs, but no Ack
    // waits longer than the shortest timeout a sender may have (`rto_min`, 100 µs).
    r.recv(500, data(1, chunk(1)));
    r.expect_nothing(500);
    r.expect_deadline(Some(600));
    // The second chunk's Ack answers both.
    r.recv(510, data(2, chunk(2)));
    r.expect(510, &[sack(2, &[])]);
    // No second chunk in time: the held-back Ack goes alone, at its deadline.
    r.recv(520, data(3, chunk(3)));
    r.expect_nothing(520);
    r.fire(619);
    r.expect_nothing(619);
    r.fire(620);
    r.expect(620, &[sack(3, &[])]);
    // A hole: the chunk above it is acknowledged at once (answering 4 too), and so is the
    // chunk that fills it.
    r.recv(700, data(4, chunk(4)));
    r.expect_nothing(700);
    r.recv(710, data(6, chunk(6)));
    r.expect(710, &[sack(4, &[0b1000_0000])]);
    r.recv(720, data(5, chunk(5)));
    r.expect(720, &[sack(6, &[])]);
    // A repeated chunk is acknowledged at once, and that Ack answers the one held back.
    r.recv(730, data(7, chunk(7)));
    r.expect_nothing(730);
    r.recv(740, data(6, chunk(6)));
    r.expect(740, &[sack(7, &[])]);
    r.fire(900);
    r.expect_nothing(900);
    // The last chunk is never held back.
    r.recv(1_000, data(8, chunk(8)));
    r.expect_nothing(1_000);
    r.recv(1_010, data(9, chunk(9)));
    r.expect(1_010, &[sack(9, &[])]);
    r.recv(1_020, data(10, chunk(10)));
    r.expect(1_020, &[sack(10, &[])]);
    assert_eq!(r.written(), (bytes.clone(), false));
}

#[test]
fn a_held_back_ack_waits_a_quarter_of_a_short_round_trip() {
    let mut r = Script::receiver(&config(), plan(40, CHUNK, 8, Opening::AckAccept));
    r.expect(0, &[sack(0, &[])]);
    // A round trip of 200 µs: the Ack of Data 1 waits 50 µs for a second chunk.
    r.recv(200, data(1, &[0; 4]));
    r.expect_deadline(Some(250));
    r.fire(249);
    r.expect_nothing(249);
    r.fire(250);
    r.expect(250, &[sack(1, &[])]);
}

#[test]
fn a_windowed_receiver_with_no_round_trip_known_acknowledges_every_chunk() {
    let mut r = windowed_receiver();
    // Ack 0 was repeated on its timer (100 ms): Data 1 gives no round trip (Karn), and
    // without one nothing is held back.
    r.fire(100_000);
    r.expect(100_000, &[sack(0, &[])]);
    r.recv(100_500, data(1, b"abcd"));
    r.expect(100_500, &[sack(1, &[])]);
    r.recv(100_510, data(2, b"efgh"));
    r.expect(100_510, &[sack(2, &[])]);
}
