//! One file per subcommand: each parses nothing (clap did), runs its part of approuter, and prints what the operator sees.

pub mod check;
pub mod demo;
pub mod init;
pub mod instance_exec;
pub mod logs;
pub mod manpages;
pub mod preview;
pub mod shutdown;
pub mod start;
pub mod status;
pub mod stop;
pub mod switch;
pub mod sync;
pub mod systemd;

use anyhow::{bail, Result};
use std::process::ExitCode;
use std::time::Duration;

use crate::deploy::generate::list_services;
use crate::deploy::lock::{self, Busy};
use crate::layout::Layout;
use crate::supervise::client;
use crate::supervise::status::Status;
use crate::util::pidlock::PidLock;

/// Takes approuter's lock for a command that changes state: waits for whoever holds it, or with
/// `no_wait` refuses naming them. The configuration is checked first, so that a refusal
/// creates nothing (not even the lock file).
pub fn exclusive(layout: &Layout, command: &str, no_wait: bool) -> Result<PidLock> {
    check_configuration(layout, command)?;
    let busy = if no_wait { Busy::Refuse } else { Busy::Wait };
    Ok(lock::take(layout, command, busy)?.expect("only sync leaves without the lock"))
}

/// What a command needs of the configuration before it takes the lock: controlling services
/// (`start SERVICE`, `stop`, `shutdown`) must work with a configuration broken since `start`;
/// `demo` writes its own.
pub fn check_configuration(layout: &Layout, command: &str) -> Result<()> {
    match command {
        "demo" | "start SERVICE" | "stop" | "shutdown" => Ok(()),
        _ => crate::config::Config::load(layout).map(drop),
    }
}

/// Every command but `init`, `demo` and the supervision tools needs an approuter here: its
/// configuration (`managed/etc/repo.conf`) or, for a running environment whose configuration
/// went missing, its service directories. Without either, it says so and creates nothing.
pub fn require_here(layout: &Layout) -> Result<()> {
    let repo_conf = layout.etc_file("repo.conf");
    if repo_conf.exists() || layout.service_dir().is_dir() {
        return Ok(());
    }
    bail!(
        "there is no approuter in {} ({} does not exist): run `approuter init --repo URL` there, or name the right directory with --root or APPROUTER_ROOT",
        layout.root().display(),
        repo_conf.display()
    )
}

/// Success or failure as an exit status.
pub fn exit_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Service names asked for, checked against the service directories; none means all.
pub fn select(layout: &Layout, names: &[String]) -> Result<Vec<String>> {
    let known = list_services(&layout.service_dir())?;
    if names.is_empty() {
        return Ok(known);
    }
    for n in names {
        if !known.contains(n) {
            if known.is_empty() {
                bail!("unknown service `{n}`: there are no services yet; run `approuter generate` or `approuter start`");
            }
            bail!(
                "unknown service `{n}`; known services: {}",
                known.join(", ")
            );
        }
    }
    Ok(names.to_vec())
}

/// Sends control `bytes` to the named services, waits until `done` holds for each (or
/// `timeout`), and shows their panel lines. True when every one got there.
pub fn control(
    layout: &Layout,
    names: &[String],
    bytes: &[u8],
    timeout: Duration,
    done: impl Fn(&Status) -> bool,
) -> Result<bool> {
    let services: Vec<_> = names
        .iter()
        .map(|n| (n.as_str(), layout.service(n)))
        .collect();
    let ok = client::control_and_wait(&services, bytes, timeout, done)?;
    status::settle(layout, names);
    status::panel(layout, names, false)?;
    Ok(ok)
}
