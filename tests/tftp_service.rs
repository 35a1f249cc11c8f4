//! The systemd unit `contrib/udpft.service` passes `systemd-analyze verify` (with its
//! ExecStart pointed at the binary just built, since the installed path does not exist
//! here), and keeps the confinement the service depends on. Skipped, with a printed reason,
//! where systemd-analyze is not installed.

mod live;

use std::process::Command;

const UNIT: &str = include_str!("../contrib/udpft.service");

#[test]
fn the_unit_keeps_its_confinement() {
    for line in [
        "User=udpft",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/srv/udpft",
        "ExecStart=/usr/local/bin/udpft serve --tftp --bind 0.0.0.0:69 --root /srv/udpft",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "missing: {line}");
    }
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        live::skip("systemd-analyze is not installed (Debian package systemd)");
        return;
    };
    assert!(found.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = UNIT.replace("/usr/local/bin/udpft", env!("CARGO_BIN_EXE_udpft"));
    let path = dir.path().join("udpft.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
}
