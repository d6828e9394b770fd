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
    /// The nginx command line up to, not including, `-p`: the binary and options that depend on its version.
    pub nginx_cmd: Vec<String>,
    /// The user nginx's workers run as, when nginx starts as root.
    pub worker_user: Option<String>,
}

impl Host {
    /// Finds this binary and nginx on this machine.
    pub fn detect(config: &Config) -> Result<Host> {
        let exe = std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .context("finding the approuter binary's own path")?;
        let bin = nginx::locate(config.settings.nginx.as_deref())?;
        let version = nginx::version(&bin)?;
        Ok(Host {
            exe,
            nginx_cmd: nginx::base_command(&bin, version),
            worker_user: nginx::worker_user(),
        })
    }
}
