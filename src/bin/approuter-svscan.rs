//! The supervisor `approuter start` runs: `approuter svscan` and nothing else of approuter (no git, TLS or HTTP client linked in), so that one supervisor costs little beside its services.

// The supervisor's code, shared with `approuter svscan` (one home: src/supervise/), and what it
// uses of /proc and util; the rest of those files (approuter as a client of svscan, atomic
// writes...) is approuter's and unused here.
#[allow(dead_code)]
#[path = "../supervise/mod.rs"]
mod supervise;

#[allow(dead_code)]
#[path = "../ext/procfs.rs"]
mod ext_procfs;
#[allow(dead_code)]
#[path = "../util/file.rs"]
mod util_file;
#[allow(dead_code)]
#[path = "../util/pidlock.rs"]
mod util_pidlock;
#[allow(dead_code)]
#[path = "../util/poll.rs"]
mod util_poll;
#[allow(dead_code)]
#[path = "../util/tai64.rs"]
mod util_tai64;

/// The paths the supervisor's code names them by (`crate::util::pidlock`...).
mod ext {
    pub(crate) use super::ext_procfs as procfs;
}
mod util {
    pub(crate) use super::util_file as file;
    pub(crate) use super::util_pidlock as pidlock;
    pub(crate) use super::util_poll as poll;
    pub(crate) use super::util_tai64 as tai64;
}

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "approuter-svscan",
    version,
    about = "Supervise every service directory in DIR, in the foreground (runit/daemontools compatible): `approuter svscan` in a binary of its own"
)]
struct Cli {
    /// Seconds a stopping service gets between TERM and KILL
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    grace: u64,
    /// The directory of service directories
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: malloc_trim only releases free memory (what parsing the command line used).
    unsafe { nix::libc::malloc_trim(0) };
    match supervise::scan::run(supervise::scan::Options {
        dir: cli.dir,
        grace: Duration::from_secs(cli.grace),
    }) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("approuter-svscan: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
