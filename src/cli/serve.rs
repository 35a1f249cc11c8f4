//! `udpft serve`: opens the library folder, says at once which folder is served and how
//! many files it holds, and runs the chosen server model until Ctrl-C or SIGTERM.
//!
//! The default folder, `./library`, is created if missing (a first run just works); a
//! folder named with `--root` must exist unless `--create` is given, so a mistyped path
//! does not silently serve a new empty folder.

use super::args::ServeArgs;
use super::failure::Failure;
use std::io;
use std::path::PathBuf;
use udpft::client::ClientError;
use udpft::library::{Library, LibraryOptions};
use udpft::privileges;
use udpft::proto::access::AccessList;
use udpft::proto::admission::{Limits, Policy};
use udpft::proto::Config;
use udpft::server::{self, ServerConfig, Shutdown};
use udpft::tftp::admit::TftpPolicy;

/// The folder served when `--root` is not given.
const DEFAULT_ROOT: &str = "library";

/// Runs the server.
pub(crate) fn run(args: &ServeArgs) -> Result<(), Failure> {
    let (root, created) = root_folder(args)?;
    let bind = *args
        .bind
        .resolve()?
        .first()
        .expect("resolve returns at least one address");
    let library = Library::open(&root, LibraryOptions { create: created })
        .map_err(|e| ClientError::local(format!("cannot open library {}", root.display()), e))?;
    let files = library
        .entries()
        .map_err(|e| ClientError::local(format!("cannot read {}", library.root().display()), e))?
        .len();
    let config = server_config(args);
    let sockets = server::bind_for(bind, &config)
        .map_err(|e| ClientError::local(format!("cannot listen on {bind}"), e))?;
    let local = sockets[0].local_addr().unwrap_or(bind);
    drop_privileges(args)?;
    let shutdown = Shutdown::new();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, shutdown.flag())
            .map_err(|e| ClientError::local("cannot install signal handler", e))?;
    }
    eprintln!(
        "udpft: serving {} ({}{}) on {local} (model {}, Ctrl-C to stop)",
        library.root().display(),
        match files {
            1 => "1 file".to_owned(),
            n => format!("{n} files"),
        },
        if created { ", just created" } else { "" },
        config.model
    );
    let stats = server::serve(sockets, library, &config, &shutdown)
        .map_err(|e| ClientError::local("server loop failed", e))?;
    eprintln!("udpft: stopped; {}", stats.summary());
    Ok(())
}

/// Drops root after binding (`--user`), and refuses to take TFTP uploads as root unless
/// told to (`--allow-root`).
fn drop_privileges(args: &ServeArgs) -> Result<(), Failure> {
    let failed = |e: udpft::privileges::PrivilegeError| {
        ClientError::local(
            "cannot drop privileges",
            std::io::Error::other(e.to_string()),
        )
    };
    let user = args.user.as_deref();
    if let Some(target) =
        privileges::drop_privileges(user, args.group.as_deref()).map_err(failed)?
    {
        eprintln!(
            "udpft: running as {} (uid {}, gid {})",
            target.user, target.uid, target.gid
        );
    }
    // TFTP uploads have no address proof and no checksum: as root they are refused.
    privileges::refuse_root_with_uploads(args.tftp_write, args.allow_root).map_err(failed)?;
    Ok(())
}

/// What the server decides by, from its options.
fn server_config(args: &ServeArgs) -> ServerConfig {
    let timeout = args.timeout;
    ServerConfig {
        policy: Policy {
            session: Config {
                chunk: args.max_chunk,
                window: args.max_window,
                timeout,
                // Remember a completed upload as long as a client would retry a lost final
                // Ack.
                linger_min: timeout,
                ..Config::default()
            },
            limits: Limits {
                max_sessions: args.max_sessions,
                max_per_address: args.max_per_address,
                max_sum: args.max_sum,
                ..Limits::default()
            },
            access: AccessList::new(args.allow.clone(), args.deny.clone()),
            upload_access: AccessList::new(args.allow_upload.clone(), Vec::new()),
            read_only: args.read_only,
            max_upload: args.max_upload,
            grace: args.grace,
            tftp: args.tftp.then(|| TftpPolicy {
                options: udpft::tftp::options::Policy {
                    max_window: args.max_window,
                    ..udpft::tftp::options::Policy::default()
                },
                write: args.tftp_write,
                overwrite: args.tftp_overwrite,
                unproven_rate: args.tftp_unproven_rate,
                unproven_prefix_rate: args.tftp_unproven_prefix_rate,
            }),
        },
        model: args.model,
        workers: usize::from(args.workers),
        cpu_workers: args
            .cpu_workers
            .map_or_else(server::default_cpu_workers, usize::from),
        stats_every: args.stats_every,
        log: args.log_format,
        busy_poll: args.busy_poll,
    }
}

/// The folder to serve, and whether it was just created.
fn root_folder(args: &ServeArgs) -> Result<(PathBuf, bool), Failure> {
    let (root, may_create) = match &args.root {
        Some(root) => (root.clone(), args.create),
        None => (PathBuf::from(DEFAULT_ROOT), true),
    };
    match root.try_exists() {
        Ok(true) if !root.is_dir() => Err(ClientError::local(
            format!("cannot serve {}", root.display()),
            io::Error::from_raw_os_error(libc::ENOTDIR),
        )
        .into()),
        Ok(true) => Ok((root, false)),
        Ok(false) if may_create => Ok((root, true)),
        Ok(false) => Err(ClientError::local(
            format!("cannot serve {}", root.display()),
            io::Error::from_raw_os_error(libc::ENOENT),
        )
        .with_hint("give --create to create it".into())
        .into()),
        Err(e) => Err(ClientError::local(format!("cannot serve {}", root.display()), e).into()),
    }
}
