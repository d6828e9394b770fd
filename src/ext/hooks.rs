//! Operator hooks: optional executables `managed/etc/hooks/<event>`, run after an event with its facts as arguments; they can report but never block.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::layout::Layout;
use crate::util::file::is_executable;

/// The events a hook can be written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new production commit went live: instance, old commit, new commit.
    Deployed,
    /// A production commit failed its health check and was not switched to: instance, commit.
    DeployFailed,
    /// An alternate was replaced with its branch's new head: name, old commit, new commit.
    AlternateUpdated,
    /// Production moved to the other instance: from, to.
    Switched,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Deployed => "deployed",
            Event::DeployFailed => "deploy-failed",
            Event::AlternateUpdated => "alternate-updated",
            Event::Switched => "switched",
        }
    }
}

/// Set in a hook's environment: approuter's commands that change state refuse to run from a
/// hook, since the sync that runs the hook holds approuter's lock until it is done.
pub const IN_HOOK: &str = "APPROUTER_HOOK";

/// How long a hook may run before it is killed: production does not wait on it any longer.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the hook for `event` if there is one. Its output and its outcome are returned as lines
/// for the caller's log; a hook that fails or hangs is reported, never an error.
pub fn run(layout: &Layout, event: Event, args: &[&str]) -> Vec<String> {
    let path = layout.hooks().join(event.name());
    if !is_executable(&path) {
        return Vec::new();
    }
    let name = event.name();
    let mut lines = Vec::new();
    let child = Command::new(&path)
        .args(args)
        .current_dir(layout.root())
        .env("APPROUTER_ROOT", layout.root())
        .env("APPROUTER_EVENT", name)
        .env(IN_HOOK, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return vec![format!("hook {name}: cannot run {}: {e}", path.display())],
    };
    // Read both pipes on threads so a chatty hook cannot fill one and stall.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    })
    .collect();
    let deadline = Instant::now() + HOOK_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    // A hook that left a background process holding its output is not waited for.
    let until = Instant::now() + Duration::from_secs(2);
    for r in readers {
        while !r.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !r.is_finished() {
            continue;
        }
        for line in r.join().unwrap_or_default().lines() {
            lines.push(format!("hook {name}: {line}"));
        }
    }
    match status {
        Some(st) if st.success() => {}
        Some(st) => lines.push(format!("hook {name} failed ({st}); carrying on")),
        None => lines.push(format!(
            "hook {name} still ran after {}s and was killed; carrying on",
            HOOK_TIMEOUT.as_secs()
        )),
    }
    lines
}
