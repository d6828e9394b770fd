//! The one lock every command that changes state takes (start, stop, shutdown, switch, sync, deploy, generate), and what to do when another holds it.

use anyhow::{bail, Result};

use crate::ext::hooks::IN_HOOK;
use crate::ext::procfs;
use crate::layout::Layout;
use crate::util::file as fsx;
use crate::util::pidlock::{self, Acquired, PidLock};

/// What a command does when another holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Wait for it (saying so).
    Wait,
    /// Refuse at once, naming the holder.
    Refuse,
    /// sync from cron: leave quietly if the holder is another sync, else refuse.
    LeaveToSync,
}

/// Who holds the lock, in words: `approuter sync (pid 123)`, or what else it is.
fn describe(pid: Option<u32>) -> String {
    let Some(pid) = pid else {
        return "a process that cannot be seen".into();
    };
    match procfs::argv(pid).and_then(|a| procfs::approuter_subcommand(&a)) {
        Some(cmd) => format!("approuter {cmd} (pid {pid})"),
        None => procfs::describe(pid),
    }
}

/// Takes the lock for `command` (`sync`, `switch`...), or returns `None` when a sync found
/// another sync running and leaves it to finish. An error names whoever holds the lock when
/// the command may not wait for it.
pub fn take(layout: &Layout, command: &str, busy: Busy) -> Result<Option<PidLock>> {
    if std::env::var_os(IN_HOOK).is_some() {
        bail!("`approuter {command}` cannot run from a hook: the sync that runs the hook holds approuter's lock until the hook is done");
    }
    fsx::ensure_private_dir(&layout.run_dir())?;
    let path = layout.lock();
    // A holder that cannot be found has most likely just let go: ask again before naming it.
    let mut pid = None;
    for _ in 0..3 {
        match pidlock::acquire(&path, false, 0o600, false)? {
            Acquired::Mine(lock) => return Ok(Some(lock)),
            Acquired::Busy { pid: Some(p) } => {
                pid = Some(p);
                break;
            }
            Acquired::Busy { pid: None } => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
        }
    }
    let who = describe(pid);
    // Another sync is one that says so and runs as approuter's user (anyone can name a
    // process `approuter sync`).
    let is_sync = pid.is_some_and(|p| procfs::uid(p) == Some(nix::unistd::geteuid().as_raw()))
        && pid
            .and_then(procfs::argv)
            .and_then(|a| procfs::approuter_subcommand(&a))
            .is_some_and(|c| c == "sync" || c == "deploy");
    match busy {
        Busy::LeaveToSync if is_sync => {
            println!("another sync is running ({who}); leaving it to finish");
            Ok(None)
        }
        Busy::LeaveToSync | Busy::Refuse => bail!(
            "{who} holds {}; {}",
            path.display(),
            if is_sync || who.starts_with("approuter") {
                "try again when it is done, or with --wait (sync) or without --no-wait to wait for it"
            } else {
                "it is not an approuter command: end it, or find out why it holds approuter's lock"
            }
        ),
        Busy::Wait => {
            eprintln!("approuter: waiting for {who} to finish");
            match pidlock::acquire(&path, true, 0o600, false)? {
                Acquired::Mine(lock) => Ok(Some(lock)),
                Acquired::Busy { .. } => unreachable!("a blocking lock is taken or fails"),
            }
        }
    }
}
