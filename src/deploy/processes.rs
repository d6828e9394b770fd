//! An instance's processes, wherever they went (a daemonized child leaves its service's session): found by the APPROUTER_ROOT and APPROUTER_INSTANCE their environment carries, and ended when the instance goes.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;

use crate::cmd::instance_exec::COMMIT_VAR;
use crate::ext::procfs;
use crate::layout::Layout;
use crate::supervise::status;
use crate::util::poll;

/// The variable that names the approuter root an instance belongs to (two roots on one host may
/// have instances of the same name).
pub const ROOT_VAR: &str = "APPROUTER_ROOT";
/// The variable that names the instance.
pub const INSTANCE_VAR: &str = "APPROUTER_INSTANCE";

/// The commit the running process of service `name` was started from (its APPROUTER_COMMIT):
/// what it serves, whatever its checkout holds now.
pub fn running_commit(layout: &Layout, name: &str) -> Option<String> {
    let st = status::read(&layout.service(name))
        .ok()
        .filter(|st| st.is_up())?;
    procfs::environ_var(st.pid, COMMIT_VAR).filter(|c| !c.is_empty())
}

/// Every live process started for instance `name` of `root` (and its children, which inherit
/// the environment), except ourselves.
pub fn of(root: &Path, name: &str) -> Vec<u32> {
    let root = root.display().to_string();
    let me = std::process::id();
    procfs::pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| procfs::stat(p).is_some_and(|s| !s.is_zombie()))
        .filter(|&p| {
            procfs::environ_var(p, INSTANCE_VAR).as_deref() == Some(name)
                && procfs::environ_var(p, ROOT_VAR).as_deref() == Some(root.as_str())
        })
        .collect()
}

/// Waits up to `grace` for the instance's processes to end (its supervisor is stopping them),
/// then ends what is left: TERM, and KILL after `grace` again. Returns how many had to be ended.
pub fn end(root: &Path, name: &str, grace: Duration) -> usize {
    if poll::holds(grace, poll::EVERY, || of(root, name).is_empty()) {
        return 0;
    }
    let left = of(root, name);
    for &p in &left {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGTERM);
    }
    if !poll::holds(grace, poll::EVERY, || of(root, name).is_empty()) {
        for p in of(root, name) {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
        poll::holds(grace, poll::EVERY, || of(root, name).is_empty());
    }
    left.len()
}
