//! One admission suite, run against every server model behind the real `udpft serve`: the
//! session limits, the per-address cap, read-only and the upload size limit, the access
//! lists, the amplification limit before address proof, and refusals during a stop. The
//! rules live in the front door every model shares, so every model must pass the same
//! tests; the loop model differs only in holding one session at a time.
//!
//! Each test speaks the protocol by hand on raw sockets bound to loopback addresses
//! (127.0.0.1, 127.0.0.2, ...), with deadlines, never fixed waits: a silence is shown by a
//! later datagram on the same server socket being answered first.

#[macro_use]
mod live;

use live::servers::*;
use nix::sys::signal::Signal;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use udpft::proto::refusal::AMPLIFICATION_FACTOR;
use udpft::proto::wire::{Kind, MAX_DATAGRAM};
use udpft::proto::{ErrorCode, Message};

fn put_request(token: u32, name: &[u8], size: u64) -> Message<'_> {
    Message::Put {
        token,
        chunk: 1024,
        window: 1,
        size,
        overwrite: false,
        name,
    }
}

/// Whether `socket` holds no datagram now (checked after a later request on another socket
/// was answered, so anything the server meant for this one has arrived).
fn nothing_queued(socket: &UdpSocket) -> bool {
    socket.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0u8; 64];
    let empty = socket.recv(&mut buf).is_err();
    socket.set_nonblocking(false).expect("blocking");
    empty
}

fn sessions_past_max_sessions_are_busy(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents")]);
    let server = Server::start(model, dirs.root(), &["--max-sessions", "1"]);
    let _held = hold_session(server.addr, 1, b"file");
    let other = socket_from("127.0.0.2", server.addr);
    assert_eq!(
        request(&other, 2, b"file", PROMPT),
        Some(Answer::Refused(ErrorCode::Busy)),
        "{model}"
    );
    // A request that can never succeed still says why, full or not.
    assert_eq!(
        request(&other, 3, b"missing", PROMPT),
        Some(Answer::Refused(ErrorCode::NotFound)),
        "{model}"
    );
}
for_models!(sessions_past_max_sessions_are_busy);

fn the_per_address_cap_counts_proven_sessions_of_that_address(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents")]);
    let server = Server::start(
        model,
        dirs.root(),
        &["--max-per-address", "1", "--max-sessions", "8"],
    );
    // Unproven requests from the address hold nothing.
    let idle = raw_socket(server.addr);
    for token in 100..150 {
        assert!(matches!(
            request(&idle, token, b"file", PROMPT),
            Some(Answer::Accepted(_))
        ));
    }
    let _held = hold_session(server.addr, 1, b"file");
    let same = raw_socket(server.addr);
    assert_eq!(
        request(&same, 2, b"file", PROMPT),
        Some(Answer::Refused(ErrorCode::Busy)),
        "{model}: a second proven session of 127.0.0.1"
    );
    let other = socket_from("127.0.0.2", server.addr);
    let answer = request(&other, 3, b"file", PROMPT);
    if model == "loop" {
        // The iterative server is full with one session, whoever asks.
        assert_eq!(answer, Some(Answer::Refused(ErrorCode::Busy)));
    } else {
        assert!(
            matches!(answer, Some(Answer::Accepted(_))),
            "{model}: {answer:?}"
        );
    }
}
for_models!(the_per_address_cap_counts_proven_sessions_of_that_address);

fn a_read_only_server_refuses_uploads_and_serves_downloads(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents")]);
    let server = Server::start(model, dirs.root(), &["--read-only"]);
    let socket = raw_socket(server.addr);
    assert_eq!(
        ask(&socket, &put_request(1, b"new", 5), PROMPT),
        Some(Answer::Refused(ErrorCode::ReadOnly)),
        "{model}"
    );
    assert!(matches!(
        request(&socket, 2, b"file", PROMPT),
        Some(Answer::Accepted(_))
    ));
}
for_models!(a_read_only_server_refuses_uploads_and_serves_downloads);

