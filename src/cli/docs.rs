//! The documentation generated from the clap definitions: completion scripts for the
//! user's shell (`udpft completions bash`) and the manual page (`udpft man`).

use super::args::Cli;
use super::failure::Failure;
use super::output::print_out;
use clap::CommandFactory;
use udpft::client::ClientError;

/// Prints the completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "udpft", &mut out);
    print_out(out)
}

/// Prints the manual page, in roff.
pub(crate) fn man() -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| ClientError::local("cannot render the manual page", e))?;
    print_out(out)
}
