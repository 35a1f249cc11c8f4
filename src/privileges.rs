//! Giving up root after binding: a server started as root to bind a privileged port (TFTP's
//! 69) switches to an ordinary user and group, as tftpd-hpa's `-u` does, in the only safe
//! order: supplementary groups, then the group, then the user (once the user is changed,
//! the groups can no longer be). It then checks that root cannot be regained.
//!
//! The library's confinement does not depend on any of this (names never leave the root
//! and symlinks are never followed); this is defence in depth. A server that would stay
//! root while accepting uploads is refused unless the operator says so explicitly
//! ([`refuse_root_with_uploads`]), since a bug in the upload path would then write as root.

use nix::unistd::{self, Gid, Group, Uid, User};
use std::fmt;

/// Why privileges could not be dropped, or why the server refuses to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrivilegeError {
    /// No such user.
    UnknownUser(String),
    /// No such group.
    UnknownGroup(String),
    /// Switching needs root, and this process is not root (and is not that user already).
    NotRoot,
    /// A system call failed.
    System(&'static str, nix::errno::Errno),
    /// After the switch, root could be regained: the switch did not hold.
    StillPrivileged,
    /// Running as root with uploads allowed, without being told to.
    RootWithUploads,
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownUser(name) => write!(f, "no such user: {name}"),
            Self::UnknownGroup(name) => write!(f, "no such group: {name}"),
            Self::NotRoot => f.write_str("only root can switch to another user"),
            Self::System(call, errno) => write!(f, "{call} failed: {errno}"),
            Self::StillPrivileged => f.write_str("root privileges could be regained after dropping them"),
            Self::RootWithUploads => f.write_str(
                "refusing to run as root with uploads allowed: use --user NAME (or say explicitly that root is wanted)",
            ),
        }
    }
}

impl std::error::Error for PrivilegeError {}

/// The user and group to switch to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The user's id.
    pub uid: Uid,
    /// The group's id: the one named, or the user's primary group.
    pub gid: Gid,
    /// The user's name, for logs.
    pub user: String,
}

/// Looks up `user` (and `group`, or else the user's primary group).
///
/// # Errors
/// An unknown user or group, or a failed look-up.
pub fn resolve(user: &str, group: Option<&str>) -> Result<Target, PrivilegeError> {
    let found = User::from_name(user)
        .map_err(|e| PrivilegeError::System("getpwnam", e))?
        .ok_or_else(|| PrivilegeError::UnknownUser(user.to_owned()))?;
    let gid = match group {
        Some(name) => {
            Group::from_name(name)
                .map_err(|e| PrivilegeError::System("getgrnam", e))?
                .ok_or_else(|| PrivilegeError::UnknownGroup(name.to_owned()))?
                .gid
        }
        None => found.gid,
    };
    Ok(Target {
        uid: found.uid,
        gid,
        user: found.name,
    })
}

/// Switches this process to `target`: supplementary groups to the target group alone, then
/// the group, then the user; then checks that root cannot be regained. Call it after every
/// socket is bound and before any request is served. Already being that user is fine.
///
/// # Errors
/// Not root (and not already the target), a failed system call, or a switch that did not
/// hold.
pub fn drop_to(target: &Target) -> Result<(), PrivilegeError> {
    if !unistd::geteuid().is_root() {
        return if unistd::geteuid() == target.uid && unistd::getegid() == target.gid {
            Ok(())
        } else {
            Err(PrivilegeError::NotRoot)
        };
    }
    unistd::setgroups(&[target.gid]).map_err(|e| PrivilegeError::System("setgroups", e))?;
    unistd::setgid(target.gid).map_err(|e| PrivilegeError::System("setgid", e))?;
    unistd::setuid(target.uid).map_err(|e| PrivilegeError::System("setuid", e))?;
    if !target.uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::StillPrivileged);
    }
    Ok(())
}

