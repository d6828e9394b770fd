//! What rendering needs from the machine rather than from the plan: this binary's path and how nginx is installed.

use anyhow::{Context, Result};
use std::path::PathBuf;

use crate::config::Config;
use crate::ext::nginx;

/// Where things are installed on this machine.
#[derive(Debug, Clone)]
pub struct Host {
    /// This binary, by absolute path: cron's PATH is bare and run scripts exec it.
    pub exe: PathBuf,
    /// The logger a `log/run` execs, up to its options: the lean `approuter-svlogd` installed
    /// beside this binary, else `approuter svlogd`.
    pub logger: Vec<String>,
    /// The nginx command line up to, not including, `-p`: the binary and options that depend on its version.
    pub nginx_cmd: Vec<String>,
    /// The user nginx's workers run as, when nginx starts as root.
    pub worker_user: Option<String>,
    /// A systemd unit starts approuter at boot here (`approuter systemd-unit --write`): the
    /// crontab then has no `@reboot` line, which would start it a second way.
    pub systemd_unit: bool,
}

impl Host {
    /// Finds this binary and nginx on this machine.
    pub fn detect(config: &Config) -> Result<Host> {
        let exe = this_exe()?;
        let bin = nginx::locate(config.settings.nginx.as_deref())?;
        let version = nginx::version(&bin)?;
        let logger = logger_command(&exe);
        Ok(Host {
            exe,
            logger,
            nginx_cmd: nginx::base_command(&bin, version),
            worker_user: nginx::worker_user(),
            systemd_unit: false,
        })
    }
}

/// The lean logger beside `exe` when it is there and executable, else `exe svlogd`.
pub fn logger_command(exe: &std::path::Path) -> Vec<String> {
    lean_or_subcommand(exe, LEAN_LOGGER, "svlogd")
}

/// The lean logger's file name (a second binary of this crate, src/bin/).
pub const LEAN_LOGGER: &str = "approuter-svlogd";

/// The lean supervisor's file name (src/bin/ too).
pub const LEAN_SUPERVISOR: &str = "approuter-svscan";

/// The supervisor's command up to its options: `approuter-svscan` beside `exe` when it is
/// there, else `exe svscan`.
pub fn supervisor_command(exe: &std::path::Path) -> Vec<String> {
    lean_or_subcommand(exe, LEAN_SUPERVISOR, "svscan")
}

/// The lean binary `lean` beside `exe` when it is there and executable, else `exe subcommand`.
fn lean_or_subcommand(exe: &std::path::Path, lean: &str, subcommand: &str) -> Vec<String> {
    let lean = exe.with_file_name(lean);
    if crate::util::file::is_executable(&lean) {
        vec![lean.to_string_lossy().into_owned()]
    } else {
        vec![exe.to_string_lossy().into_owned(), subcommand.into()]
    }
}

/// This binary, by absolute path (cron's PATH is bare; run scripts and units name it).
pub fn this_exe() -> Result<PathBuf> {
    std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("finding the approuter binary's own path")
}
