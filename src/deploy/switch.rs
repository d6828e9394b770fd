//! Switching production to the other instance: one rename of the symlink nginx follows, no reload; a rollback records the commit it rolled back from.

use anyhow::{bail, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::listener::{self, Listening};
use super::load_plan;
use crate::ext::git;
use crate::ext::hooks::{self, Event};
use crate::ext::{http, nginx};
use crate::layout::Layout;
use crate::plan::{Plan, Slot};
use crate::state::{self, Held};
use crate::util::poll;

/// How long nginx may take to serve production from the new instance.
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);

/// What `approuter switch` did: the instance now active, the hold it set or released, and
/// what the `switched` hook said.
pub struct Switched {
    pub to: Slot,
    pub hold: HoldChange,
    pub hook: Vec<String>,
}

/// How a switch changed the rollback hold.
#[derive(Debug, PartialEq, Eq)]
pub enum HoldChange {
    None,
    /// Switched away from this commit: sync will not deploy it again on its own.
    Set(String),
    /// Switched to the commit that was held: sync deploys as usual again.
    Released(String),
}

/// `approuter switch`: production traffic to the other instance, after checking it is healthy.
pub fn switch(layout: &Layout, force: bool) -> Result<Switched> {
    let (_, plan) = load_plan(layout)?;
    let to = plan.active.other();
    let target = plan.prod(to);
    let path = &plan.settings.health_path;
    // Never, not even with --force: production would go to whoever holds the port.
    if let Listening::Foreign(who) = listener::of(layout, to.name(), target.port) {
        bail!(
            "not switching to {}: {}",
            to.name(),
            listener::foreign_message(to.name(), target.port, &who)
        );
    }
    let healthy = match http::get(target.port, path, None, http::REQUEST_TIMEOUT) {
        Ok(a) if a.status == 200 => true,
        result if !force => {
            let why = match result {
                Ok(a) => format!("{path} answered {}", a.status),
                Err(e) => e,
            };
            bail!(
                "{} is not healthy ({why}); its log: {}; not switching (use --force to switch anyway)",
                to.name(),
                layout.log_current(to.name()).display()
            );
        }
        _ => {
            eprintln!(
                "approuter: {} is not healthy; switching anyway (--force)",
                to.name()
            );
            false
        }
    };
    let commit = |slot: Slot| {
        git::inspect(&layout.checkout(plan.prod(slot)))
            .ok()
            .map(|c| c.head.to_string())
    };
    let (from_commit, to_commit) = (commit(plan.active), commit(to));
    let held = state::load_held(layout)?;
    let hold = match (held, from_commit, to_commit) {
        (Some(h), _, Some(t)) if h.commit == t => HoldChange::Released(h.commit),
        (_, Some(f), t) if Some(&f) != t.as_ref() => HoldChange::Set(f),
        _ => HoldChange::None,
    };
    let hook = switch_to(layout, &plan, to, healthy)?;
    match &hold {
        HoldChange::Set(commit) => state::save_held(
            layout,
            Some(&Held {
                commit: commit.clone(),
                since: unix_now(),
            }),
        )?,
        HoldChange::Released(_) => state::save_held(layout, None)?,
        HoldChange::None => {}
    }
    Ok(Switched { to, hold, hook })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Points production at `to`: the `active` symlink is renamed into place, and every nginx worker
/// follows it within a second (no reload). Waits that second out and, when `to` is healthy,
/// until nginx is seen serving from it. Returns what the `switched` hook said.
pub fn switch_to(layout: &Layout, plan: &Plan, to: Slot, verify: bool) -> Result<Vec<String>> {
    let from = plan.active;
    state::save_active(layout, to)?;
    // Every nginx worker takes the new link within this time (it caches the file tests).
    std::thread::sleep(nginx::FILE_TESTS_CACHED + Duration::from_millis(100));
    if verify {
        let port = plan.settings.listen_port;
        let mut served = None;
        let seen = poll::holds(SERVED_TIMEOUT, poll::EVERY, || {
            served = http::get(
                port,
                &plan.settings.health_path,
                None,
                Duration::from_secs(2),
            )
            .ok()
            .and_then(|a| a.served_by);
            served.as_deref() == Some(to.name())
        });
        if !seen {
            bail!(
                "production was switched to {} but nginx still serves it from {:?}; see {}",
                to.name(),
                served,
                layout.log_current(crate::plan::NGINX).display()
            );
        }
    }
    Ok(hooks::run(
        layout,
        Event::Switched,
        &[from.name(), to.name()],
    ))
}
