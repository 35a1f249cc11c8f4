//! File names in TFTP requests, judged by the library's own rules
//! ([`crate::library::check_name`]) with two TFTP customs: a single leading `/` means the
//! root (boot ROMs ask for `/pxelinux.0`), and a name with folders in it (`/` or `\`
//! separators) is *not found*, since the library is flat and a client asking for
//! `boot/x86/file` should hear that it is not there rather than that it is forbidden.

use super::codes::{TftpCode, TftpError};

/// The library name a request's `filename` stands for.
///
/// # Errors
/// Not found (1) for a name with folders; access violation (2) for a name the library
/// refuses (hidden, `..`, control characters, not UTF-8, too long...), with its reason.
pub fn library_name(filename: &[u8]) -> Result<&str, TftpError> {
    let name = filename.strip_prefix(b"/").unwrap_or(filename);
    if name.contains(&b'/') || name.contains(&b'\\') {
        return Err(TftpError::new(
            TftpCode::NotFound,
            "file not found: the library has no folders",
        ));
    }
    crate::library::check_name(name).map_err(|refusal| TftpError::from_refusal(&refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_slash_is_the_root() {
        assert_eq!(library_name(b"/pxelinux.0"), Ok("pxelinux.0"));
        assert_eq!(library_name(b"pxelinux.0"), Ok("pxelinux.0"));
    }

    #[test]
    fn folders_are_not_found() {
        for name in [
            &b"a/b"[..],
            b"/a/b",
            b"//a",
            b"../etc/passwd",
            b"boot\\x86\\f",
        ] {
            assert_eq!(
                library_name(name).map_err(|e| e.code),
                Err(TftpCode::NotFound)
            );
        }
    }

    #[test]
    fn names_the_library_refuses_are_access_violations() {
        for name in [
            &b"/"[..],
            b"..",
            b".hidden",
            b"/.hidden",
            b"esc\x1b[2J",
            b"\xff",
        ] {
            let err = library_name(name).expect_err("refused");
            assert_eq!(err.code, TftpCode::AccessViolation, "{name:?}");
            assert!(err.text.starts_with("name not allowed"), "{}", err.text);
        }
    }
}
