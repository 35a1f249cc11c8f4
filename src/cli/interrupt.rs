//! Ctrl-C in the client: the first press cancels the running transfer (the server is told,
//! a partial file is kept for resume) and stops the command, or in the shell returns to the
//! prompt; a second press while the first is still being handled ends the process at once.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use udpft::client::{ClientError, EXIT_INTERRUPTED};

/// Installs the handler; the returned flag is set by Ctrl-C (SIGINT) and cleared by the
/// caller once the interrupted command has ended.
///
/// # Errors
/// If the handler cannot be installed.
pub(crate) fn install() -> Result<Arc<AtomicBool>, ClientError> {
    let flag = Arc::new(AtomicBool::new(false));
    let cannot = |e: io::Error| ClientError::local("cannot install the Ctrl-C handler", e);
    // Registered first, so it sees the flag as it was before this press: set means the
    // previous press is still being handled.
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        EXIT_INTERRUPTED,
        Arc::clone(&flag),
    )
    .map_err(cannot)?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&flag)).map_err(cannot)?;
    Ok(flag)
}
