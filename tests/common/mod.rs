//! Helpers of the protocol-core tests, one module per kind:
//!
//! * [`sim`]: a simulated network with a virtual clock (clients, a session table, seeded
//!   lossy links), for whole transfers.
//! * [`transcript`]: one half of a transfer on its own, fed datagrams at explicit times and
//!   asked for exactly what it sends (smoltcp's `recv!` / `send!` style).

#![allow(dead_code, unused_imports)] // each test binary uses its own part of the helpers

pub mod sim;
pub mod transcript;

pub use sim::*;
