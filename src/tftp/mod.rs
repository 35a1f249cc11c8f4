//! TFTP (RFC 1350, with options: RFC 2347 negotiation, 2348 blksize, 2349 timeout and
//! tsize, 7440 windowsize), as a sans-IO core like [`crate::proto`]: no socket, clock,
//! thread or randomness; datagrams and `now` go in, datagrams and the next deadline come
//! out. File bytes flow through the same [`crate::proto::Source`] and [`crate::proto::Sink`]
//! traits, and refusals come from the same library rules, so TFTP is a second decoder at
//! the udpft front door, not a second server. See protocol.md, "TFTP".
//!
//! * [`wire`]: the packet codec, and [`wire::is_tftp`], the classifier of a shared socket.
//! * [`admit`]: a request at the front door: judged, answered once, kept as a grant.
//! * [`options`]: what is granted (server) or accepted (client) of the options asked.
//! * [`netascii`]: streaming LF ↔ CR LF conversion.
//! * [`blocks`]: block numbers and their rollover past 65535.
//! * [`codes`]: TFTP error codes and their mapping to udpft's.
//! * [`names`]: request file names under the library's rules.
//! * [`send`] / [`recv`]: the two halves of a transfer (fixed window, adaptive timer).
//! * [`server`]: the server's read and write sessions, once the front door has proven the peer.
//! * [`client`]: a client session against any TFTP server.

pub mod admit;
pub mod blocks;
pub mod client;
pub mod codes;
pub mod names;
pub mod netascii;
pub mod options;
pub mod recv;
pub mod send;
pub mod server;
pub mod wire;

pub use codes::{TftpCode, TftpError};
pub use server::{ServerConfig, ServerSession};
pub use wire::{is_tftp, Packet};
