//! The `udpft` command line: its grammar, and each command's front end. The work itself is
//! done by the library crate (`udpft::client`, `udpft::server`).
//!
//! * [`args`]: the clap definitions, shared by the command line and the shell.
//! * [`address`]: `--server` and `--bind` values (`HOST[:PORT]`, IPv6).
//! * [`url`]: `tftp://HOST[:PORT]/NAME` arguments (files on a TFTP server).
//! * [`commands`]: `ls`, `get` and `put` against the udpft server or TFTP servers, for one
//!   file or several.
//! * [`shell`] and [`complete`]: the interactive shell and its Tab completion.
//! * [`serve`]: `udpft serve`.
//! * [`progress`] and [`output`]: what is shown on standard error and standard output.
//! * [`interrupt`]: Ctrl-C. [`failure`]: error lines and exit codes. [`docs`]: completion
//!   scripts and the manual page.

pub(crate) mod address;
pub(crate) mod args;
pub(crate) mod commands;
pub(crate) mod complete;
pub(crate) mod docs;
pub(crate) mod failure;
pub(crate) mod interrupt;
pub(crate) mod output;
pub(crate) mod progress;
pub(crate) mod serve;
pub(crate) mod shell;
pub(crate) mod url;
