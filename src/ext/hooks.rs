//! Operator hooks: optional executables `managed/etc/hooks/<event>`, run after an event with its facts as arguments; they can report but never block.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Settings;
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

/// How much of a hook's output (each of stdout and stderr) reaches the sync's log; the rest is
/// read and dropped, so a hook that prints without end neither stalls nor fills memory.
const OUTPUT_CAP: usize = 64 * 1024;

/// Runs the hook for `event` if there is one. Its output and its outcome are returned as lines
/// for the caller's log; a hook that fails or hangs is reported, never an error. A hook runs in
/// a process group of its own: when it runs past `hook_timeout_secs`, the group is killed, so
/// whatever it started goes with it.
pub fn run(layout: &Layout, settings: &Settings, event: Event, args: &[&str]) -> Vec<String> {
    let path = layout.hooks().join(event.name());
    if !is_executable(&path) {
        return Vec::new();
    }
    let name = event.name();
    let timeout = Duration::from_secs(settings.hook_timeout_secs);
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
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return vec![format!("hook {name}: cannot run {}: {e}", path.display())],
    };
    let group = Pid::from_raw(child.id() as i32);
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
    .map(|r| std::thread::spawn(move || read_capped(r)))
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = killpg(group, Signal::SIGKILL);
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
        let (text, cut) = r.join().unwrap_or_default();
        for line in text.lines() {
            lines.push(format!("hook {name}: {line}"));
        }
        if cut {
            lines.push(format!(
                "hook {name}: (output cut at {} KiB)",
                OUTPUT_CAP / 1024
            ));
        }
    }
    match status {
        Some(st) if st.success() => {}
        Some(st) => lines.push(format!("hook {name} failed ({st}); carrying on")),
        None => lines.push(format!(
            "hook {name} still ran after {}s and was killed, with every process it started; carrying on",
            timeout.as_secs()
        )),
    }
    lines
}

/// Everything `r` gives until its end, keeping the first [`OUTPUT_CAP`] bytes; true when more
/// was dropped.
fn read_capped(mut r: Box<dyn Read + Send>) -> (String, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut cut = false;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), cut)
}
