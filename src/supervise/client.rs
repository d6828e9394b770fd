//! approuter as a client of its own supervisor: svscan's pid and signals, control bytes followed by a wait for their effect, and why a control byte could not be sent.

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::control;
use super::scan::SCAN_LOCK;
use super::status::{self, Probe, Status};
use crate::ext::procfs;
use crate::util::{pidlock, poll};

/// The pid of whatever holds `service_dir`'s scan lock (the kernel says who), if anything does.
pub fn svscan_pid(service_dir: &Path) -> Option<u32> {
    pidlock::holder(&service_dir.join(SCAN_LOCK))
}

/// The approuter svscan that supervises `service_dir`, if one does. Anything else holding its
/// lock is an error that names it: approuter cannot start while it does, and never signals it.
pub fn svscan(service_dir: &Path) -> Result<Option<u32>> {
    let Some(pid) = svscan_pid(service_dir) else {
        return Ok(None);
    };
    let argv = procfs::argv(pid).unwrap_or_default();
    // The directory as svscan was given it, relative to its own working directory.
    let scans = |dir: &str| {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        std::fs::canonicalize(cwd.join(dir)).ok() == std::fs::canonicalize(service_dir).ok()
    };
    // A process names itself as it likes: its user must be ours too.
    let ours = procfs::approuter_subcommand(&argv).as_deref() == Some("svscan")
        && procfs::uid(pid) == Some(nix::unistd::geteuid().as_raw())
        && argv.last().is_some_and(|d| scans(d));
    if !ours {
        anyhow::bail!(
            "{} is held by {}, not by approuter's svscan; end that process (approuter never signals what it did not start)",
            service_dir.join(SCAN_LOCK).display(),
            procfs::describe(pid)
        );
    }
    Ok(Some(pid))
}

/// Asks svscan to look at its directory now (SIGHUP); false when none runs.
pub fn rescan(service_dir: &Path) -> bool {
    signal_svscan(service_dir, Signal::SIGHUP).is_some()
}

/// Asks svscan to bring every service down and exit (SIGTERM). Returns its pid, or `None` when
/// none runs.
pub fn terminate(service_dir: &Path) -> Result<Option<u32>> {
    let Some(pid) = svscan(service_dir)? else {
        return Ok(None);
    };
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM)
        .with_context(|| format!("signalling svscan (pid {pid})"))?;
    Ok(Some(pid))
}

fn signal_svscan(service_dir: &Path, sig: Signal) -> Option<u32> {
    let pid = svscan(service_dir).ok()??;
    kill(Pid::from_raw(pid as i32), sig).ok().map(|()| pid)
}

/// Writes control `bytes` to each service, then waits until `done` holds for every one of them
/// or `timeout` passes. Ok(false) on timeout.
pub fn control_and_wait(
    services: &[(&str, PathBuf)],
    bytes: &[u8],
    timeout: Duration,
    done: impl Fn(&Status) -> bool,
) -> Result<bool> {
    for (name, dir) in services {
        control::send(dir, bytes).map_err(|e| control_error(name, dir, e))?;
    }
    Ok(poll::holds(timeout, poll::EVERY, || {
        services
            .iter()
            .all(|(_, dir)| status::read(dir).is_ok_and(|st| done(&st)))
    }))
}

/// `sv restart` and a wait until a new process runs (not the old one, which may still answer on
/// its port a moment longer).
/// Returns the new process's pid.
pub fn restart_and_wait(name: &str, dir: &Path, timeout: Duration) -> Result<u32> {
    let old = status::read(dir).map(|s| s.pid).unwrap_or(0);
    let restarted = control_and_wait(
        &[(name, dir.to_path_buf())],
        control::RESTART,
        timeout,
        |st| st.is_up() && st.pid != old,
    )?;
    if !restarted {
        anyhow::bail!("{name} did not restart within {} s", timeout.as_secs());
    }
    Ok(status::read(dir).map(|s| s.pid).unwrap_or(0))
}

/// Why a control byte could not be written, said so the operator knows what to do.
pub fn control_error(name: &str, dir: &Path, e: io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let supervised = status::probe(dir) == Probe::Supervised;
    match e.kind() {
        ErrorKind::NotFound if supervised => anyhow!(
            "{name}: supervise/control is missing; svscan recreates it within a minute, or at once on SIGHUP (kill -HUP its pid)"
        ),
        ErrorKind::PermissionDenied => anyhow!(
            "{name}: permission denied on {}/supervise/control; only the user approuter runs as may control services",
            dir.display()
        ),
        _ if e.raw_os_error() == Some(nix::libc::ENXIO) || e.kind() == ErrorKind::NotFound => {
            anyhow!("{name}: not supervised (is approuter running? `approuter start` starts it)")
        }
        _ => anyhow::Error::new(e).context(format!("{name}: cannot write to supervise/control")),
    }
}

/// Reads a service's status, with the file named in the error.
pub fn read(dir: &Path) -> Result<Status> {
    status::read(dir).with_context(|| {
        format!(
            "{}",
            status::supervise_dir(dir).join(status::STATUS).display()
        )
    })
}
