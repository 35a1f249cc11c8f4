//! How a command of the command line (or a line of the shell) fails: one line on standard
//! error, `udpft: ...`, and the exit code of the README's table.

use udpft::client::ClientError;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The arguments ask for something that cannot be done (exit 2, as clap's own errors).
    Usage(String),
    /// A client error, not yet shown.
    Client(ClientError),
    /// Failures already shown one by one (several files); the exit code of the first.
    Reported(i32),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Self::Client(error)
    }
}

impl Failure {
    /// The process exit code. A closed output pipe ends the command quietly, like `cat`.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::Client(e) if e.is_closed_pipe() => 0,
            Self::Client(e) => e.exit_code(),
            Self::Reported(code) => *code,
        }
    }

    /// Prints the error line, unless there is nothing to say.
    pub(crate) fn show(&self) {
        match self {
            Self::Usage(text) => eprintln!("udpft: {text}"),
            Self::Client(e) if e.is_closed_pipe() => {}
            Self::Client(e) => eprintln!("udpft: {e}"),
            Self::Reported(_) => {}
        }
    }

    /// Shows it now and returns what remains to tell the caller: the exit code.
    pub(crate) fn shown(self) -> Self {
        self.show();
        Self::Reported(self.exit_code())
    }
}
