//! Access lists: which peer addresses may use the server at all, and which may upload.
//!
//! A list holds `--allow` and `--deny` prefixes (IPv4 and IPv6, CIDR notation); an address
//! is permitted when no deny prefix holds it and either no allow prefix was given or one
//! holds it: deny wins. IPv4 peers reaching an IPv6 socket arrive as IPv4-mapped addresses
//! (`::ffff:a.b.c.d`) and are judged as the IPv4 addresses they are.

use ipnet::IpNet;
use std::net::IpAddr;
use std::str::FromStr;

/// One access list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessList {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl AccessList {
    /// A list that permits every address.
    pub fn everyone() -> Self {
        Self::default()
    }

    /// A list of `allow` and `deny` prefixes.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        Self { allow, deny }
    }

    /// Whether `ip` is permitted.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let holds = |nets: &[IpNet]| nets.iter().any(|net| net.contains(&ip));
        !holds(&self.deny) && (self.allow.is_empty() || holds(&self.allow))
    }

    /// Whether this list permits every address.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Parses one prefix of an access list: `10.0.0.0/8`, `::1/128`, or a plain address (a
/// prefix of one address).
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = IpNet::from_str(text) {
        return Ok(net.trunc());
    }
    IpAddr::from_str(text)
        .map(|ip| IpNet::from(ip.to_canonical()))
        .map_err(|_| format!("{text:?} is not an address or CIDR prefix (e.g. 10.0.0.0/8, ::1)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(allow: &[&str], deny: &[&str]) -> AccessList {
        let parse = |v: &[&str]| v.iter().map(|t| parse_prefix(t).unwrap()).collect();
        AccessList::new(parse(allow), parse(deny))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_empty_list_permits_everyone() {
        assert!(AccessList::everyone().permits(ip("192.0.2.1")));
        assert!(AccessList::everyone().permits(ip("::1")));
    }

    #[test]
    fn allow_limits_and_deny_wins() {
        let l = list(&["127.0.0.0/8", "::1"], &["127.0.0.66"]);
        assert!(l.permits(ip("127.0.0.1")));
        assert!(l.permits(ip("::1")));
        assert!(!l.permits(ip("127.0.0.66")), "deny wins over allow");
        assert!(!l.permits(ip("192.0.2.1")), "outside every allow prefix");
        assert!(!l.permits(ip("::2")));
    }

    #[test]
    fn mapped_ipv4_is_judged_as_ipv4() {
        let l = list(&[], &["10.0.0.0/8"]);
        assert!(!l.permits(ip("::ffff:10.1.2.3")));
        assert!(l.permits(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn prefixes_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_prefix("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_prefix("::1").unwrap().to_string(), "::1/128");
        assert!(parse_prefix("10.0.0.0/33")
            .unwrap_err()
            .contains("10.0.0.0/33"));
        assert!(parse_prefix("example.com").is_err());
    }
}
