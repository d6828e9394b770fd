//! Who listens on an instance's port: its own processes (the session its supervisor started), or someone else, who is named. Only an instance's own listener counts as the instance.

use std::path::Path;

use crate::ext::procfs;
use crate::layout::Layout;
use crate::supervise::status;

/// What listens on a service's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    Nobody,
    /// Only processes of the service's own session (the supervised `./run` called setsid).
    Ours,
    /// Something else, described: `pid 4242 (user nobody: python3 squat.py)`.
    Foreign(String),
}

/// Who listens on `port`, as far as the service `name` is concerned.
pub fn of(layout: &Layout, name: &str, port: u16) -> Listening {
    of_dir(&layout.service(name), port)
}

/// Who listens on `port`, as far as the service directory `service` is concerned.
pub fn of_dir(service: &Path, port: u16) -> Listening {
    let holders = procfs::listeners(port);
    if holders.is_empty() {
        return Listening::Nobody;
    }
    let session = status::read(service)
        .ok()
        .filter(|st| st.is_up())
        .map(|st| st.pid);
    let mut foreign: Vec<String> = holders
        .seen
        .iter()
        .filter(|h| session.is_none_or(|s| procfs::stat(h.pid).is_none_or(|st| st.session != s)))
        .map(|h| procfs::describe(h.pid))
        .collect();
    if holders.unseen > 0 {
        foreign.push(unseen_holder());
    }
    if foreign.is_empty() {
        Listening::Ours
    } else {
        Listening::Foreign(foreign.join(", "))
    }
}

/// A holder /proc does not show approuter: another user's process, when approuter is not root.
pub fn unseen_holder() -> String {
    format!(
        "a process approuter cannot see (approuter runs as uid {}; another user's process)",
        nix::unistd::Uid::effective()
    )
}

/// The error for a port someone else holds.
pub fn foreign_message(service: &str, port: u16, who: &str) -> String {
    format!("port {port} is held by {who}, not by {service}'s own processes; end it, or give {service} another port")
}