fn uploads_over_max_upload_are_too_large(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents")]);
    let server = Server::start(model, dirs.root(), &["--max-upload", "10"]);
    let socket = raw_socket(server.addr);
    assert_eq!(
        ask(&socket, &put_request(1, b"new", 11), PROMPT),
        Some(Answer::Refused(ErrorCode::TooLarge)),
        "{model}"
    );
    // The size limit is judged before the name exists: a too-large existing name is too
    // large.
    assert_eq!(
        ask(&socket, &put_request(2, b"file", 11), PROMPT),
        Some(Answer::Refused(ErrorCode::TooLarge)),
        "{model}"
    );
    assert!(matches!(
        ask(&socket, &put_request(3, b"new", 10), PROMPT),
        Some(Answer::Accepted(_))
    ));
}
for_models!(uploads_over_max_upload_are_too_large);

fn refused_addresses_get_no_answer_at_all(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents")]);
    let server = Server::start(
        model,
        dirs.root(),
        &["--allow", "127.0.0.0/24", "--deny", "127.0.0.66"],
    );
    let denied = socket_from("127.0.0.66", server.addr);
    let outside = socket_from("127.0.1.1", server.addr);
    for socket in [&denied, &outside] {
        send_message(socket, &get_request(1, b"file"));
        send_message(socket, &Message::Ack { session: 9, seq: 0 });
    }
    // The allowed peer's answer comes after the server handled the refused datagrams.
    let allowed = socket_from("127.0.0.1", server.addr);
    assert!(matches!(
        request(&allowed, 2, b"file", PROMPT),
        Some(Answer::Accepted(_))
    ));
    assert!(
        nothing_queued(&denied),
        "{model}: a denied address was answered"
    );
    assert!(
        nothing_queued(&outside),
        "{model}: an address outside --allow was answered"
    );
    let stats = server.stop();
    assert!(stats.contains(" denied=4"), "{model}: {stats}");
}
for_models!(refused_addresses_get_no_answer_at_all);

fn uploads_outside_allow_upload_are_read_only(model: &str) {
    let dirs = Dirs::with(&[("file", b"contents")]);
    let server = Server::start(model, dirs.root(), &["--allow-upload", "127.0.0.2"]);
    let outside = raw_socket(server.addr);
    assert_eq!(
        ask(&outside, &put_request(1, b"new", 5), PROMPT),
        Some(Answer::Refused(ErrorCode::ReadOnly)),
        "{model}"
    );
    assert!(matches!(
        request(&outside, 2, b"file", PROMPT),
        Some(Answer::Accepted(_))
    ));
    let inside = socket_from("127.0.0.2", server.addr);
    assert!(matches!(
        ask(&inside, &put_request(3, b"new", 5), PROMPT),
        Some(Answer::Accepted(_))
    ));
}
for_models!(uploads_outside_allow_upload_are_read_only);

fn an_unproven_peer_gets_at_most_three_times_what_it_sent_and_no_data(model: &str) {
    let dirs = Dirs::with(&[("file", &[7u8; 100_000])]);
    let server = Server::start(model, dirs.root(), &[]);
    let socket = raw_socket(server.addr);
    let request = get_request(1, b"file");
    let mut sent = 0;
    let mut received = 0;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    for _ in 0..5 {
        let mut bytes = vec![0u8; 512];
        let n = request.encode(&mut bytes);
        socket.send(&bytes[..n]).expect("send");
        sent += n;
        let n = socket.recv(&mut buf).expect("one Accept per request");
        received += n;
        assert_eq!(
            Message::decode(&buf[..n]).map(|m| m.kind()),
            Ok(Kind::Accept)
        );
    }
    // Nothing else came meanwhile: the next datagram on this socket answers our next
    // request. (That nothing comes on a timer later either is shown in virtual time:
    // tests/sim_spoofing.rs.)
    let barrier = get_request(2, b"missing");
    let mut bytes = vec![0u8; 512];
    let n = barrier.encode(&mut bytes);
    socket.send(&bytes[..n]).expect("send");
    let n = socket.recv(&mut buf).expect("the barrier's answer");
    assert!(
        matches!(
            Message::decode(&buf[..n]),
            Ok(Message::Error { session: 2, .. })
        ),
        "{model}: unasked datagram before proof: {:?}",
        Message::decode(&buf[..n])
    );
    assert!(
        received <= AMPLIFICATION_FACTOR * sent,
        "{model}: {received} bytes for {sent}"
    );
}
for_models!(an_unproven_peer_gets_at_most_three_times_what_it_sent_and_no_data);

