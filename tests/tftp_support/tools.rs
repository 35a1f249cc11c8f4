//! The TFTP programs nobody here wrote (tftp-hpa's `tftp`, `atftp`, `busybox tftp`,
//! `curl`, tftpd-hpa's `in.tftpd`), found on the PATH. A missing one fails the test when
//! `CI` is set (CI installs them: `.ci/run`), and otherwise skips it with a printed reason.

use std::path::PathBuf;

/// The path of program `name`, or `None` (after saying why) when it is not installed
/// outside CI.
///
/// # Panics
/// When it is missing and the environment variable `CI` is set.
pub fn find(name: &str, package: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    let found = std::env::split_paths(&dirs)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} (Debian package {package}) is missing; .ci/run installs it"
        );
        crate::live::skip(&format!("{name} not installed (apt-get install {package})"));
    }
    found
}
