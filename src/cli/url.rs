//! `tftp://HOST[:PORT]/NAME` arguments: a file on a TFTP server, where `get` and `put`
//! otherwise take names in the udpft library.
//!
//! The form is RFC 3617's, with a port as curl and tftp-hpa take one: HOST is what
//! `--server` takes (a name, an IPv4 address, an IPv6 address in brackets), the port is 69
//! unless given, NAME is everything after the `/` that ends the host (it may hold further
//! `/`s: servers such as tftpd-hpa serve folders), with `%XX` escapes decoded (`%20` is a
//! space), and a final `;mode=netascii` or `;mode=octet` chooses the transfer mode
//! (RFC 3617 §2). A malformed URL is bad usage (exit 2), found before anything is sent.

use super::address::ServerAddr;
use std::fmt;
use udpft::client::{ClientError, TftpFile};
use udpft::text::sanitize;
use udpft::tftp::wire::Mode;

/// TFTP's well-known port.
pub(crate) const TFTP_PORT: u16 = 69;

const SCHEME: &str = "tftp://";
const MODE_KEY: &str = "mode=";

/// The longest name sent: a request must fit in the 512 bytes every TFTP server reads, with
/// its mode and options.
const MAX_NAME: usize = 400;

/// A parsed `tftp://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TftpUrl {
    /// The server.
    pub(crate) server: ServerAddr,
    /// The file's name on the server (decoded); empty, or ending in `/`, names a folder
    /// (for `put`, which adds each file's own name).
    pub(crate) name: String,
    /// The mode the URL asks for (`;mode=`), if any.
    pub(crate) mode: Option<Mode>,
}

/// Whether `text` is meant as a TFTP URL (its scheme, in any case).
pub(crate) fn is_tftp(text: &str) -> bool {
    text.get(..SCHEME.len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
}

impl TftpUrl {
    /// Parses `text`: `None` if it is no TFTP URL at all.
    ///
    /// # Errors
    /// A message for the user when it is one, malformed.
    pub(crate) fn parse(text: &str) -> Option<Result<Self, String>> {
        is_tftp(text).then(|| Self::parse_url(text))
    }

    fn parse_url(text: &str) -> Result<Self, String> {
        let shown = sanitize(text);
        let rest = &text[SCHEME.len()..];
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!(
                "{shown}: no server named (tftp://HOST[:PORT]/NAME)"
            ));
        }
        let server =
            ServerAddr::parse(authority, TFTP_PORT).map_err(|e| format!("{shown}: {e}"))?;
        // RFC 3617's `;mode=`, in any case.
        let with_mode = path.rsplit_once(';').and_then(|(path, tail)| {
            let key = tail.get(..MODE_KEY.len())?;
            key.eq_ignore_ascii_case(MODE_KEY)
                .then(|| (path, &tail[MODE_KEY.len()..]))
        });
        let (path, mode) = match with_mode {
            Some((path, mode)) => {
                let mode = match mode.to_ascii_lowercase().as_str() {
                    "netascii" => Mode::Netascii,
                    "octet" => Mode::Octet,
                    _ => {
                        return Err(format!(
                            "{shown}: mode {} is not netascii or octet",
                            sanitize(mode)
                        ))
                    }
                };
                (path, Some(mode))
            }
            None => (path, None),
        };
        let name = decode(path).map_err(|why| format!("{shown}: {why}"))?;
        if name.len() > MAX_NAME {
            return Err(format!(
                "{shown}: a name longer than {MAX_NAME} bytes does not fit in a TFTP request"
            ));
        }
        Ok(Self { server, name, mode })
    }

    /// Whether it names a folder rather than a file (empty, or ending in `/`).
    pub(crate) fn is_folder(&self) -> bool {
        self.name.is_empty() || self.name.ends_with('/')
    }

    /// The file `name` on this URL's server, its addresses resolved.
    ///
    /// # Errors
    /// If the host name does not resolve.
    pub(crate) fn file(&self, name: String) -> Result<TftpFile, ClientError> {
        Ok(TftpFile {
            addresses: self.server.resolve()?,
            shown: sanitize(&format!("{SCHEME}{}/{name}", self.server)),
            name,
        })
    }
}

impl fmt::Display for TftpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.server, sanitize(&self.name))
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8 without NUL (a request cannot carry it).
fn decode(path: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail
                .get(..2)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % must be followed by two hexadecimal digits")?;
            bytes.push(hex);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    if bytes.contains(&0) {
        return Err("a name cannot hold NUL (%00)".into());
    }
    String::from_utf8(bytes).map_err(|_| "the decoded name is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<(String, String, Option<Mode>), String> {
        TftpUrl::parse(text)
            .expect("a TFTP URL")
            .map(|u| (u.server.to_string(), u.name, u.mode))
    }

    #[test]
    fn every_form_gives_server_name_and_mode() {
        for (text, server, name, mode) in [
            (
                "tftp://boot.lan/pxelinux.0",
                "boot.lan:69",
                "pxelinux.0",
                None,
            ),
            ("TFTP://10.0.0.1:6969/a", "10.0.0.1:6969", "a", None),
            ("tftp://[::1]:6969/x", "[::1]:6969", "x", None),
            ("tftp://[::1]/x", "[::1]:69", "x", None),
            ("tftp://h/dir/file.bin", "h:69", "dir/file.bin", None),
            ("tftp://h/my%20file", "h:69", "my file", None),
            ("tftp://h/r%C3%A9sum%C3%A9", "h:69", "résumé", None),
            (
                "tftp://h/notes.txt;mode=netascii",
                "h:69",
                "notes.txt",
                Some(Mode::Netascii),
            ),
            ("tftp://h/f;MODE=octet", "h:69", "f", Some(Mode::Octet)),
            ("tftp://h/", "h:69", "", None),
            ("tftp://h", "h:69", "", None),
        ] {
            assert_eq!(
                parsed(text),
                Ok((server.to_owned(), name.to_owned(), mode)),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for (text, why) in [
            ("tftp:///x", "no server named"),
            ("tftp://host:99999/x", "is not a port number"),
            ("tftp://a b/x", "is not HOST"),
            ("tftp://h/x%2", "two hexadecimal digits"),
            ("tftp://h/x%zz", "two hexadecimal digits"),
            ("tftp://h/x%00y", "NUL"),
            ("tftp://h/%FF", "not UTF-8"),
            ("tftp://h/x;mode=mail", "is not netascii or octet"),
        ] {
            let error = parsed(text).expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
        let long = format!("tftp://h/{}", "n".repeat(MAX_NAME + 1));
        assert!(parsed(&long).unwrap_err().contains("does not fit"));
    }

    #[test]
    fn other_arguments_are_not_urls() {
        for text in ["name.txt", "tftp:/x", "tftp", "http://h/x", "./tftp://x"] {
            assert!(TftpUrl::parse(text).is_none(), "{text}");
        }
        assert!(TftpUrl::parse("tftp://h/a/").unwrap().unwrap().is_folder());
        assert!(!TftpUrl::parse("tftp://h/a").unwrap().unwrap().is_folder());
    }
}