/// Drops to `user` (and `group`) if one is named; does nothing otherwise.
///
/// # Errors
/// As [`resolve`] and [`drop_to`].
pub fn drop_privileges(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Target>, PrivilegeError> {
    let Some(user) = user else {
        return Ok(None);
    };
    let target = resolve(user, group)?;
    drop_to(&target)?;
    Ok(Some(target))
}

/// The rule for running as root: a process whose effective user is `euid` may serve
/// uploads (`uploads`) as root only when `allow_root` says so.
///
/// # Errors
/// [`PrivilegeError::RootWithUploads`] when it would.
pub fn check_root_with_uploads(
    euid: Uid,
    uploads: bool,
    allow_root: bool,
) -> Result<(), PrivilegeError> {
    if euid.is_root() && uploads && !allow_root {
        return Err(PrivilegeError::RootWithUploads);
    }
    Ok(())
}

/// [`check_root_with_uploads`] for this process, after any [`drop_privileges`].
///
/// # Errors
/// [`PrivilegeError::RootWithUploads`].
pub fn refuse_root_with_uploads(uploads: bool, allow_root: bool) -> Result<(), PrivilegeError> {
    check_root_with_uploads(unistd::geteuid(), uploads, allow_root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn root_with_uploads_is_refused_unless_allowed() {
        let root = Uid::from_raw(0);
        let user = Uid::from_raw(1000);
        assert_eq!(
            check_root_with_uploads(root, true, false),
            Err(PrivilegeError::RootWithUploads)
        );
        assert_eq!(check_root_with_uploads(root, true, true), Ok(()));
        assert_eq!(check_root_with_uploads(root, false, false), Ok(()));
        assert_eq!(check_root_with_uploads(user, true, false), Ok(()));
    }

    #[test]
    fn users_and_groups_are_looked_up() {
        let root = resolve("root", None).unwrap();
        assert!(root.uid.is_root());
        assert_eq!(root.gid, Gid::from_raw(0));
        assert_eq!(
            resolve("no-such-user-udpft", None),
            Err(PrivilegeError::UnknownUser("no-such-user-udpft".into()))
        );
        assert_eq!(
            resolve("root", Some("no-such-group-udpft")),
            Err(PrivilegeError::UnknownGroup("no-such-group-udpft".into()))
        );
        assert_eq!(drop_privileges(None, None), Ok(None));
    }

    /// Says the test could not run here (stderr, and `$UDPFT_SKIPPED` for CI's count).
    fn skip(reason: &str) {
        eprintln!("SKIPPED: dropping_root_holds: {reason}");
        if let Some(path) = std::env::var_os("UDPFT_SKIPPED") {
            use std::io::Write;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            let _ = file.map(|mut f| writeln!(f, "dropping_root_holds: {reason}"));
        }
    }

    /// Set in the child process that [`dropping_root_holds`] starts.
    const CHILD: &str = "UDPFT_PRIVILEGES_CHILD";

    #[test]
    fn dropping_root_holds() {
        if std::env::var_os(CHILD).is_some() {
            return drop_and_check();
        }
        if !unistd::geteuid().is_root() {
            return skip("dropping privileges needs root");
        }
        if User::from_name("nobody").ok().flatten().is_none() {
            return skip("no user nobody here");
        }
        // The switch is process-wide: it runs in a child, this very test binary running
        // only this test, which then drops and checks.
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--exact",
                "privileges::tests::dropping_root_holds",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran its test: {text}");
    }

    /// The child's half of [`dropping_root_holds`]: drop to `nobody`, then check.
    fn drop_and_check() {
        let target = drop_privileges(Some("nobody"), None).unwrap().unwrap();
        assert_eq!(unistd::getuid(), target.uid);
        assert_eq!(unistd::geteuid(), target.uid);
        assert_eq!(unistd::getgid(), target.gid);
        assert_eq!(unistd::getgroups().unwrap(), vec![target.gid]);
        assert!(
            unistd::setuid(Uid::from_raw(0)).is_err(),
            "root cannot be regained"
        );
        // Root's own folder is now closed.
        assert!(std::fs::File::create("/root/.udpft-privileges-test").is_err());
        assert_eq!(refuse_root_with_uploads(true, false), Ok(()));
        // Dropping again to the same user is fine; to another is not possible.
        assert_eq!(drop_to(&target), Ok(()));
        assert_eq!(
            drop_privileges(Some("root"), None),
            Err(PrivilegeError::NotRoot)
        );
    }
}