fn a_stopping_server_refuses_new_requests(model: &str) {
    let dirs = Dirs::with(&[("file", &[7u8; 100_000])]);
    let mut server = Server::start(model, dirs.root(), &["--grace", "5", "--timeout", "2"]);
    // A download held open keeps the server draining while we ask.
    let _held = hold_session(server.addr, 1, b"file");
    server.proc.signal(Signal::SIGTERM);
    let socket = socket_from("127.0.0.2", server.addr);
    let deadline = Instant::now() + PROMPT;
    let mut token = 10;
    loop {
        if Instant::now() >= deadline {
            server.proc.wait(Duration::from_secs(20));
            panic!(
                "{model}: never said it is shutting down: {}",
                server.proc.stderr_text()
            );
        }
        match request(&socket, token, b"file", Duration::from_millis(500)) {
            Some(Answer::Refused(ErrorCode::ShuttingDown)) => break,
            // Before the stop was noticed (or the loop, busy with the held session).
            Some(Answer::Accepted(_)) | Some(Answer::Refused(ErrorCode::Busy)) | None => {}
            other => panic!("{model}: {other:?}"),
        }
        token += 1;
    }
    server.expect_exit();
}
for_models!(a_stopping_server_refuses_new_requests);

fn a_slow_session_yields_its_slot_to_a_proven_peer_when_the_server_is_full(model: &str) {
    let dirs = Dirs::with(&[("file", &[7u8; 100_000])]);
    let server = Server::start(
        model,
        dirs.root(),
        &["--max-sessions", "1", "--timeout", "30", "--grace", "0.5"],
    );
    // It never acknowledges a chunk: 0 bytes a second.
    let slow = hold_session(server.addr, 1, b"file");
    let newcomer = socket_from("127.0.0.2", server.addr);
    // Young sessions keep their slots; once it is 2 s old, the full server makes it yield.
    let deadline = Instant::now() + PROMPT;
    let session = loop {
        assert!(
            Instant::now() < deadline,
            "{model}: the slow session never yielded"
        );
        match request(&newcomer, 2, b"file", Duration::from_millis(300)) {
            Some(Answer::Accepted(session)) => break session,
            Some(Answer::Refused(ErrorCode::Busy)) | None => {}
            other => panic!("{model}: {other:?}"),
        }
    };
    send_message(&newcomer, &Message::Ack { session, seq: 0 });
    let mut buf = vec![0u8; MAX_DATAGRAM];
    slow.set_read_timeout(Some(PROMPT)).expect("timeout");
    let told = loop {
        let n = slow.recv(&mut buf).expect("the slow peer hears why");
        if let Ok(Message::Error { code, .. }) = Message::decode(&buf[..n]) {
            break code;
        }
    };
    assert_eq!(told, ErrorCode::Busy, "{model}");
    newcomer.set_read_timeout(Some(PROMPT)).expect("timeout");
    loop {
        let n = newcomer.recv(&mut buf).expect("the newcomer is served");
        if matches!(Message::decode(&buf[..n]), Ok(Message::Data { .. })) {
            break;
        }
    }
}
for_models!(a_slow_session_yields_its_slot_to_a_proven_peer_when_the_server_is_full);
