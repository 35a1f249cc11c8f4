//! Helpers of the TFTP tests: readable packet builders ([`packets`]), a real-socket
//! single-port server driver over the sans-IO sessions ([`driver`]), the external
//! clients and servers the tests run ([`tools`]), and tftpd-hpa run as a server
//! ([`tftpd`]).

#![allow(dead_code)] // each test binary uses its own part of the helpers

pub mod driver;
pub mod packets;
pub mod tftpd;
pub mod tools;
