//! Golden transcripts of stop-and-wait (window 1): every datagram both ends send in a set of
//! scripted transfers over the simulated network, byte for byte and at its virtual time. They
//! were recorded from main before windows existed (at 3b49b0c, whose version-1 handshake is
//! today's), and they pass unchanged: a window-1 transfer is, on the wire, exactly the
//! version-1 protocol (protocol.md §16, §20.2).
//!
//! What they pin is the wire: who sends which bytes, in which order, exactly. The moment a
//! datagram goes out is pinned too, with one freedom: a retransmission timer is the sender's
//! policy, not the protocol, and issue 10 made it recover sooner (every half's first timeout
//! follows the handshake's round trip instead of `rto_initial`, protocol.md §9.1; a lost
//! Data 1 is resent after 4 ms instead of 101 ms). So in a scenario where something is lost
//! a datagram may go out earlier than recorded, never later; where nothing is lost every
//! datagram goes out at exactly its recorded time.
//!
//! Each scenario's transcript lives in `tests/golden/NAME.txt`, one line per datagram:
//! `MICROSECONDS FROM->TO HEX`. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them
//! (only ever on purpose: a change here is a change of the wire protocol).

mod common;

use common::{client_addr, drop_nth, lan, random_bytes, Fate, Sent, Sim, SERVER};
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;
use udpft::link::{Damage, Impairments};
use udpft::proto::wire::Kind;
use udpft::proto::Outcome;

/// A small chunk, so that transcripts stay short while covering several chunks.
const CHUNK: u16 = 64;

/// The transcript of everything sent in `sim`, one line per datagram.
fn transcript(sim: &Sim) -> String {
    let name = |addr| {
        if addr == SERVER {
            "server".to_string()
        } else {
            format!(
                "client{}",
                sim.clients
                    .iter()
                    .position(|c| c.addr == addr)
                    .unwrap_or(99)
            )
        }
    };
    let mut out = String::new();
    for s in &sim.sent {
        let hex: String = s.bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(
            out,
            "{} {}->{} {hex}",
            s.at.as_micros(),
            name(s.from),
            name(s.to)
        )
        .unwrap();
    }
    out
}

/// How a scenario's send times must match its golden file's.
#[derive(Clone, Copy, PartialEq)]
enum Timing {
    /// Nothing is lost: every datagram at exactly its recorded time.
    Exact,
    /// Something is lost: a timer may recover sooner than recorded, never later.
    NoLater,
}

/// Compares `sim`'s transcript with the golden file `name` (or rewrites it): the same
/// datagrams, byte for byte and in the same order, sent at the times `timing` allows.
fn check(name: &str, sim: &Sim, timing: Timing) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.txt"));
    let got = transcript(sim);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden transcript");
        eprintln!("UPDATED: {}", path.display());
        return;
    }
    let want = std::fs::read_to_string(&path).expect("golden transcript exists");
    let split = |line: &str| {
        let (at, wire) = line.split_once(' ').expect("MICROSECONDS FROM->TO HEX");
        (
            at.parse::<u64>().expect("a time in microseconds"),
            wire.to_string(),
        )
    };
    let (got, want): (Vec<_>, Vec<_>) = (
        got.lines().map(split).collect(),
        want.lines().map(split).collect(),
    );
    for (line, ((got_at, got_wire), (want_at, want_wire))) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            got_wire,
            want_wire,
            "{name}: datagram {} differs from {}",
            line + 1,
            path.display()
        );
        let in_time = match timing {
            Timing::Exact => got_at == want_at,
            Timing::NoLater => got_at <= want_at,
        };
        assert!(
            in_time,
            "{name}: datagram {} sent at {got_at} µs, recorded at {want_at} µs ({})",
            line + 1,
            path.display()
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: {} datagrams sent, {} recorded in {}",
        got.len(),
        want.len(),
        path.display()
    );
}

fn sim(seed: u64, impairments: Impairments) -> Sim {
    let mut sim = Sim::new(seed, impairments);
    sim.client_config.chunk = CHUNK;
    sim
}

fn complete(sim: &Sim, client: usize) {
    assert_eq!(
        sim.outcome(client),
        Some(Outcome::Complete),
        "{}",
        sim.describe(client)
    );
}

#[test]
fn clean_download() {
    let mut sim = sim(1, lan());
    sim.add_file("f", random_bytes(1, 200));
    let c = sim.get("f");
    sim.run();
    complete(&sim, c);
    check("clean_download", &sim, Timing::Exact);
}

#[test]
fn clean_upload() {
    let mut sim = sim(2, lan());
    let c = sim.put("f", random_bytes(2, 200), false);
    sim.run();
    complete(&sim, c);
    check("clean_upload", &sim, Timing::Exact);
}

#[test]
fn clean_listing() {
    let mut sim = sim(3, lan());
    for name in ["a.txt", "bb.bin", "ccc"] {
        sim.add_file(name, vec![7; name.len() * 10]);
    }
    let c = sim.list();
    sim.run();
    complete(&sim, c);
    check("clean_listing", &sim, Timing::Exact);
}

#[test]
fn empty_download() {
    let mut sim = sim(4, lan());
    sim.add_file("f", Vec::new());
    let c = sim.get("f");
    sim.run();
    complete(&sim, c);
    check("empty_download", &sim, Timing::Exact);
}

#[test]
fn download_losing_the_first_data_and_the_ack_of_done() {
    let mut sim = sim(5, lan());
    let mut lose_data = drop_nth(SERVER, Kind::Data, 0);
    let mut lose_final_ack = drop_nth(client_addr(0), Kind::Ack, 5);
    sim.set_hook(Box::new(move |s: &Sent| match lose_data(s) {
        Fate::Drop => Fate::Drop,
        _ => lose_final_ack(s),
    }));
    sim.add_file("f", random_bytes(5, 200));
    let c = sim.get("f");
    sim.run();
    complete(&sim, c);
    check("download_losses", &sim, Timing::NoLater);
}

#[test]
fn upload_losing_the_accept_with_duplicated_data() {
    let mut sim = sim(6, lan());
    let mut lose_accept = drop_nth(SERVER, Kind::Accept, 0);
    sim.set_hook(Box::new(move |s: &Sent| {
        if s.kind == Some(Kind::Data) {
            Fate::Deliver(vec![
                (Duration::from_micros(500), Damage::None),
                (Duration::from_micros(900), Damage::None),
            ])
        } else {
            lose_accept(s)
        }
    }));
    let c = sim.put("f", random_bytes(6, 200), false);
    sim.run();
    complete(&sim, c);
    check("upload_losses", &sim, Timing::NoLater);
}

#[test]
fn download_over_a_bad_link() {
    let imp = Impairments {
        loss: 0.2,
        duplicate: 0.1,
        reorder: 0.1,
        corrupt: 0.05,
        truncate: 0.02,
        delay: Duration::from_micros(300),
        jitter: Duration::from_micros(400),
        reorder_hold: Duration::from_millis(1),
        ..Impairments::default()
    };
    let mut sim = sim(7, imp);
    sim.add_file("f", random_bytes(7, 700));
    let c = sim.get("f");
    sim.run();
    complete(&sim, c);
    check("bad_link_download", &sim, Timing::NoLater);
}

#[test]
fn resumed_download() {
    let mut sim = sim(8, lan());
    let file = random_bytes(8, 300);
    sim.add_file("f", file.clone());
    let c = sim.get_resumed("f", &file[..100]);
    sim.run();
    complete(&sim, c);
    check("resumed_download", &sim, Timing::Exact);
}
