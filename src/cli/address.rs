//! `--server` and `--bind` values: `HOST`, `HOST:PORT`, an IPv4 address, an IPv6 address
//! with or without brackets (`::1`, `[::1]`, `[::1]:7000`). A missing port is 6969 (69 in
//! a `tftp://` URL, see `url.rs`). The
//! syntax is checked while the command line is parsed (a bad value is a usage error,
//! exit 2); host names are resolved when the client or server starts.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use udpft::client::ClientError;

/// The port used when a value names none.
pub(crate) const DEFAULT_PORT: u16 = 6969;

/// A host (name or address) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerAddr {
    host: String,
    port: u16,
}

impl FromStr for ServerAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text, DEFAULT_PORT)
    }
}

impl ServerAddr {
    /// Parses `text`, taking `default_port` when it names none.
    ///
    /// # Errors
    /// A message for the user when `text` is not one of the accepted forms.
    pub(crate) fn parse(text: &str, default_port: u16) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not HOST, HOST:PORT, an IP address or [IPv6]:PORT");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            // [v6] or [v6]:port
            let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
            };
            if !is_ipv6(host) {
                return Err(invalid());
            }
            (host, port)
        } else if text.matches(':').count() > 1 {
            // A bare IPv6 address: every colon belongs to it.
            if !is_ipv6(text) {
                return Err(invalid());
            }
            (text, None)
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if !is_ipv6(host) && !is_host_name(host) {
            return Err(invalid());
        }
        let port = match port {
            None => default_port,
            Some(port) => port
                .parse()
                .map_err(|_| format!("{port:?} is not a port number (0 to 65535)"))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// An IPv6 address, possibly with a zone (`fe80::1%eth0`).
fn is_ipv6(text: &str) -> bool {
    let address = text.split_once('%').map_or(text, |(address, _)| address);
    address.parse::<Ipv6Addr>().is_ok()
}

/// An IPv4 address or a host name (RFC 1123 labels; `_` tolerated, as resolvers do).
fn is_host_name(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
        || (!text.is_empty()
            && text.len() <= 253
            && text.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }))
}

impl ServerAddr {
    /// Every address the host resolves to, in the resolver's order of preference.
    ///
    /// # Errors
    /// A local error if the name does not resolve.
    pub(crate) fn resolve(&self) -> Result<Vec<SocketAddr>, ClientError> {
        let cannot = |e| ClientError::local(format!("cannot resolve {}", self.host), e);
        let addresses: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(cannot)?
            .collect();
        if addresses.is_empty() {
            return Err(cannot(io::Error::new(
                io::ErrorKind::NotFound,
                "no address found",
            )));
        }
        Ok(addresses)
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<(String, u16), String> {
        text.parse::<ServerAddr>().map(|a| (a.host, a.port))
    }

    #[test]
    fn every_accepted_form_gives_host_and_port() {
        for (text, host, port) in [
            ("127.0.0.1:7000", "127.0.0.1", 7000),
            ("127.0.0.1", "127.0.0.1", DEFAULT_PORT),
            ("localhost", "localhost", DEFAULT_PORT),
            ("localhost:7000", "localhost", 7000),
            (
                "files.example-lan.local",
                "files.example-lan.local",
                DEFAULT_PORT,
            ),
            ("::1", "::1", DEFAULT_PORT),
            ("[::1]", "::1", DEFAULT_PORT),
            ("[::1]:7000", "::1", 7000),
            ("fe80::1%eth0", "fe80::1%eth0", DEFAULT_PORT),
        ] {
            assert_eq!(parsed(text), Ok((host.to_owned(), port)), "{text}");
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for text in [
            "",
            "not an address",
            "host:",
            "host:port",
            "host:70000",
            "[::1",
            "[::1]7000",
            "[localhost]:1",
            "a..b",
            "::g",
            "host/path",
        ] {
            assert!(parsed(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn addresses_display_as_they_are_typed_back() {
        assert_eq!(
            "::1".parse::<ServerAddr>().unwrap().to_string(),
            "[::1]:6969"
        );
        assert_eq!(
            "localhost".parse::<ServerAddr>().unwrap().to_string(),
            "localhost:6969"
        );
    }

    #[test]
    fn localhost_resolves() {
        let addresses = "localhost:7000"
            .parse::<ServerAddr>()
            .unwrap()
            .resolve()
            .unwrap();
        assert!(addresses
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 7000));
    }
}
