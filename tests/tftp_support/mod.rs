//! Helpers of the TFTP tests: readable packet builders ([`packets`]), a real-socket
//! single-port server driver over the sans-IO sessions ([`driver`]), and the external
//! clients and servers the tests run ([`tools`]).

#![allow(dead_code)] // each test binary uses its own part of the helpers

pub mod driver;
pub mod packets;
pub mod tools;
