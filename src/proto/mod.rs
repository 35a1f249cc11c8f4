//! The sans-IO protocol core: no sockets, no clocks, no threads, no randomness.
//!
//! Datagrams (as bytes) and the current time (as an [`std::time::Instant`] handed in by the
//! caller) go in through `handle_*` methods; datagrams to send come out of `poll_transmit`
//! and the next deadline out of `poll_timeout`. File bytes flow through the [`Source`] and
//! [`Sink`] traits, and session ids come from a keyed hash the driver supplies. Every server
//! model, the client and the simulated network of the tests drive these same types.
//!
//! The transfer:
//! * [`wire`]: the datagram codec.
//! * [`session`]: configuration, statistics, outcomes, `Source`/`Sink`.
//! * [`rtt`]: the RFC 6298 round-trip estimator and retransmission timeout.
//! * [`transfer`]: the plan of a transfer and the one type that drives either half.
//! * [`sender`] / [`receiver`]: the two halves of a transfer; `flight` is what a sender has
//!   in flight, `reorder` what a receiver holds ahead of a hole, `congestion` the sender's
//!   congestion window, `buffers` their datagram buffers, allocated as they are needed.
//! * [`client`]: a client request and the transfer it opens.
//! * [`listing`]: the bytes of a library listing.
//! * [`checksum`]: the record of a remote checksum (Sum), and the hashing that makes it.
//!
//! The server's front door and its sessions:
//! * [`endpoint`]: the front door every server model shares: decoding, address proof,
//!   routing, tombstones, shutdown, slow sessions yielding.
//! * [`admission`]: the policy and the order of its rules; [`access`]: access lists.
//! * [`grant`]: what an accepted request was promised, and how its session starts.
//! * [`server_session`]: a server's session, udpft or TFTP, as every model drives it.
//! * [`pending`]: the bounded cache of grants whose peers have not proven their address.
//! * [`refusal`]: refusals and the amplification limit of replies.
//! * [`store`]: what the server serves, as requests see it.
//! * [`stats`]: the server's counters.
//! * [`table`]: the per-peer session table of the one-loop server.

pub mod access;
pub mod admission;
mod buffers;
pub mod checksum;
pub mod client;
mod congestion;
pub mod endpoint;
mod flight;
pub mod grant;
pub mod listing;
pub mod pending;
pub mod receiver;
pub mod refusal;
mod reorder;
pub mod rtt;
pub mod sender;
pub mod server_session;
pub mod session;
pub mod share;
pub mod stats;
pub mod store;
pub mod table;
pub mod transfer;
pub mod wire;

pub use congestion::WindowStats;
pub use session::{Config, Failure, FileCrc, Outcome, Sink, Source, Stats};
pub use transfer::{Opening, Plan, Transfer};
pub use wire::{DecodeError, ErrorCode, Message};
