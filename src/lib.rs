//! udpft: reliable file transfer over UDP on lossy LAN links.
//!
//! A server shares one folder, its *library*; clients list it, download files and upload
//! new ones. Every datagram carries a sequence number and a CRC32, and a transfer is
//! stop-and-wait: one chunk in flight, acknowledged before the next. `protocol.md` is the
//! normative description of the wire protocol.
//!
//! ```text
//!            datagrams + now                      datagrams to send + next deadline
//!  driver  ------------------->  proto (sans-IO)  --------------------------------->  driver
//!  (server model, client, simulator)     |   ^
//!                                 Sink   v   |  Source      (library files, memory)
//! ```
//!
//! # Layout
//! * [`proto`]: the sans-IO core: codec, sender and receiver state machines, the client
//!   request, and the server's session table. No socket, clock, thread or randomness.
//! * [`library`]: the shared folder: name checks, listing, reads, and uploads that appear
//!   only once complete and verified.
//! * [`link`]: a seeded lossy link (loss, duplication, reordering, corruption, delay),
//!   shared by the lossy-proxy tool and the simulated network of the tests.
//! * [`net`]: socket set-up and receiving with a deadline.
//! * [`server`]: the server models (drivers): the session-table loop, the iterative loop,
//!   a thread per session and a process per session.
//! * [`client`]: the blocking client driver used by the command line.
//! * [`tftp`]: TFTP as a second sans-IO core: codec, options, netascii, server and
//!   client sessions.
//! * [`privileges`]: dropping root to a user and group after binding.
//! * [`ids`]: unpredictable session ids and request tokens from the OS's randomness.
//! * [`text`]: showing text from the network safely (no terminal escapes, no bidi tricks).

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod client;
pub mod ids;
pub mod library;
pub mod link;
pub mod net;
pub mod privileges;
pub mod proto;
pub mod server;
pub mod text;
pub mod tftp;
