//! Why a client command failed, as one line for the user and one exit code for scripts.

use crate::proto::wire::ErrorCode;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a client command failed. Each kind maps to an exit code (see [`ClientError::exit_code`]).
#[derive(Debug)]
pub enum ClientError {
    /// A local file or socket problem.
    Local {
        /// What was being done, naming the path (`cannot write /x/y`).
        context: String,
        /// The OS error.
        source: io::Error,
        /// What the user should know beyond the error (a partial file kept for resume).
        hint: Option<String>,
    },
    /// The server refused or ended the transfer.
    Server {
        /// The server's code.
        code: ErrorCode,
        /// The message for the user (already sanitised).
        text: String,
    },
    /// The server stopped answering, or nothing listens at its address.
    NotResponding {
        /// The server's address.
        server: SocketAddr,
        /// Sends of the unanswered message.
        tries: u32,
        /// How long the client waited.
        elapsed: Duration,
        /// The server's host said that no program listens on that port (an ICMP
        /// port-unreachable), rather than staying silent.
        port_closed: bool,
        /// What the user should know beyond the error (a partial file kept for resume).
        hint: Option<String>,
    },
    /// The transfer failed at this end (checksum mismatch, a broken server, Ctrl-C...).
    Transfer {
        /// The code sent to the server.
        code: ErrorCode,
        /// What went wrong.
        text: String,
    },
}

/// The exit code of a transfer cancelled by the user (Ctrl-C): 128 + SIGINT, as shells do.
pub const EXIT_INTERRUPTED: i32 = 130;

impl ClientError {
    /// The process exit code for this error: 3 local, 4 refused by the server,
    /// 5 server not responding, 6 integrity (checksum), 130 cancelled by the user,
    /// 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Local { .. } => 3,
            Self::Server { .. } => 4,
            Self::NotResponding { .. } => 5,
            Self::Transfer {
                code: ErrorCode::ChecksumMismatch,
                ..
            } => 6,
            Self::Transfer {
                code: ErrorCode::Cancelled,
                ..
            } => EXIT_INTERRUPTED,
            Self::Transfer { .. } => 1,
        }
    }

    /// `server` stopped answering: `tries` sends of the last message over `elapsed`.
    pub fn silent(server: SocketAddr, tries: u32, elapsed: Duration) -> Self {
        Self::NotResponding {
            server,
            tries,
            elapsed,
            port_closed: false,
            hint: None,
        }
    }

    /// Nothing listens at `server` (its host answered the `sent` datagrams with an ICMP
    /// port-unreachable).
    pub fn port_closed(server: SocketAddr, sent: u64) -> Self {
        Self::NotResponding {
            server,
            tries: u32::try_from(sent).unwrap_or(u32::MAX).max(1),
            elapsed: Duration::ZERO,
            port_closed: true,
            hint: None,
        }
    }

    /// A local error with what was being done.
    pub fn local(context: impl Into<String>, source: io::Error) -> Self {
        Self::Local {
            context: context.into(),
            source,
            hint: None,
        }
    }

    /// Whether this is a write into a pipe whose reader has gone (`udpft get x -o - |
    /// head`): the reader had what it wanted, so the command ends quietly, as `cat` does.
    pub fn is_closed_pipe(&self) -> bool {
        matches!(self, Self::Local { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// Whether the user cancelled the transfer (Ctrl-C).
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            Self::Transfer {
                code: ErrorCode::Cancelled,
                ..
            }
        )
    }

    /// The same error, telling the user `hint` as well.
    pub fn with_hint(mut self, extra: String) -> Self {
        match &mut self {
            Self::Local { hint, .. } | Self::NotResponding { hint, .. } => *hint = Some(extra),
            Self::Server { text, .. } | Self::Transfer { text, .. } => {
                text.push_str("; ");
                text.push_str(&extra);
            }
        }
        self
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self {
            Self::Local {
                context,
                source,
                hint,
                ..
            } => {
                write!(f, "{context}: {}", describe(source))?;
                hint
            }
            Self::Server { text, .. } | Self::Transfer { text, .. } => return f.write_str(text),
            Self::NotResponding {
                server,
                port_closed: true,
                hint,
                ..
            } => {
                write!(f, "nothing is listening at {server}")?;
                hint
            }
            Self::NotResponding {
                server,
                tries,
                elapsed,
                hint,
                ..
            } => {
                write!(
                    f,
                    "server {server} not responding ({tries} tries over {:.1} s)",
                    elapsed.as_secs_f64()
                )?;
                hint
            }
        };
        match hint {
            Some(hint) => write!(f, "; {hint}"),
            None => Ok(()),
        }
    }
}

/// An OS error as a person reads it: `No such file or directory`, without Rust's
/// ` (os error 2)` suffix.
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Local { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_errors_read_like_the_shell_tools() {
        let error = ClientError::local(
            "cannot write /nope/x",
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(
            error.to_string(),
            "cannot write /nope/x: No such file or directory"
        );
        assert_eq!(error.exit_code(), 3);
        let hinted = error.with_hint("the partial file is kept".into());
        assert_eq!(
            hinted.to_string(),
            "cannot write /nope/x: No such file or directory; the partial file is kept"
        );
    }

    #[test]
    fn a_closed_port_and_silence_read_differently() {
        let server: SocketAddr = "127.0.0.1:7999".parse().unwrap();
        let refused = ClientError::NotResponding {
            server,
            tries: 1,
            elapsed: Duration::from_millis(1),
            port_closed: true,
            hint: None,
        };
        assert_eq!(
            refused.to_string(),
            "nothing is listening at 127.0.0.1:7999"
        );
        assert_eq!(refused.exit_code(), 5);
        let silent = ClientError::NotResponding {
            server,
            tries: 21,
            elapsed: Duration::from_secs(5),
            port_closed: false,
            hint: None,
        };
        assert_eq!(
            silent.to_string(),
            "server 127.0.0.1:7999 not responding (21 tries over 5.0 s)"
        );
    }
}
