//! `udpft`, the command line: `serve` a library, or `ls`, `get`, `put`, `sum` and `shell` as a
//! client; `completions` and `man` print documentation generated from the same
//! definitions. The front ends live in `src/cli/`; the work is done by the library crate.

#![deny(unsafe_code)]

mod cli;

use clap::Parser;
use cli::args::{Cli, ClientArgs, Command};
use cli::commands::{self, Context};
use cli::failure::Failure;
use std::process::ExitCode;

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(args) => cli::serve::run(&args),
        Command::Completions { shell } => cli::docs::completions(shell),
        Command::Man => cli::docs::man(),
        Command::Ls { args, common } => {
            with_client(&common, |ctx| commands::ls(ctx, &args).map(drop))
        }
        Command::Get { args, common } => with_client(&common, |ctx| commands::get(ctx, &args)),
        Command::Put { args, common } => {
            with_client(&common, |ctx| commands::put(ctx, &args).map(drop))
        }
        Command::Sum { args, common } => with_client(&common, |ctx| commands::sum(ctx, &args)),
        Command::Shell { common } => with_client(&common, cli::shell::run),
    };
    udpft::net::turnaround::report();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.show();
            ExitCode::from(u8::try_from(failure.exit_code()).unwrap_or(1))
        }
    }
}

/// Runs `command` with the clients `common` describes. They are dropped (finishing a
/// download's linger, a few round trips) after the command has shown its result.
fn with_client(
    common: &ClientArgs,
    command: impl FnOnce(&mut Context) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let interrupt = cli::interrupt::install()?;
    let mut ctx = Context::new(common, interrupt);
    command(&mut ctx)
}
