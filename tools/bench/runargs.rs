//! The arguments the `window`, `bottleneck` and `fairness` scenarios share: where their
//! outputs go, the child binaries, the client's give-up time, the run's time budget and its
//! seed, and what follows from them.

use crate::download::secs;
use crate::results::Table;
use clap::Args;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// How a scenario runs.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Folder for the outputs (created if missing).
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    pub out: PathBuf,
    /// The client gives up after this many seconds without progress.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// Stop starting new rounds after this many seconds overall.
    #[arg(long, default_value_t = 900.0, value_name = "SECS")]
    pub max_seconds: f64,
    /// Seed of the file bytes and of the proxies' losses (round r: seed + r).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The `udpft` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// The `lossy-proxy` binary, for the scenarios that use one (default: next to this
    /// executable).
    #[arg(long, value_name = "PATH")]
    pub proxy_bin: Option<PathBuf>,
}

impl RunArgs {
    /// `--timeout` as a duration.
    ///
    /// # Errors
    /// If it is negative or absurd.
    pub fn timeout(&self) -> io::Result<Duration> {
        secs(self.timeout, "--timeout")
    }

    /// How long a proxy child may live at most: past the whole run, it stops by itself
    /// even if the benchmark is killed.
    ///
    /// # Errors
    /// If `--max-seconds` or `--timeout` is negative or absurd.
    pub fn proxy_lifetime(&self) -> io::Result<Duration> {
        Ok(
            secs(self.max_seconds, "--max-seconds")?
                + self.timeout()? * 4
                + Duration::from_secs(60),
        )
    }

    /// Prints a scenario's report and writes it to `--out` as NAME.md, with its summary
    /// `table` as NAME.csv and NAME.json.
    ///
    /// # Errors
    /// If the folder or a file cannot be written.
    pub fn write(&self, name: &str, table: &Table, markdown: &str) -> io::Result<()> {
        print!("{markdown}");
        std::fs::create_dir_all(&self.out)?;
        let stem = self.out.join(name);
        table.write_files(
            Some(&stem.with_extension("csv")),
            Some(&stem.with_extension("json")),
        )?;
        std::fs::write(stem.with_extension("md"), markdown)
    }
}
